package wasifs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// fixture is a host directory holding a secret beside the tree a guest
// gets, with links in the tree that point out of it.
type fixture struct {
	host, tree, secret string
	t                  *Table
}

const preopen = 3 // the first mount's descriptor

func newFixture(t *testing.T, readOnly bool, maxWrite int64) *fixture {
	t.Helper()
	host := t.TempDir()
	f := &fixture{host: host, tree: filepath.Join(host, "tree"), secret: filepath.Join(host, "secret")}
	must(t, os.WriteFile(f.secret, []byte("secret"), 0o600))
	must(t, os.Mkdir(filepath.Join(host, "outside"), 0o755))
	must(t, os.Mkdir(f.tree, 0o755))
	must(t, os.WriteFile(filepath.Join(f.tree, "in.txt"), []byte("hello"), 0o644))
	must(t, os.Mkdir(filepath.Join(f.tree, "sub"), 0o755))
	must(t, os.Symlink("/etc/passwd", filepath.Join(f.tree, "abs")))
	must(t, os.Symlink("../secret", filepath.Join(f.tree, "up")))
	must(t, os.Symlink("../outside", filepath.Join(f.tree, "updir")))
	must(t, os.Symlink("in.txt", filepath.Join(f.tree, "inlink")))
	r, err := os.OpenRoot(f.tree)
	must(t, err)
	t.Cleanup(func() { r.Close() })
	f.t, err = New(Config{Mounts: []Mount{{Root: r, GuestDir: "/", ReadOnly: readOnly}}, MaxWriteBytes: maxWrite})
	must(t, err)
	t.Cleanup(func() { f.t.Close() })
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// untouched checks that nothing outside the tree changed.
func (f *fixture) untouched(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(f.secret)
	if err != nil || string(b) != "secret" {
		t.Fatalf("the secret beside the tree changed: %q %v", b, err)
	}
	st, err := os.Stat(f.secret)
	must(t, err)
	if st.ModTime().Before(time.Now().Add(-time.Hour)) {
		t.Fatalf("the secret's mtime was changed to %v", st.ModTime())
	}
	entries, err := os.ReadDir(f.host)
	must(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "outside secret tree" {
		t.Fatalf("the directory around the tree holds %v", names)
	}
	if entries, _ := os.ReadDir(filepath.Join(f.host, "outside")); len(entries) != 0 {
		t.Fatalf("something was created outside the tree: %v", entries)
	}
}

const all = ^uint64(0)

func (f *fixture) open(p string, lookup uint32, oflags uint16, rights uint64) (uint32, Errno) {
	return f.t.pathOpen(preopen, lookup, p, oflags, rights, rights, 0)
}

func TestEscapesAreRefused(t *testing.T) {
	t.Parallel()
	follow := lookupSymlinkFollow
	tests := []struct {
		name string
		op   func(f *fixture) Errno
		want []Errno // any of
	}{
		{"open ..", func(f *fixture) Errno { _, e := f.open("..", 0, 0, all); return e }, []Errno{errnoNotcapable}},
		{"open ../secret", func(f *fixture) Errno { _, e := f.open("../secret", 0, 0, all); return e }, []Errno{errnoNotcapable}},
		{"open sub/../../secret", func(f *fixture) Errno { _, e := f.open("sub/../../secret", 0, 0, all); return e }, []Errno{errnoNotcapable}},
		{"open absolute", func(f *fixture) Errno { _, e := f.open("/etc/passwd", follow, 0, all); return e }, []Errno{errnoNotcapable}},
		{"open link to /etc/passwd", func(f *fixture) Errno { _, e := f.open("abs", follow, 0, all); return e }, []Errno{errnoNotcapable}},
		{"open link to ../secret", func(f *fixture) Errno { _, e := f.open("up", follow, 0, all); return e }, []Errno{errnoNotcapable}},
		{"create through link to a directory outside", func(f *fixture) Errno {
			_, e := f.open("updir/new", follow, oflagCreat, all)
			return e
		}, []Errno{errnoNotcapable}},
		{"open link without following", func(f *fixture) Errno { _, e := f.open("up", 0, 0, all); return e }, []Errno{errnoLoop}},
		{"NUL in a path", func(f *fixture) Errno { _, e := f.open("in.txt\x00/../../secret", 0, 0, all); return e }, []Errno{errnoInval}},
		{"NUL in a directory to create", func(f *fixture) Errno { return f.t.pathCreateDirectory(preopen, "x\x00/../../outside") }, []Errno{errnoInval}},
		{"NUL in a directory to remove", func(f *fixture) Errno { return f.t.pathRemoveDirectory(preopen, "sub\x00") }, []Errno{errnoInval}},
		{"NUL in a file to unlink", func(f *fixture) Errno { return f.t.pathUnlinkFile(preopen, "in.txt\x00") }, []Errno{errnoInval}},
		{"NUL in a rename's target", func(f *fixture) Errno { return f.t.pathRename(preopen, "in.txt", preopen, "x\x00") }, []Errno{errnoInval}},
		{"stat link out", func(f *fixture) Errno { return f.t.pathFilestatGet(preopen, follow, "up", make([]byte, 64)) }, []Errno{errnoNotcapable}},
		{"stat ..", func(f *fixture) Errno { return f.t.pathFilestatGet(preopen, 0, "..", make([]byte, 64)) }, []Errno{errnoNotcapable}},
		{"set times through link out", func(f *fixture) Errno {
			return f.t.pathFilestatSetTimes(preopen, follow, "up", 0, 0, fstAtim|fstMtim)
		}, []Errno{errnoNotcapable}},
		{"set times of ../secret", func(f *fixture) Errno {
			return f.t.pathFilestatSetTimes(preopen, 0, "../secret", 0, 0, fstAtim|fstMtim)
		}, []Errno{errnoNotcapable}},
		{"set times through a trailing slash", func(f *fixture) Errno {
			return f.t.pathFilestatSetTimes(preopen, 0, "updir/", 0, 0, fstAtim|fstMtim)
		}, []Errno{errnoNotcapable}},
		{"mkdir ../x", func(f *fixture) Errno { return f.t.pathCreateDirectory(preopen, "../outside/x") }, []Errno{errnoNotcapable}},
		{"mkdir through link", func(f *fixture) Errno { return f.t.pathCreateDirectory(preopen, "updir/x") }, []Errno{errnoNotcapable}},
		{"unlink ../secret", func(f *fixture) Errno { return f.t.pathUnlinkFile(preopen, "../secret") }, []Errno{errnoNotcapable}},
		{"rmdir ../outside", func(f *fixture) Errno { return f.t.pathRemoveDirectory(preopen, "../outside") }, []Errno{errnoNotcapable}},
		{"rename out", func(f *fixture) Errno { return f.t.pathRename(preopen, "in.txt", preopen, "../outside/in.txt") }, []Errno{errnoNotcapable}},
		{"rename out through link", func(f *fixture) Errno { return f.t.pathRename(preopen, "in.txt", preopen, "updir/in.txt") }, []Errno{errnoNotcapable}},
		{"rename in from outside", func(f *fixture) Errno { return f.t.pathRename(preopen, "../secret", preopen, "stolen") }, []Errno{errnoNotcapable}},
		{"rename the tree itself", func(f *fixture) Errno { return f.t.pathRename(preopen, ".", preopen, "x") }, []Errno{errnoBusy}},
		{"hard link to ../secret", func(f *fixture) Errno { return f.t.pathLink(preopen, 0, "../secret", preopen, "stolen") }, []Errno{errnoNotcapable}},
		{"hard link following a link out", func(f *fixture) Errno { return f.t.pathLink(preopen, follow, "up", preopen, "stolen") }, []Errno{errnoNotcapable}},
		{"hard link following an absolute link", func(f *fixture) Errno { return f.t.pathLink(preopen, follow, "abs", preopen, "stolen") }, []Errno{errnoNotcapable}},
		{"hard link out", func(f *fixture) Errno { return f.t.pathLink(preopen, 0, "in.txt", preopen, "../outside/x") }, []Errno{errnoNotcapable}},
		{"symlink to an absolute path", func(f *fixture) Errno { return f.t.pathSymlink("/etc", preopen, "etc") }, []Errno{errnoPerm}},
		{"symlink placed outside", func(f *fixture) Errno { return f.t.pathSymlink("in.txt", preopen, "../outside/l") }, []Errno{errnoNotcapable}},
		{"readlink outside", func(f *fixture) Errno { _, e := f.t.pathReadlink(preopen, "../tree/up", make([]byte, 64)); return e }, []Errno{errnoNotcapable}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, false, 0)
			got := tt.op(f)
			ok := false
			for _, w := range tt.want {
				ok = ok || got == w
			}
			if !ok {
				t.Fatalf("errno %d, want one of %v", got, tt.want)
			}
			f.untouched(t)
		})
	}
}

