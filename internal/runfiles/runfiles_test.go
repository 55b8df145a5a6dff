package runfiles

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz"
)

func limits() wasmwiz.Limits {
	return wasmwiz.Limits{MaxFilesInBytes: wasmwiz.MiB, MaxFiles: 100, MaxFileWriteBytes: 16 * wasmwiz.MiB, MaxFilesOutBytes: wasmwiz.MiB}
}

func newTree(t *testing.T, outputs ...string) *Tree {
	t.Helper()
	f := &wasmwiz.RunFiles{Mount: "/work", Outputs: outputs, Entries: []wasmwiz.FileEntry{
		{Path: "a.txt", Data: []byte("a")},
		{Path: "out/b.png", Data: []byte("bb")},
		{Path: "out/deep/c.png", Data: []byte("ccc")},
		{Path: "out/deep/d.txt", Data: []byte("dddd")},
		{Path: "empty", Kind: wasmwiz.FileDir},
		{Path: "link", Kind: wasmwiz.FileSymlink, Target: "out/b.png"},
	}}
	if err := f.Check(limits()); err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	tree, err := Make(parent, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tree.Remove() })
	// What a guest could leave: a link out of the tree.
	secret := filepath.Join(parent, "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(tree.Dir, "out", "stolen.png")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../secret", filepath.Join(tree.Dir, "out", "up.png")); err != nil {
		t.Fatal(err)
	}
	return tree
}

func paths(files []wasmwiz.OutputFile) string {
	var p []string
	for _, f := range files {
		s := f.Path + "=" + string(f.Data)
		if f.Omitted {
			s = f.Path + "(omitted)"
		}
		p = append(p, s)
	}
	return strings.Join(p, " ")
}

func TestCollect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		outputs []string
		want    string
	}{
		{nil, ""},
		{[]string{"*.txt"}, "a.txt=a"},
		{[]string{"out/*.png"}, "out/b.png=bb"},
		{[]string{"out/"}, "out/b.png=bb out/deep/c.png=ccc out/deep/d.txt=dddd"},
		{[]string{"out/deep"}, "out/deep/c.png=ccc out/deep/d.txt=dddd"},
		{[]string{"."}, "a.txt=a link=bb out/b.png=bb out/deep/c.png=ccc out/deep/d.txt=dddd"},
		{[]string{"*/*/*.png", "a.txt", "a.txt"}, "a.txt=a out/deep/c.png=ccc"},
		{[]string{"link"}, "link=bb"},
		{[]string{"missing/*", "empty/"}, ""},
	}
	for _, tt := range tests {
		tree := newTree(t, tt.outputs...)
		files, err := tree.Collect(limits())
		if err != nil {
			t.Fatal(err)
		}
		if got := paths(files); got != tt.want {
			t.Errorf("outputs %q: %q, want %q", tt.outputs, got, tt.want)
		}
		if tt.outputs != nil && files == nil {
			t.Errorf("outputs %q: nil, want a list", tt.outputs)
		}
	}
}

func TestCollectLimits(t *testing.T) {
	t.Parallel()
	tree := newTree(t, ".")
	l := limits()
	l.MaxFilesOutBytes = 3 // a.txt and link fit; the rest is listed without content
	files, err := tree.Collect(l)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := paths(files), "a.txt=a link=bb out/b.png(omitted) out/deep/c.png(omitted) out/deep/d.txt(omitted)"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	if files[2].Size != 2 || files[2].SHA256 != files[1].SHA256 || len(files[2].SHA256) != 64 {
		t.Fatalf("an omitted file keeps its size and digest: %+v", files[2])
	}
	l.MaxFiles = 2
	files, _ = tree.Collect(l)
	if got := paths(files); got != "a.txt=a link=bb" {
		t.Fatalf("at most MaxFiles: %q", got)
	}
}

func TestRequest(t *testing.T) {
	t.Parallel()
	tree := newTree(t)
	req := &wasmwiz.RunRequest{Env: map[string]string{"K": "V"}, Mounts: []wasmwiz.Mount{{HostDir: "/x", GuestDir: "/x"}}, Files: tree.files}
	got := tree.Request(req)
	if got.Files != nil || len(got.Mounts) != 3 || got.Mounts[1] != (wasmwiz.Mount{HostDir: tree.Dir, GuestDir: "/work"}) ||
		got.Mounts[2].GuestDir != "." || got.Env["PWD"] != "/work" || got.Env["K"] != "V" {
		t.Fatalf("%+v", got)
	}
	if req.Env["PWD"] != "" || len(req.Mounts) != 1 || req.Files == nil {
		t.Fatalf("the request itself changed: %+v", req)
	}
	tree.files.Mount = "/"
	if got := tree.Request(&wasmwiz.RunRequest{}); len(got.Mounts) != 1 || got.Env != nil {
		t.Fatalf("mount /: %+v", got)
	}
}

func TestRemove(t *testing.T) {
	t.Parallel()
	tree := newTree(t)
	if err := tree.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tree.Dir); !os.IsNotExist(err) {
		t.Fatalf("%s is still there: %v", tree.Dir, err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(tree.Dir), "secret")); err != nil {
		t.Fatalf("Remove followed a link out: %v", err)
	}
}

