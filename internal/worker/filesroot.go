package worker

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A pool's private directory for its workers' run files is
// FilesDir/wasmwiz-pool-XXXX, and the pool holds an exclusive flock on it
// for its whole life. The kernel drops the lock when the process ends
// however it ends, so a directory whose lock can be taken belongs to a
// server that is gone (killed, crashed, out of memory) before it could
// remove it, and the next pool to start in the same FilesDir removes it:
// the runs it held left no answer that anyone waits for.
const (
	filesRootPrefix = "wasmwiz-pool-"
	// A directory is made under a hidden name, locked, then renamed to its
	// public one, so that no sweep ever sees a live pool's directory
	// unlocked. One left by a crash between the two steps is swept once it
	// is older than newRootAge.
	newRootPrefix = ".wasmwiz-pool-new-"
	newRootAge    = time.Minute
)

// makeFilesRoot makes the pool's private directory in parent ("" means
// os.TempDir()) and returns it with the open directory that holds its lock
// (close it after removing the directory); then it removes what pools of
// processes that are gone left in parent.
func makeFilesRoot(parent string, log *slog.Logger) (dir string, lock *os.File, err error) {
	if parent == "" {
		parent = os.TempDir()
	}
	tmp, err := os.MkdirTemp(parent, newRootPrefix)
	if err != nil {
		return "", nil, err
	}
	lock, err = lockDir(tmp)
	if err != nil {
		_ = os.Remove(tmp)
		return "", nil, err
	}
	dir = filepath.Join(parent, filesRootPrefix+strings.TrimPrefix(filepath.Base(tmp), newRootPrefix))
	if err := os.Rename(tmp, dir); err != nil {
		_ = os.Remove(tmp)
		_ = lock.Close()
		return "", nil, err
	}
	sweepFilesRoots(parent, dir, log)
	return dir, lock, nil
}

// lockDir opens dir and takes its exclusive lock without waiting:
// unix.EWOULDBLOCK when a live process holds it.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// sweepFilesRoots removes the pool directories in parent, other than own,
// whose lock nobody holds. Directories of versions before the lock
// (wasmwiz-files-*) are left alone: their owner may be alive.
func sweepFilesRoots(parent, own string, log *slog.Logger) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		p := filepath.Join(parent, name)
		if !e.IsDir() || p == own {
			continue
		}
		switch {
		case strings.HasPrefix(name, filesRootPrefix):
		case strings.HasPrefix(name, newRootPrefix):
			if info, err := e.Info(); err != nil || time.Since(info.ModTime()) < newRootAge {
				continue
			}
		default:
			continue
		}
		f, err := lockDir(p)
		if err != nil {
			if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, os.ErrNotExist) {
				log.Warn("a run-files directory of another pool", "dir", p, "err", err)
			}
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			log.Warn("removing the run files of a server that is gone", "dir", p, "err", err)
		} else {
			log.Info("removed the run files of a server that is gone", "dir", p)
		}
		_ = f.Close()
	}
}
