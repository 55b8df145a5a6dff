// Package wasifs gives a WASI preview1 guest its file descriptors: stdin,
// stdout and stderr in memory, and directories of the host ("mounts")
// preopened under guest paths, every path resolved through an os.Root so
// that no "..", absolute path or symbolic link reaches outside a mount.
//
// The package replaces the descriptor functions of wazero's
// wasi_snapshot_preview1 (fd_*, path_*, poll_oneoff, sock_*) with its own,
// for three reasons: path resolution goes through os.Root instead of a
// lexical check; rights are tracked per descriptor and enforced as WASI
// specifies (fd_fdstat_set_rights, fd_renumber, truncation rights); and a
// run's writes are counted against a budget, past which the guest's write
// fails with ENOSPC. See docs/RATIONALE.md ("Guest files").
//
// A Table holds one run's descriptors. The engine puts it in the context of
// the guest call (WithTable); the host functions (Export) find it there.
// A Table is used by the one goroutine running its guest.
package wasifs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"syscall"
	"time"
)

// Mount is a host directory a guest sees under GuestDir.
type Mount struct {
	Root     *os.Root // the directory; the Table does not close it
	GuestDir string   // absolute, clean guest path, e.g. "/" or "/data"; or "." (wasi-libc's working directory)
	ReadOnly bool     // nothing under it may change
}

// Config sets up a Table.
type Config struct {
	Stdin  *bytes.Reader // nil: empty
	Stdout io.Writer     // nil: discarded
	Stderr io.Writer     // nil: discarded
	Mounts []Mount       // preopened as fd 3, 4, ... in this order

	// MaxWriteBytes bounds how much the files of the mounts may grow during
	// the run, counting every byte by which a write, fd_allocate or
	// fd_filestat_set_size extends a file and CreateCost for every file,
	// directory or link the guest creates; nothing is given back. Past it
	// the guest's call fails with ENOSPC. 0 means no limit.
	MaxWriteBytes int64

	// MaxDepth bounds how many levels below its mount's root the guest may
	// create a file, directory or link (depth.go); past it the call fails
	// with ENAMETOOLONG. 0 means no limit.
	MaxDepth int

	// Sleep waits d for poll_oneoff. It may panic to stop the guest (the
	// engine's does at the run's deadline). nil uses time.Sleep.
	Sleep func(ctx context.Context, d time.Duration)
}

// CreateCost is what creating a file, directory or link counts against
// Config.MaxWriteBytes: about the disk an empty inode and its name use.
const CreateCost = 4096

// MaxOpen bounds the descriptors a guest may hold at once, stdio and
// preopens included; past it path_open fails with EMFILE.
const MaxOpen = 512

// maxPath bounds a path a guest passes (Linux's PATH_MAX).
const maxPath = 4096

type kind uint8

const (
	kindStdin kind = iota
	kindWriter
	kindFile
	kindDir
)

// entry is one open descriptor.
type entry struct {
	kind       kind
	base, inh  uint64 // rights
	fdflags    uint16
	readOnly   bool   // under a read-only mount
	preopen    string // guest path, for preopened directories
	mountIndex int    // the mount it is under (files and directories)

	r *bytes.Reader // kindStdin
	w io.Writer     // kindWriter

	f    *os.File // kindFile, kindDir: the open file or directory
	fd   int      // f's descriptor
	root *os.Root // kindDir: resolves paths beneath this directory

	dirents []dirent // kindDir: fd_readdir's listing, from cookie 0
}

// Table is the descriptor table of one run.
type Table struct {
	cfg     Config
	entries []*entry // by fd; nil: free
	open    int
	written int64 // bytes counted against cfg.MaxWriteBytes
	roots   []rootID
}

// rootID identifies a mount's directory, so that ".." of its top reads as
// the directory itself: nothing above a mount is visible.
type rootID struct{ dev, ino uint64 }