// TestCollectLinksDoNotMultiply: a tree of 99 links to "." (what an
// archive may send within 100 files, or a guest make) and outputs that
// cross them at every level. Links are not followed into directories, so
// the tree is read once, whatever the outputs: its 100 entries, and each
// link resolved once, at 2 (its name and its target).
func TestCollectLinksDoNotMultiply(t *testing.T) {
	t.Parallel()
	entries := []wasmwiz.FileEntry{{Path: "x", Data: []byte("x")}}
	for i := range 99 {
		entries = append(entries, wasmwiz.FileEntry{Path: fmt.Sprintf("l%02d", i), Kind: wasmwiz.FileSymlink, Target: "."})
	}
	f := &wasmwiz.RunFiles{Entries: entries, Outputs: []string{"*/*/*/*/x", "*/*/*/*/*/*/*/*/x", "l00/x", "l01/", "*", "."}}
	if err := f.Check(limits()); err != nil {
		t.Fatal(err)
	}
	tree, err := Make(t.TempDir(), f)
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Remove()
	files, c, err := tree.collect(limits())
	if err != nil {
		t.Fatal(err)
	}
	if got := paths(files); got != "x=x" {
		t.Fatalf("files %q, want only x: a link to a directory brings nothing", got)
	}
	if c.visits != 100+99*2 {
		t.Fatalf("visited %d, want the tree's 100 entries and 99 links", c.visits)
	}
}

// TestCollectBounded: collecting stops at the max_files-th file, reads no
// more than maxVisits directory entries however wide the tree, and hashes
// a file reached by many paths once.
func TestCollectBounded(t *testing.T) {
	t.Parallel()
	tree := newTree(t, ".")
	for d := range 20 {
		for f := range 5 {
			plant(t, filepath.Join(tree.Dir, "many", fmt.Sprintf("d%02d", d), fmt.Sprintf("f%d", f)), "f")
		}
	}
	l := limits()
	l.MaxFiles = 12 // a.txt, link and 10 files of many/
	files, c, err := tree.collect(l)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 12 || files[2].Path != "many/d00/f0" || files[11].Path != "many/d01/f4" {
		t.Fatalf("the first 12 files in path order: %q", paths(files))
	}
	// The root's 5 entries (a.txt empty link many out), link resolved (3:
	// link, out, b.png), many's 20, and the 5 of d00 and d01; not the rest
	// of many, nor out.
	if want := int64(5 + 3 + 20 + 5 + 5); c.visits != want {
		t.Fatalf("visited %d, want %d", c.visits, want)
	}

	wide := newTree(t, "*.png")
	for i := range 500 {
		plant(t, filepath.Join(wide.Dir, fmt.Sprintf("w%03d.txt", i)), "w")
	}
	l = wasmwiz.Limits{MaxFiles: 10, MaxFileWriteBytes: 10 * createCost, MaxFilesOutBytes: wasmwiz.MiB}
	if _, c, _ := wide.collect(l); c.visits != maxVisits(l) || c.visits != 40 {
		t.Fatalf("a directory of 500 entries: read %d, want maxVisits %d", c.visits, maxVisits(l))
	}

	big := newTree(t, ".")
	plant(t, filepath.Join(big.Dir, "big"), strings.Repeat("b", 1000))
	for i := range 50 {
		if err := os.Link(filepath.Join(big.Dir, "big"), filepath.Join(big.Dir, fmt.Sprintf("hard%02d", i))); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("big", filepath.Join(big.Dir, fmt.Sprintf("soft%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	l = limits()
	l.MaxFiles = 200
	l.MaxFilesOutBytes = 100 // big and its links are omitted, listed with their digest
	files, c, err = big.collect(l)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 106 || files[1].Path != "big" || !files[1].Omitted || files[1].SHA256 != files[105].SHA256 || files[105].Path != "soft49" || files[105].Size != 1000 {
		t.Fatalf("files %q", paths(files))
	}
	if c.hashed >= 2000 {
		t.Fatalf("hashed %d bytes: big (1000 bytes) through its 100 links more than once", c.hashed)
	}
}

// TestCollectDeep: a chain of directories deeper than maxDepth, as a
// guest may make within its write budget, with a file and a link at every
// level. Collect goes maxDepth directories down, opening each from its
// parent, and a link deep down costs the path it resolves.
func TestCollectDeep(t *testing.T) {
	t.Parallel()
	f := &wasmwiz.RunFiles{Outputs: []string{"."}}
	tree, err := Make(t.TempDir(), f)
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Remove()
	dir := tree.Dir
	for range maxDepth + 50 {
		plant(t, filepath.Join(dir, "f"), "f")
		if err := os.Symlink("f", filepath.Join(dir, "l")); err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(dir, "d")
	}
	l := limits()
	l.MaxFiles = 1000
	files, c, err := tree.collect(l)
	if err != nil {
		t.Fatal(err)
	}
	levels := maxDepth + 1 // the root and maxDepth directories under it
	if len(files) != 2*levels || files[0].Path != strings.Repeat("d/", maxDepth)+"f" || files[1].Path != strings.Repeat("d/", maxDepth)+"l" {
		t.Fatalf("%d files, the first %s; want a file and a link on each of %d levels", len(files), files[0].Path, levels)
	}
	// 3 entries a level, and each link: its depth, its name and its target.
	want := int64(3 * levels)
	for depth := range levels {
		want += int64(depth + 2)
	}
	if c.visits != want {
		t.Fatalf("visited %d, want %d", c.visits, want)
	}
}

func plant(t *testing.T, name, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
