//go:build !linux

package wasifs

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// Open flags for the fdflags dsync, rsync and sync: every platform has O_SYNC.
const (
	utimeNow  = -1
	utimeOmit = -2
	oDsync    = unix.O_SYNC
	oRsync    = unix.O_SYNC
	oSync     = unix.O_SYNC
)

// fallocate extends the file to off+n when it is shorter; no platform but
// Linux reserves blocks without writing them.
func fallocate(fd int, off, n int64) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if off+n > st.Size {
		return unix.Ftruncate(fd, off+n)
	}
	return nil
}

func fadvise(int, int64, int64, int) error { return nil }

func fdatasync(fd int) error { return unix.Fsync(fd) }

func futimens(fd int, ts *[2]unix.Timespec) error {
	return unix.ENOSYS
}

// statOf converts the stat os.Root returns into x/sys's.
func statOf(st *syscall.Stat_t) *unix.Stat_t {
	return &unix.Stat_t{Dev: st.Dev, Ino: st.Ino, Nlink: st.Nlink, Mode: st.Mode, Size: st.Size,
		Atim: unix.Timespec(st.Atimespec), Mtim: unix.Timespec(st.Mtimespec), Ctim: unix.Timespec(st.Ctimespec)}
}