// A link the guest makes to somewhere outside can be made (it is text)
// but never followed.
func TestGuestMadeLinkOutIsNotFollowed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false, 0)
	if e := f.t.pathSymlink("../secret", preopen, "mine"); e != 0 {
		t.Fatalf("symlink: %d", e)
	}
	if e := f.t.pathSymlink("../../tree/../secret", preopen, "sub/deep"); e != 0 {
		t.Fatalf("symlink: %d", e)
	}
	for _, p := range []string{"mine", "sub/deep"} {
		if _, e := f.open(p, lookupSymlinkFollow, 0, all); e != errnoNotcapable {
			t.Errorf("open %s: %d, want ENOTCAPABLE", p, e)
		}
		if _, e := f.open(p, lookupSymlinkFollow, oflagCreat|oflagTrunc, all); e != errnoNotcapable {
			t.Errorf("create through %s: %d, want ENOTCAPABLE", p, e)
		}
	}
	f.untouched(t)
}

// A directory descriptor is a capability of its own: ".." above it is
// refused even when it stays inside the mount.
func TestDirectoryDescriptorIsItsOwnRoot(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false, 0)
	sub, e := f.t.pathOpen(preopen, 0, "sub", oflagDirectory, dirRights, all, 0)
	if e != 0 {
		t.Fatalf("open sub: %d", e)
	}
	if _, e := f.t.pathOpen(sub, 0, "../in.txt", 0, all, all, 0); e != errnoNotcapable {
		t.Fatalf("open ../in.txt from sub: %d, want ENOTCAPABLE", e)
	}
	// After the guest moves its directory away, ".." still ends at it.
	if e := f.t.pathRename(preopen, "sub", preopen, "moved"); e != 0 {
		t.Fatalf("rename: %d", e)
	}
	if _, e := f.t.pathOpen(sub, 0, "../../secret", 0, all, all, 0); e != errnoNotcapable {
		t.Fatalf("open ../../secret from the moved sub: %d, want ENOTCAPABLE", e)
	}
	f.untouched(t)
}