// New returns the table of a run: stdin, stdout, stderr as 0, 1 and 2 and
// each mount preopened after them. It fails when a mount's root cannot be
// read or a guest path is not absolute and clean.
func New(cfg Config) (*Table, error) {
	if cfg.Stdin == nil {
		cfg.Stdin = bytes.NewReader(nil)
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	t := &Table{cfg: cfg}
	t.entries = []*entry{
		{kind: kindStdin, base: stdinRights, r: cfg.Stdin},
		{kind: kindWriter, base: stdoutRights, w: cfg.Stdout},
		{kind: kindWriter, base: stdoutRights, w: cfg.Stderr},
	}
	t.open = 3
	for i, m := range cfg.Mounts {
		if m.GuestDir != "." && (m.GuestDir == "" || m.GuestDir[0] != '/' || path.Clean(m.GuestDir) != m.GuestDir) {
			t.Close()
			return nil, fmt.Errorf("wasifs: guest directory %q is not an absolute, clean path or \".\"", m.GuestDir)
		}
		f, err := m.Root.Open(".")
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("wasifs: opening mount %s: %w", m.GuestDir, err)
		}
		id, err := fileID(int(f.Fd()))
		if err != nil {
			f.Close()
			t.Close()
			return nil, fmt.Errorf("wasifs: mount %s: %w", m.GuestDir, err)
		}
		t.roots = append(t.roots, id)
		// The entry's root is its own handle on the directory, so that the
		// guest closing it (fd_close of a preopen) leaves the Mount's open.
		r, err := m.Root.OpenRoot(".")
		if err != nil {
			f.Close()
			t.Close()
			return nil, fmt.Errorf("wasifs: opening mount %s: %w", m.GuestDir, err)
		}
		// A read-only mount has every right, as a read-only file system
		// does: what would change it fails with EROFS when it is tried.
		e := &entry{kind: kindDir, base: dirRights, inh: dirRights | fileRights, preopen: m.GuestDir,
			mountIndex: i, readOnly: m.ReadOnly, f: f, fd: int(f.Fd()), root: r}
		t.entries = append(t.entries, e)
		t.open++
	}
	return t, nil
}

// Close closes every descriptor the guest left open. The mounts' roots stay
// open.
func (t *Table) Close() error {
	var errs []error
	for i, e := range t.entries {
		if e != nil {
			errs = append(errs, e.close())
			t.entries[i] = nil
		}
	}
	t.open = 0
	return errors.Join(errs...)
}

// Written returns the bytes counted against Config.MaxWriteBytes so far.
func (t *Table) Written() int64 { return t.written }

func (e *entry) close() error {
	var err error
	if e.root != nil {
		err = e.root.Close()
	}
	if e.f != nil {
		err = errors.Join(err, e.f.Close())
	}
	return err
}

// get returns the open descriptor fd.
func (t *Table) get(fd uint32) (*entry, Errno) {
	if uint64(fd) >= uint64(len(t.entries)) || t.entries[fd] == nil {
		return nil, errnoBadf
	}
	return t.entries[fd], errnoSuccess
}

// getRights returns fd when it holds every right in need.
func (t *Table) getRights(fd uint32, need uint64) (*entry, Errno) {
	e, errno := t.get(fd)
	if errno != 0 {
		return nil, errno
	}
	if e.readOnly && need&writeRights != 0 {
		return nil, errnoRofs
	}
	if e.base&need != need {
		return nil, errnoNotcapable
	}
	return e, errnoSuccess
}

// dir returns the directory descriptor fd holding need.
func (t *Table) dir(fd uint32, need uint64) (*entry, Errno) {
	if e, errno := t.get(fd); errno == 0 && e.kind != kindDir {
		return nil, errnoNotdir
	}
	return t.getRights(fd, need)
}

// dirs returns the directories of a call that names two paths (path_rename,
// path_link): oldFd holding oldNeed and newFd holding newNeed.
func (t *Table) dirs(oldFd uint32, oldNeed uint64, newFd uint32, newNeed uint64) (od, nd *entry, errno Errno) {
	if od, errno = t.dir(oldFd, oldNeed); errno != 0 {
		return nil, nil, errno
	}
	if nd, errno = t.dir(newFd, newNeed); errno != 0 {
		return nil, nil, errno
	}
	return od, nd, errnoSuccess
}

