package runfiles

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz"
)

func limits() wasmwiz.Limits {
	return wasmwiz.Limits{MaxFilesInBytes: wasmwiz.MiB, MaxFiles: 100, MaxFilesOutBytes: wasmwiz.MiB}
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