func TestReaddirShowsNothingAboveTheMount(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false, 0)
	buf := make([]byte, 4096)
	n, e := f.t.fdReaddir(preopen, buf, 0)
	if e != 0 {
		t.Fatal(e)
	}
	names, inos := map[string]uint64{}, []uint64{}
	for b := buf[:n]; len(b) >= sizeDirent; {
		l := int(le.Uint32(b[16:]))
		names[string(b[sizeDirent:sizeDirent+l])] = le.Uint64(b[8:])
		inos = append(inos, le.Uint64(b[8:]))
		b = b[sizeDirent+l:]
	}
	if names["."] != names[".."] {
		t.Fatalf(`".." of the mount has inode %d, not the mount's own %d`, names[".."], names["."])
	}
	for _, want := range []string{"in.txt", "sub", "abs", "up"} {
		if _, ok := names[want]; !ok {
			t.Fatalf("listing %v lacks %s", names, want)
		}
	}
	// From a cookie, the listing goes on where it stopped.
	small := make([]byte, sizeDirent+1)
	n, e = f.t.fdReaddir(preopen, small, 0)
	if e != 0 || n != len(small) || le.Uint64(small[0:]) != 1 {
		t.Fatalf("a buffer shorter than an entry: n %d errno %d", n, e)
	}
	n, e = f.t.fdReaddir(preopen, buf, uint64(len(inos)))
	if e != 0 || n != 0 {
		t.Fatalf("reading past the end: n %d errno %d", n, e)
	}
}