// add stores e under the lowest free descriptor.
func (t *Table) add(e *entry) (uint32, Errno) {
	if t.open >= MaxOpen {
		return 0, errnoMfile
	}
	t.open++
	for i, x := range t.entries {
		if x == nil {
			t.entries[i] = e
			return uint32(i), errnoSuccess
		}
	}
	t.entries = append(t.entries, e)
	return uint32(len(t.entries) - 1), errnoSuccess
}

// charge counts n bytes against the write budget; it fails with ENOSPC when
// they do not fit, counting nothing.
func (t *Table) charge(n int64) Errno {
	if n <= 0 {
		return errnoSuccess
	}
	if t.cfg.MaxWriteBytes > 0 && t.written+n > t.cfg.MaxWriteBytes {
		return errnoNospc
	}
	t.written += n
	return errnoSuccess
}

// room returns how many bytes the write budget still allows (max int64
// without a budget).
func (t *Table) room() int64 {
	if t.cfg.MaxWriteBytes <= 0 {
		return 1<<63 - 1
	}
	return max(t.cfg.MaxWriteBytes-t.written, 0)
}

func (t *Table) sleep(ctx context.Context, d time.Duration) {
	if t.cfg.Sleep != nil {
		t.cfg.Sleep(ctx, d)
		return
	}
	time.Sleep(d)
}

// checkPath refuses what no path beneath a directory can be: empty, with a
// NUL byte, absolute, or longer than PATH_MAX.
func checkPath(p string) Errno {
	switch {
	case p == "":
		return errnoNoent
	case len(p) > maxPath:
		return errnoNametoolong
	case strings.IndexByte(p, 0) >= 0:
		return errnoInval
	case p[0] == '/':
		return errnoNotcapable
	}
	return errnoSuccess
}

// splitParent splits p into the directory holding its last component and
// that component with any trailing slashes ("a/b//" → "a", "b//"). last is
// "" when p names a directory by "." or ".." (or only slashes).
func splitParent(p string) (parent, last string) {
	trimmed := strings.TrimRight(p, "/")
	i := strings.LastIndexByte(trimmed, '/')
	parent, base := ".", trimmed
	if i >= 0 {
		parent, base = trimmed[:i], trimmed[i+1:]
		if parent == "" {
			parent = "."
		}
	}
	if base == "" || base == "." || base == ".." {
		return p, ""
	}
	return parent, p[i+1:]
}

// at opens the directory holding p's last component, beneath d's root, and
// returns it with the last component (trailing slashes kept). Everything
// but the last component is resolved by os.Root; what the caller does with
// the component alone (mkdirat, unlinkat, renameat, symlinkat, linkat's new
// name) never follows it. parent is nil, and errno 0, when p ends in "."
// or "..": what that means is the caller's call's to say.
func (d *entry) at(p string) (parent *os.File, last string, errno Errno) {
	if errno := checkPath(p); errno != 0 {
		return nil, "", errno
	}
	dir, last := splitParent(p)
	if last == "" {
		return nil, "", errnoSuccess
	}
	f, err := d.root.Open(dir)
	if err != nil {
		return nil, "", errnoOf(err)
	}
	return f, last, errnoSuccess
}

// inParent runs call on the directory holding p's last component (as a
// descriptor) and that component, as at finds them; a p that ends in "."
// or ".." gets dot, the errno the caller's call gives for it.
func (d *entry) inParent(p string, dot Errno, call func(dir int, last string) Errno) Errno {
	parent, last, errno := d.at(p)
	if errno != 0 {
		return errno
	}
	if parent == nil {
		return dot
	}
	defer parent.Close()
	return call(int(parent.Fd()), last)
}

func retryEINTR(f func() error) error {
	for {
		err := f()
		if err != syscall.EINTR {
			return err
		}
	}
}
