//go:build unix

package engine

import (
	"os"

	"golang.org/x/sys/unix"
)

// lockDir takes an exclusive flock on path without waiting, for the
// processes that share a cache directory; ok is false when another holds it.
func lockDir(path string) (unlock func(), ok bool) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, true
}