func TestReadOnlyMount(t *testing.T) {
	t.Parallel()
	f := newFixture(t, true, 0)
	fd, e := f.open("in.txt", 0, 0, rightFdRead)
	if e != 0 {
		t.Fatalf("open for reading: %d", e)
	}
	buf := make([]byte, 16)
	if n, e := f.t.fdRead(fd, [][]byte{buf}, 0, false); e != 0 || string(buf[:n]) != "hello" {
		t.Fatalf("read %q %d", buf[:n], e)
	}
	if _, e := f.t.fdWrite(fd, [][]byte{[]byte("x")}, 0, false); e != errnoRofs {
		t.Fatalf("write to a read-only file: %d", e)
	}
	if e := f.t.fdFilestatSetTimes(fd, 0, 0, fstMtimNow); e != errnoRofs {
		t.Fatalf("set the times of a read-only file: %d", e)
	}
	changes := map[string]func() Errno{
		"open for writing": func() Errno { _, e := f.open("in.txt", 0, 0, rightFdWrite); return e },
		"create":           func() Errno { _, e := f.open("new", 0, oflagCreat, rightFdRead); return e },
		"truncate":         func() Errno { _, e := f.open("in.txt", 0, oflagTrunc, rightFdRead); return e },
		"mkdir":            func() Errno { return f.t.pathCreateDirectory(preopen, "d") },
		"unlink":           func() Errno { return f.t.pathUnlinkFile(preopen, "in.txt") },
		"rmdir":            func() Errno { return f.t.pathRemoveDirectory(preopen, "sub") },
		"rename":           func() Errno { return f.t.pathRename(preopen, "in.txt", preopen, "x") },
		"link":             func() Errno { return f.t.pathLink(preopen, 0, "in.txt", preopen, "x") },
		"symlink":          func() Errno { return f.t.pathSymlink("in.txt", preopen, "x") },
		"set times":        func() Errno { return f.t.pathFilestatSetTimes(preopen, 0, "in.txt", 0, 0, fstMtimNow) },
		"create through a subdirectory": func() Errno {
			sub, e := f.t.pathOpen(preopen, 0, "sub", oflagDirectory, dirRights, all, 0)
			if e != 0 {
				return e
			}
			_, e = f.t.pathOpen(sub, 0, "new", oflagCreat, rightFdWrite, 0, 0)
			return e
		},
	}
	for name, op := range changes {
		if e := op(); e != errnoRofs {
			t.Errorf("%s: errno %d, want EROFS", name, e)
		}
	}
	b, err := os.ReadFile(filepath.Join(f.tree, "in.txt"))
	if err != nil || string(b) != "hello" {
		t.Fatalf("in.txt is %q %v", b, err)
	}
	if entries, _ := os.ReadDir(f.tree); len(entries) != 6 {
		t.Fatalf("the tree changed: %v", entries)
	}
}

