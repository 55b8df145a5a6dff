package wasifs

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Nothing a guest creates may lie more than Config.MaxDepth levels below
// its mount's root: removing a tree (os.RemoveAll, in serve) holds one
// descriptor per level, and the write budget alone (CreateCost a level)
// lets a guest nest thousands of directories, enough to exhaust serve's
// descriptors and leave the tree behind. Depth is counted on the host, by
// walking ".." up from the directory that would hold the entry, so that
// neither a guest's directory descriptor nor a symbolic link on the way
// hides how deep it is. What would pass the bound fails with ENAMETOOLONG,
// the errno of a path too long for the system.

// checkDepth fails with ENAMETOOLONG when an entry made in dir (an open
// directory under d's mount) would be deeper than the bound.
func (t *Table) checkDepth(d *entry, dir int) Errno {
	if t.cfg.MaxDepth <= 0 {
		return errnoSuccess
	}
	n, errno := t.depth(d, dir, t.cfg.MaxDepth)
	if errno != 0 {
		return errno
	}
	if n+1 > t.cfg.MaxDepth {
		return errnoNametoolong
	}
	return errnoSuccess
}

// checkMove fails with ENAMETOOLONG when moving last of oldDir (under od's
// mount) into newDir (under nd's) would put it, or anything below it,
// deeper than the bound. Only a move deeper down walks the tree moved.
func (t *Table) checkMove(od *entry, oldDir int, last string, nd *entry, newDir int) Errno {
	limit := t.cfg.MaxDepth
	if limit <= 0 {
		return errnoSuccess
	}
	to, errno := t.depth(nd, newDir, limit)
	if errno != 0 {
		return errno
	}
	if to+1 > limit {
		return errnoNametoolong
	}
	from, errno := t.depth(od, oldDir, limit)
	if errno != 0 || to <= from {
		return errno // no deeper than it was: within the bound as it was
	}
	h, errno := height(oldDir, last, limit-to-1)
	if errno != 0 {
		return errno
	}
	if to+1+h > limit {
		return errnoNametoolong
	}
	return errnoSuccess
}

// depth returns how many levels dir is below d's mount root, walking ".."
// up at most limit levels; a directory farther down answers limit+1.
func (t *Table) depth(d *entry, dir int, limit int) (int, Errno) {
	root := t.roots[d.mountIndex]
	fd, owned := dir, false
	defer func() {
		if owned {
			unix.Close(fd)
		}
	}()
	for n := 0; ; n++ {
		id, err := fileID(fd)
		if err != nil {
			return 0, errnoOf(err)
		}
		if id == root {
			return n, errnoSuccess
		}
		if n >= limit {
			return limit + 1, errnoSuccess
		}
		var up int
		err = retryEINTR(func() (err error) {
			up, err = unix.Openat(fd, "..", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			return err
		})
		if err != nil {
			return 0, errnoOf(err)
		}
		if owned {
			unix.Close(fd)
		}
		fd, owned = up, true
	}
}

// height returns how many levels of entries lie below name in dir (0 for
// a file, a link or an empty directory), looking at most limit+1 levels
// down: a deeper tree answers limit+1.
func height(dir int, name string, limit int) (int, Errno) {
	var fd int
	err := retryEINTR(func() (err error) {
		fd, err = unix.Openat(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return err
	})
	if err == unix.ENOTDIR || err == unix.ELOOP {
		return 0, errnoSuccess
	}
	if err != nil {
		return 0, errnoOf(err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	h := 0
	for {
		names, err := f.Readdirnames(256)
		for _, n := range names {
			if limit <= 0 {
				return 1, errnoSuccess // an entry below, and no level left for it
			}
			sub, errno := height(fd, n, limit-1)
			if errno != 0 {
				return 0, errno
			}
			h = max(h, sub+1)
			if h > limit {
				return h, errnoSuccess
			}
		}
		if err == io.EOF {
			return h, errnoSuccess
		}
		if err != nil {
			return 0, errnoOf(err)
		}
	}
}
