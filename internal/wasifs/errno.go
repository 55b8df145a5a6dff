package wasifs

import (
	"errors"
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

// errnoOf maps an error of the os package or a system call to a WASI errno.
func errnoOf(err error) Errno {
	if err == nil {
		return errnoSuccess
	}
	var se syscall.Errno
	if errors.As(err, &se) {
		return fromSyscall(se)
	}
	// os.Root's own errors carry no errno. They are matched by their text,
	// which the os package has kept since Root exists; a test pins each.
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch e.Error() {
		case "path escapes from parent":
			return errnoNotcapable
		case "not a directory":
			return errnoNotdir
		case "empty path":
			return errnoNoent
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errnoNoent
	case errors.Is(err, fs.ErrExist):
		return errnoExist
	case errors.Is(err, fs.ErrPermission):
		return errnoAcces
	case errors.Is(err, fs.ErrClosed):
		return errnoBadf
	case errors.Is(err, fs.ErrInvalid):
		return errnoInval
	}
	return errnoIO
}

// fromSyscall maps a Linux errno to WASI's.
func fromSyscall(e syscall.Errno) Errno {
	switch e {
	case 0:
		return errnoSuccess
	case unix.E2BIG:
		return errno2big
	case unix.EACCES:
		return errnoAcces
	case unix.EAGAIN:
		return errnoAgain
	case unix.EBADF:
		return errnoBadf
	case unix.EBUSY:
		return errnoBusy
	case unix.EEXIST:
		return errnoExist
	case unix.EFAULT:
		return errnoFault
	case unix.EFBIG:
		return errnoFbig
	case unix.EILSEQ:
		return errnoIlseq
	case unix.EINTR:
		return errnoIntr
	case unix.EINVAL:
		return errnoInval
	case unix.EIO:
		return errnoIO
	case unix.EISDIR:
		return errnoIsdir
	case unix.ELOOP:
		return errnoLoop
	case unix.EMFILE:
		return errnoMfile
	case unix.EMLINK:
		return errnoMlink
	case unix.ENAMETOOLONG:
		return errnoNametoolong
	case unix.ENFILE:
		return errnoNfile
	case unix.ENODEV:
		return errnoNodev
	case unix.ENOENT:
		return errnoNoent
	case unix.ENOMEM:
		return errnoNomem
	case unix.ENOSPC, unix.EDQUOT:
		return errnoNospc
	case unix.ENOSYS:
		return errnoNosys
	case unix.ENOTDIR:
		return errnoNotdir
	case unix.ENOTEMPTY:
		return errnoNotempty
	case unix.ENOTSOCK:
		return errnoNotsock
	case unix.EOPNOTSUPP:
		return errnoNotsup
	case unix.ENOTTY:
		return errnoNotty
	case unix.ENXIO:
		return errnoNxio
	case unix.EOVERFLOW:
		return errnoOverflow
	case unix.EPERM:
		return errnoPerm
	case unix.EPIPE:
		return errnoPipe
	case unix.ERANGE:
		return errnoRange
	case unix.EROFS:
		return errnoRofs
	case unix.ESPIPE:
		return errnoSpipe
	case unix.ETXTBSY:
		return errnoTxtbsy
	case unix.EXDEV:
		return errnoXdev
	}
	return errnoIO
}
