package wasifs

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Open flags for the fdflags dsync, rsync and sync.
const (
	utimeNow  = unix.UTIME_NOW
	utimeOmit = unix.UTIME_OMIT
	oDsync    = unix.O_DSYNC
	oRsync    = unix.O_RSYNC
	oSync     = unix.O_SYNC
)

func fallocate(fd int, off, n int64) error {
	return retryEINTR(func() error { return unix.Fallocate(fd, 0, off, n) })
}

func fadvise(fd int, off, n int64, advice int) error {
	return unix.Fadvise(fd, off, n, advice)
}

func fdatasync(fd int) error { return retryEINTR(func() error { return unix.Fdatasync(fd) }) }

// futimens sets the times of the file open as fd, like futimens(3):
// utimensat with a NULL path acts on fd itself.
func futimens(fd int, ts *[2]unix.Timespec) error {
	return retryEINTR(func() error {
		_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
		if e != 0 {
			return e
		}
		return nil
	})
}

// statOf converts the stat os.Root returns into x/sys's.
func statOf(st *syscall.Stat_t) *unix.Stat_t {
	return &unix.Stat_t{Dev: st.Dev, Ino: st.Ino, Nlink: st.Nlink, Mode: st.Mode, Size: st.Size,
		Atim: unix.Timespec(st.Atim), Mtim: unix.Timespec(st.Mtim), Ctim: unix.Timespec(st.Ctim)}
}