func TestWriteBudget(t *testing.T) {
	t.Parallel()
	const budget = 2*CreateCost + 100
	f := newFixture(t, false, budget)
	fd, e := f.open("out", 0, oflagCreat, fileRights)
	if e != 0 {
		t.Fatal(e)
	}
	if f.t.Written() != CreateCost {
		t.Fatalf("creating a file counted %d", f.t.Written())
	}
	// Rewriting bytes a file already has costs nothing.
	for range 10 {
		if n, e := f.t.fdWrite(fd, [][]byte{make([]byte, 60)}, 0, true); e != 0 || n != 60 {
			t.Fatalf("pwrite at 0: %d %d", n, e)
		}
	}
	if f.t.Written() != CreateCost+60 {
		t.Fatalf("after rewrites: %d", f.t.Written())
	}
	// A failed mkdir (the directory exists) costs nothing either.
	for range 5 {
		if e := f.t.pathCreateDirectory(preopen, "sub"); e != errnoExist {
			t.Fatalf("mkdir sub: %d", e)
		}
	}
	if e := f.t.pathCreateDirectory(preopen, "d1"); e != 0 {
		t.Fatal(e)
	}
	// The write that crosses the budget writes what fits; the next fails.
	if _, e := unix.Seek(f.t.entries[fd].fd, 0, 2); e != nil {
		t.Fatal(e)
	}
	n, e := f.t.fdWrite(fd, [][]byte{make([]byte, 30), make([]byte, 30), make([]byte, 30)}, 0, false)
	if e != 0 || n != 100-60 {
		t.Fatalf("write across the budget: n %d errno %d (written %d)", n, e, f.t.Written())
	}
	if _, e := f.t.fdWrite(fd, [][]byte{[]byte("x")}, 0, false); e != errnoNospc {
		t.Fatalf("write past the budget: %d, want ENOSPC", e)
	}
	if e := f.t.fdFilestatSetSize(fd, 1<<40); e != errnoNospc {
		t.Fatalf("grow a file to 1 TiB: %d, want ENOSPC", e)
	}
	if e := f.t.fdAllocate(fd, 0, 1<<30); e != errnoNospc {
		t.Fatalf("allocate 1 GiB: %d, want ENOSPC", e)
	}
	if e := f.t.pathCreateDirectory(preopen, "d2"); e != errnoNospc {
		t.Fatalf("mkdir past the budget: %d, want ENOSPC", e)
	}
	if _, e := f.open("more", 0, oflagCreat, rightFdWrite); e != errnoNospc {
		t.Fatalf("create past the budget: %d, want ENOSPC", e)
	}
	if f.t.Written() > budget {
		t.Fatalf("written %d, over the budget %d", f.t.Written(), budget)
	}
	st, err := os.Stat(filepath.Join(f.tree, "out"))
	must(t, err)
	if st.Size() != 100 {
		t.Fatalf("out is %d bytes", st.Size())
	}
	// Shrinking and rewriting within the file still works.
	if e := f.t.fdFilestatSetSize(fd, 10); e != 0 {
		t.Fatalf("shrink: %d", e)
	}
	if _, e := f.t.fdWrite(fd, [][]byte{make([]byte, 10)}, 0, true); e != 0 {
		t.Fatalf("rewrite: %d", e)
	}
}

func TestTooManyOpenFiles(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false, 0)
	for f.t.open < MaxOpen {
		if _, e := f.open("in.txt", 0, 0, rightFdRead); e != 0 {
			t.Fatalf("open %d: %d", f.t.open, e)
		}
	}
	if _, e := f.open("in.txt", 0, 0, rightFdRead); e != errnoMfile {
		t.Fatalf("open past %d: %d, want EMFILE", MaxOpen, e)
	}
	if e := f.t.fdClose(preopen + 1); e != 0 {
		t.Fatal(e)
	}
	if fd, e := f.open("in.txt", 0, 0, rightFdRead); e != 0 || fd != preopen+1 {
		t.Fatalf("after a close: fd %d errno %d", fd, e)
	}
	must(t, f.t.Close())
	if _, e := f.t.get(preopen); e != errnoBadf {
		t.Fatal("a descriptor is open after Close")
	}
}

// A FIFO (which a host directory may hold) is refused at once: opening it
// would block the guest until a writer came.
func TestSpecialFilesAreRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false, 0)
	must(t, unix.Mkfifo(filepath.Join(f.tree, "fifo"), 0o644))
	done := make(chan Errno, 1)
	go func() { _, e := f.open("fifo", 0, 0, rightFdRead); done <- e }()
	if e := testenv.Recv(t, done, "opening a FIFO, which must not block"); e != errnoAcces {
		t.Fatalf("open a FIFO: %d, want EACCES", e)
	}
}

func TestRights(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false, 0)
	fd, e := f.open("in.txt", 0, 0, rightFdRead|rightFdSeek)
	if e != 0 {
		t.Fatal(e)
	}
	if e := f.t.fdFdstatSetRights(fd, rightFdRead, 0); e != 0 {
		t.Fatal(e)
	}
	if _, e := f.t.fdSeek(fd, 1, whenceSet); e != errnoNotcapable {
		t.Fatalf("seek after dropping the right: %d", e)
	}
	if e := f.t.fdFdstatSetRights(fd, rightFdRead|rightFdSeek, 0); e != errnoNotcapable {
		t.Fatalf("taking a right back: %d", e)
	}
	// A descriptor gets no right its directory cannot hand on.
	if e := f.t.fdFdstatSetRights(preopen, dirRights, dirRights&^rightFdWrite); e != 0 {
		t.Fatal(e)
	}
	fd2, e := f.open("in.txt", 0, 0, rightFdRead|rightFdWrite)
	if e != 0 {
		t.Fatal(e)
	}
	if _, e := f.t.fdWrite(fd2, [][]byte{[]byte("x")}, 0, false); e != errnoNotcapable {
		t.Fatalf("write without the right: %d", e)
	}
}

