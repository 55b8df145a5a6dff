package wasifs

import (
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// endsInSlash reports whether p has trailing slashes, which make a path
// name a directory (and follow a final symbolic link).
func endsInSlash(p string) bool { return strings.HasSuffix(p, "/") }

// lstat stats p beneath d's root without following a final symbolic link
// (unless p ends in a slash, as POSIX resolves it).
func (d *entry) lstat(p string) (*unix.Stat_t, Errno) {
	return d.stat(p, false)
}

func (d *entry) stat(p string, follow bool) (*unix.Stat_t, Errno) {
	if errno := checkPath(p); errno != 0 {
		return nil, errno
	}
	var fi os.FileInfo
	var err error
	if follow {
		fi, err = d.root.Stat(p)
	} else {
		fi, err = d.root.Lstat(p)
	}
	if err != nil {
		return nil, errnoOf(err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, errnoIO
	}
	return statOf(st), errnoSuccess
}

func (t *Table) pathFilestatGet(fd, flags uint32, p string, b []byte) Errno {
	d, errno := t.dir(fd, rightPathFilestatGet)
	if errno != 0 {
		return errno
	}
	st, errno := d.stat(p, flags&lookupSymlinkFollow != 0)
	if errno != 0 {
		return errno
	}
	putFilestat(b, st)
	return errnoSuccess
}

func (t *Table) pathFilestatSetTimes(fd, flags uint32, p string, atim, mtim uint64, fst uint16) Errno {
	d, errno := t.dir(fd, rightPathFilestatSetTimes)
	if errno != 0 {
		return errno
	}
	ts, errno := timespecs(atim, mtim, fst)
	if errno != 0 {
		return errno
	}
	if flags&lookupSymlinkFollow == 0 && !endsInSlash(p) {
		parent, last, errno := d.at(p)
		if errno != 0 {
			return errno
		}
		if parent != nil {
			defer parent.Close()
			// The link itself: one component, not followed.
			return errnoOf(retryEINTR(func() error {
				return unix.UtimesNanoAt(int(parent.Fd()), last, ts[:], unix.AT_SYMLINK_NOFOLLOW)
			}))
		}
		// "." or "..": a directory, never a link; stamped below.
	}
	if errno := checkPath(p); errno != 0 {
		return errno
	}
	// The file itself, opened through the root (which follows links beneath
	// it only), then stamped by descriptor.
	f, err := d.root.OpenFile(p, os.O_RDONLY, 0)
	if err != nil {
		return errnoOf(err)
	}
	defer f.Close()
	return errnoOf(futimens(int(f.Fd()), ts))
}

func (t *Table) pathCreateDirectory(fd uint32, p string) Errno {
	d, errno := t.dir(fd, rightPathCreateDirectory)
	if errno != 0 {
		return errno
	}
	// "." and ".." exist.
	return d.inParent(p, errnoExist, func(dir int, last string) Errno {
		if errno := t.checkDepth(d, dir); errno != 0 {
			return errno
		}
		return t.create(func() error { return unix.Mkdirat(dir, last, 0o755) })
	})
}

func (t *Table) pathRemoveDirectory(fd uint32, p string) Errno {
	d, errno := t.dir(fd, rightPathRemoveDirectory)
	if errno != 0 {
		return errno
	}
	return d.inParent(p, errnoInval, func(dir int, last string) Errno {
		return errnoOf(retryEINTR(func() error { return unix.Unlinkat(dir, last, unix.AT_REMOVEDIR) }))
	})
}

func (t *Table) pathUnlinkFile(fd uint32, p string) Errno {
	d, errno := t.dir(fd, rightPathUnlinkFile)
	if errno != 0 {
		return errno
	}
	return d.inParent(p, errnoIsdir, func(dir int, last string) Errno {
		return errnoOf(retryEINTR(func() error { return unix.Unlinkat(dir, last, 0) }))
	})
}

func (t *Table) pathSymlink(target string, fd uint32, p string) Errno {
	d, errno := t.dir(fd, rightPathSymlink)
	if errno != 0 {
		return errno
	}
	switch {
	case target == "":
		return errnoNoent
	case strings.IndexByte(target, 0) >= 0:
		return errnoInval
	case len(target) > maxPath:
		return errnoNametoolong
	case target[0] == '/':
		// An absolute link could never be followed beneath a root; refuse
		// it rather than leave one for whoever reads the tree later.
		return errnoPerm
	}
	return d.inParent(p, errnoExist, func(dir int, last string) Errno {
		if errno := t.checkDepth(d, dir); errno != 0 {
			return errno
		}
		return t.create(func() error { return unix.Symlinkat(target, dir, last) })
	})
}

func (t *Table) pathReadlink(fd uint32, p string, b []byte) (int, Errno) {
	d, errno := t.dir(fd, rightPathReadlink)
	if errno != 0 {
		return 0, errno
	}
	if errno := checkPath(p); errno != 0 {
		return 0, errno
	}
	target, err := d.root.Readlink(p)
	if err != nil {
		return 0, errnoOf(err)
	}
	return copy(b, target), errnoSuccess
}

func (t *Table) pathRename(oldFd uint32, oldPath string, newFd uint32, newPath string) Errno {
	od, nd, errno := t.dirs(oldFd, rightPathRenameSource, newFd, rightPathRenameTarget)
	if errno != 0 {
		return errno
	}
	// Renaming "." or "..": POSIX says EBUSY or EINVAL. renameat follows
	// neither name: both are single components.
	return od.inParent(oldPath, errnoBusy, func(oldDir int, oldLast string) Errno {
		return nd.inParent(newPath, errnoBusy, func(newDir int, newLast string) Errno {
			if errno := t.checkMove(od, oldDir, oldLast, nd, newDir); errno != 0 {
				return errno
			}
			return errnoOf(retryEINTR(func() error { return unix.Renameat(oldDir, oldLast, newDir, newLast) }))
		})
	})
}

func (t *Table) pathLink(oldFd, flags uint32, oldPath string, newFd uint32, newPath string) Errno {
	od, nd, errno := t.dirs(oldFd, rightPathLinkSource, newFd, rightPathLinkTarget)
	if errno != 0 {
		return errno
	}
	if errno := checkPath(oldPath); errno != 0 {
		return errno
	}
	if flags&lookupSymlinkFollow != 0 || endsInSlash(oldPath) {
		// linkat would follow the link itself, to wherever it points;
		// resolve it beneath the root first.
		st, errno := od.stat(oldPath, true)
		if errno != 0 {
			return errno
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return errnoPerm // no hard links to directories
		}
		if endsInSlash(oldPath) {
			return errnoNotdir
		}
		resolved, errno := od.resolve(oldPath)
		if errno != 0 {
			return errno
		}
		oldPath = resolved
	}
	return od.inParent(oldPath, errnoPerm, func(oldDir int, oldLast string) Errno {
		return nd.inParent(newPath, errnoExist, func(newDir int, newLast string) Errno {
			if errno := t.checkDepth(nd, newDir); errno != 0 {
				return errno
			}
			return t.create(func() error { return unix.Linkat(oldDir, oldLast, newDir, newLast, 0) })
		})
	})
}

// resolve follows the symbolic links at the end of p, beneath d's root,
// and returns a path to what they lead to whose last component is not a
// link. Components before the last are left to os.Root.
func (d *entry) resolve(p string) (string, Errno) {
	for range 40 { // Linux's limit of links in one resolution
		st, errno := d.lstat(p)
		if errno != 0 {
			return "", errno
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			return p, errnoSuccess
		}
		target, err := d.root.Readlink(p)
		if err != nil {
			return "", errnoOf(err)
		}
		if target == "" || target[0] == '/' {
			return "", errnoNotcapable
		}
		dir, _ := splitParent(p)
		if dir == "." {
			p = target
		} else {
			p = dir + "/" + target
		}
	}
	return "", errnoLoop
}

func (t *Table) pathOpen(fd, lookup uint32, p string, oflags uint16, base, inh uint64, fdflags uint16) (uint32, Errno) {
	need := rightPathOpen
	if oflags&oflagCreat != 0 {
		need |= rightPathCreateFile
	}
	if oflags&oflagTrunc != 0 {
		need |= rightPathFilestatSetSize
	}
	d, errno := t.dir(fd, need)
	if errno != 0 {
		return 0, errno
	}
	if errno := checkPath(p); errno != 0 {
		return 0, errno
	}
	if oflags&^(oflagCreat|oflagDirectory|oflagExcl|oflagTrunc) != 0 ||
		fdflags&^(fdflagAppend|fdflagDsync|fdflagNonblock|fdflagRsync|fdflagSync) != 0 {
		return 0, errnoInval
	}
	if oflags&oflagDirectory != 0 && oflags&(oflagCreat|oflagTrunc) != 0 {
		return 0, errnoInval
	}
	// A descriptor gets the rights it asks for that its directory may hand
	// on (as wasi-libc and wasmtime do), never more.
	base &= d.inh
	inh &= d.inh
	read := base&(rightFdRead|rightFdReaddir) != 0
	write := base&openWriteRights != 0 || oflags&oflagTrunc != 0 ||
		fdflags&fdflagAppend != 0 && base&rightFdWrite != 0
	if d.readOnly && (write || oflags&oflagCreat != 0) {
		return 0, errnoRofs
	}

	// What is there now: never open a FIFO or a device (which could block
	// the guest's thread for good), know whether the open creates a file,
	// and refuse a final symbolic link unless the guest follows links.
	follow := lookup&lookupSymlinkFollow != 0
	creating := false
	st, errno := d.stat(p, follow)
	switch {
	case errno == errnoNoent && oflags&oflagCreat != 0:
		creating = true
	case errno != 0:
		return 0, errno
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		if oflags&(oflagCreat|oflagExcl) == oflagCreat|oflagExcl {
			return 0, errnoExist
		}
		return 0, errnoLoop // O_NOFOLLOW on a link
	case st.Mode&unix.S_IFMT != unix.S_IFREG && st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return 0, errnoAcces
	case oflags&(oflagCreat|oflagExcl) == oflagCreat|oflagExcl:
		return 0, errnoExist
	}

	flags := os.O_RDONLY
	switch {
	case read && write:
		flags = os.O_RDWR
	case write:
		flags = os.O_WRONLY
	}
	if oflags&oflagCreat != 0 {
		flags |= os.O_CREATE
	}
	if oflags&oflagExcl != 0 {
		flags |= os.O_EXCL
	}
	if oflags&oflagTrunc != 0 {
		flags |= os.O_TRUNC
	}
	if oflags&oflagDirectory != 0 {
		flags |= unix.O_DIRECTORY
	}
	if fdflags&fdflagAppend != 0 {
		flags |= os.O_APPEND
	}
	if fdflags&fdflagDsync != 0 {
		flags |= oDsync
	}
	if fdflags&fdflagRsync != 0 {
		flags |= oRsync
	}
	if fdflags&fdflagSync != 0 {
		flags |= oSync
	}
	if t.open >= MaxOpen {
		return 0, errnoMfile
	}
	if creating {
		errno := d.inParent(p, errnoSuccess, func(dir int, _ string) Errno { return t.checkDepth(d, dir) })
		if errno != 0 {
			return 0, errno
		}
	}
	var f *os.File
	open := func() (err error) {
		f, err = d.root.OpenFile(p, flags, 0o644)
		return err
	}
	if creating {
		errno = t.create(open)
	} else {
		errno = errnoOf(open())
	}
	if errno != 0 {
		return 0, errno
	}
	var fst unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &fst); err != nil {
		f.Close()
		return 0, errnoOf(err)
	}
	e := &entry{kind: kindFile, base: base & fileRights, inh: inh, fdflags: fdflags,
		readOnly: d.readOnly, mountIndex: d.mountIndex, f: f, fd: int(f.Fd())}
	switch fst.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		r, err := d.root.OpenRoot(p)
		if err != nil {
			f.Close()
			return 0, errnoOf(err)
		}
		e.kind, e.root = kindDir, r
		e.base, e.inh = base&dirRights, inh
	case unix.S_IFREG:
	default:
		f.Close()
		return 0, errnoAcces
	}
	return t.add(e)
}

// create runs a call that makes a file, directory or link, counting
// CreateCost against the write budget unless it fails.
func (t *Table) create(call func() error) Errno {
	if errno := t.charge(CreateCost); errno != 0 {
		return errno
	}
	if err := retryEINTR(call); err != nil {
		t.written -= CreateCost
		return errnoOf(err)
	}
	return errnoSuccess
}