func TestErrnoOf(t *testing.T) {
	t.Parallel()
	r, err := os.OpenRoot(t.TempDir())
	must(t, err)
	defer r.Close()
	must(t, r.WriteFile("file", nil, 0o644))
	_, escape := r.Open("../x")
	_, abs := r.Open("/x")
	_, notDir := r.OpenRoot("file")
	_, empty := r.Open("")
	tests := []struct {
		err  error
		want Errno
	}{
		{escape, errnoNotcapable},
		{abs, errnoNotcapable},
		{notDir, errnoNotdir},
		{empty, errnoNoent},
		{&os.PathError{Err: syscall.ENOENT}, errnoNoent},
		{fmt.Errorf("wrapped: %w", syscall.EXDEV), errnoXdev},
		{os.ErrExist, errnoExist},
		{errors.New("something else"), errnoIO},
	}
	for _, tt := range tests {
		if got := errnoOf(tt.err); got != tt.want {
			t.Errorf("errnoOf(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestSplitParent(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, parent, last string }{
		{"a", ".", "a"},
		{"a/b", "a", "b"},
		{"a/b/", "a", "b/"},
		{"a//b//", "a/", "b//"},
		{"a/.", "a/.", ""},
		{"..", "..", ""},
		{"a/..", "a/..", ""},
		{"./a", ".", "a"},
	} {
		parent, last := splitParent(tt.in)
		if parent != tt.parent || last != tt.last {
			t.Errorf("splitParent(%q) = %q, %q; want %q, %q", tt.in, parent, last, tt.parent, tt.last)
		}
	}
}

func TestStdio(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	tb, err := New(Config{Stdin: bytes.NewReader([]byte("input")), Stdout: &out})
	must(t, err)
	buf := make([]byte, 3)
	if n, e := tb.fdRead(0, [][]byte{buf[:0], buf}, 0, false); e != 0 || string(buf[:n]) != "inp" {
		t.Fatalf("read %q %d", buf[:n], e)
	}
	if _, e := tb.fdWrite(1, [][]byte{[]byte("a"), []byte("b")}, 0, false); e != 0 || out.String() != "ab" {
		t.Fatalf("write %q %d", out.String(), e)
	}
	if _, e := tb.fdSeek(1, 0, whenceSet); e != errnoSpipe {
		t.Fatalf("seek stdout: %d", e)
	}
	if _, e := tb.fdWrite(0, [][]byte{[]byte("a")}, 0, false); e != errnoNotcapable {
		t.Fatalf("write stdin: %d", e)
	}
	if _, e := tb.get(3); e != errnoBadf {
		t.Fatal("fd 3 is open without mounts")
	}
	// poll: stdin readable with its bytes left, stdout writable.
	if e := tb.fdRenumber(1, 0); e != 0 {
		t.Fatal(e)
	}
	if _, e := tb.get(1); e != errnoBadf {
		t.Fatal("fd 1 still open after renumbering it to 0")
	}
	_ = context.Background()
}

// TestTransfer: the loop under fd_read and fd_write counts what the calls
// moved, stops at a short call, retries EINTR, and reports an error only
// when nothing moved (a failed call's -1 is not counted).
func TestTransfer(t *testing.T) {
	type call struct {
		n   int
		err error
	}
	for _, c := range []struct {
		name  string
		sizes []int
		calls []call // answers in order; a buffer not answered here moves whole
		n     int
		errno Errno
	}{
		{"every buffer whole", []int{3, 2}, nil, 5, errnoSuccess},
		{"empty buffers are skipped", []int{0, 3, 0}, nil, 3, errnoSuccess},
		{"a short call ends it", []int{3, 2}, []call{{1, nil}}, 1, errnoSuccess},
		{"an error after bytes is a short transfer", []int{3, 2, 4}, []call{{3, nil}, {-1, syscall.EIO}}, 3, errnoSuccess},
		{"an error before any byte is the result", []int{3}, []call{{-1, syscall.ENOSPC}}, 0, errnoNospc},
		{"EINTR is retried", []int{3}, []call{{-1, syscall.EINTR}, {3, nil}}, 3, errnoSuccess},
	} {
		t.Run(c.name, func(t *testing.T) {
			bufs := make([][]byte, len(c.sizes))
			for i, s := range c.sizes {
				bufs[i] = make([]byte, s)
			}
			var dones []int
			calls := c.calls
			n, errno := transfer(bufs, func(b []byte, done int) (int, error) {
				dones = append(dones, done)
				if len(calls) == 0 {
					return len(b), nil
				}
				a := calls[0]
				calls = calls[1:]
				return a.n, a.err
			})
			if n != c.n || errno != c.errno {
				t.Fatalf("transfer = %d, %d; want %d, %d (calls saw done %v)", n, errno, c.n, c.errno, dones)
			}
			for i := 1; i < len(dones); i++ {
				if dones[i] < dones[i-1] {
					t.Fatalf("done went back: %v", dones)
				}
			}
		})
	}
}

// TestDepthBound: nothing the guest makes lies more than MaxDepth levels
// below its mount, however it gets there: through directory descriptors,
// a link leading down, a file, link or hard link made at the bottom, or a
// tree moved deeper down; each fails with ENAMETOOLONG.
func TestDepthBound(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false, 0)
	const limit = 6
	f.t.cfg.MaxDepth = limit
	fd, levels := uint32(preopen), 0
	for {
		e := f.t.pathCreateDirectory(fd, "a")
		if e == errnoNametoolong {
			break
		}
		if e != 0 || levels > limit {
			t.Fatalf("mkdir at level %d: %d", levels+1, e)
		}
		levels++
		next, e := f.t.pathOpen(fd, 0, "a", oflagDirectory, dirRights, all, 0)
		if e != 0 {
			t.Fatalf("open level %d: %d", levels, e)
		}
		fd = next
	}
	if levels != limit {
		t.Fatalf("%d levels made, want %d", levels, limit)
	}
	bottom := strings.Repeat("a/", limit) // a directory at the bound
	tests := []struct {
		name string
		call func() Errno
		want Errno
	}{
		{"file at the bottom", func() Errno { _, e := f.open(bottom+"f", 0, oflagCreat, all); return e }, errnoNametoolong},
		{"file from the bottom's descriptor", func() Errno { _, e := f.t.pathOpen(fd, 0, "f", oflagCreat, all, all, 0); return e }, errnoNametoolong},
		{"file one level up", func() Errno { _, e := f.open(bottom+"../f", 0, oflagCreat, all); return e }, 0},
		{"symlink at the bottom", func() Errno { return f.t.pathSymlink("x", preopen, bottom+"l") }, errnoNametoolong},
		{"hard link at the bottom", func() Errno { return f.t.pathLink(preopen, 0, "in.txt", preopen, bottom+"h") }, errnoNametoolong},
		{"mkdir through a link leading down", func() Errno {
			if e := f.t.pathSymlink(strings.TrimSuffix(bottom, "/"), preopen, "down"); e != 0 {
				return e
			}
			return f.t.pathCreateDirectory(preopen, "down/b")
		}, errnoNametoolong},
		{"a tree moved deeper down", func() Errno {
			for _, p := range []string{"t", "t/t", "t/t/t"} {
				if e := f.t.pathCreateDirectory(preopen, p); e != 0 {
					return e
				}
			}
			if e := f.t.pathRename(preopen, "t", preopen, "a/a/a/a/t"); e != errnoNametoolong {
				return e + 1000 // not refused: fails the case
			}
			return f.t.pathRename(preopen, "t", preopen, "a/a/a/t") // its bottom at 6
		}, 0},
		{"a file moved to the bottom", func() Errno { return f.t.pathRename(preopen, "in.txt", preopen, bottom+"m") }, errnoNametoolong},
	}
	for _, tt := range tests {
		if e := tt.call(); e != tt.want {
			t.Errorf("%s: errno %d, want %d", tt.name, e, tt.want)
		}
	}
	f.untouched(t)
}
