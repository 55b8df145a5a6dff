package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// The legacy wasi_unstable differs from preview1 in file calls: whence
// numbers and the filestat layout.
func TestUnstableFileLayouts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "in.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := sharedEngine(t).Run(context.Background(), &wasmwiz.RunRequest{
		Wasm: testmodule.Read(t, "unstable_files.wasm"), Limits: testmodule.Limits(), Mounts: []wasmwiz.Mount{{HostDir: dir, GuestDir: "/"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != wasmwiz.StatusExit || res.ExitCode != 15 {
		t.Fatalf("status %s exit %d (15: seek to the end at 5, one link; 99: size misread)", res.Status, res.ExitCode)
	}
}

func TestMounts(t *testing.T) {
	t.Parallel()
	e := sharedEngine(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mounts []wasmwiz.Mount
		want   string // error message part
	}{
		{"missing directory", []wasmwiz.Mount{{HostDir: filepath.Join(dir, "nope"), GuestDir: "/"}}, "cannot open the directory"},
		{"a file", []wasmwiz.Mount{{HostDir: file, GuestDir: "/"}}, "cannot open the directory"},
		{"relative guest path", []wasmwiz.Mount{{HostDir: dir, GuestDir: "data"}}, "must be an absolute path"},
		{"one guest path twice", []wasmwiz.Mount{{HostDir: dir, GuestDir: "/a"}, {HostDir: dir, GuestDir: "/a/"}}, "two directories are mounted at /a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "fsprobe.wasm"), Limits: testmodule.Limits(), Mounts: tt.mounts})
			if wasmwiz.ErrorCode(err) != wasmwiz.EINVALID || !strings.Contains(wasmwiz.ErrorMessage(err), tt.want) {
				t.Fatalf("Run: %v, want EINVALID with %q", err, tt.want)
			}
		})
	}
}

// TestRunFiles: a caller's files go into a fresh directory the guest sees
// at its mount and works in; what matches the outputs comes back, links
// leading out do not; the directory is gone after the run.
func TestRunFiles(t *testing.T) {
	t.Parallel()
	filesDir := t.TempDir()
	e := newEngine(t, Options{FilesDir: filesDir})
	lim := testmodule.Limits()
	lim.MaxFilesInBytes, lim.MaxFiles, lim.MaxFileWriteBytes, lim.MaxFilesOutBytes = wasmwiz.MiB, 100, 64*1024, 6
	files := &wasmwiz.RunFiles{
		Entries: []wasmwiz.FileEntry{{Path: "in.txt", Data: []byte("hello")}, {Path: "data/n.csv", Data: []byte("1,2")}},
		Mount:   "/work",
		Outputs: []string{"out/", "*.txt", "missing/*"},
	}
	if err := files.Check(lim); err != nil {
		t.Fatal(err)
	}
	args := strings.Fields("cwd cat in.txt cat /work/data/n.csv mkdir out write out/a.txt hi write out/b.txt bye " +
		"symlink ../../../etc/passwd out/up symlink a.txt out/same fill big 70000 cat ../secret")
	res, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "fsprobe.wasm"), Args: args, Limits: lim, Files: files})
	if err != nil {
		t.Fatal(err)
	}
	want := "cwd: ok /\ncat in.txt: ok hello\ncat /work/data/n.csv: ok 1,2\nmkdir out: ok\nwrite out/a.txt hi: ok 2\n" +
		"write out/b.txt bye: ok 3\nsymlink ../../../etc/passwd out/up: ok\nsymlink a.txt out/same: ok\n" +
		"fill big 70000: ENOSPC after "
	if res.Status != wasmwiz.StatusOK || !strings.HasPrefix(string(res.Stdout), want) || !strings.HasSuffix(string(res.Stdout), "cat ../secret: ENOTCAPABLE\n") {
		t.Fatalf("status %s\nstdout %s\nstderr %s", res.Status, res.Stdout, res.Stderr)
	}
	var got []string
	for _, f := range res.Files {
		got = append(got, fmt.Sprintf("%s %d %v %q", f.Path, f.Size, f.Omitted, f.Data))
		sum := sha256.Sum256([]byte(map[string]string{"in.txt": "hello", "out/a.txt": "hi", "out/b.txt": "bye", "out/same": "hi"}[f.Path]))
		if f.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: sha256 %s", f.Path, f.SHA256)
		}
	}
	// Path order; contents up to 6 bytes, the rest listed without.
	if want := `in.txt 5 false "hello"|out/a.txt 2 true ""|out/b.txt 3 true ""|out/same 2 true ""`; strings.Join(got, "|") != want {
		t.Fatalf("files\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
	if entries, _ := os.ReadDir(filesDir); len(entries) != 0 {
		t.Fatalf("the run's directory is still there: %v", entries)
	}
}

// TestDeepDirectoriesAreBounded: a guest nesting directories through
// directory descriptors (each level costs it only CreateCost of its write
// budget, 4,096 levels in the free tier's 16 MiB) stops at
// wasmwiz.MaxFileDepth with ENAMETOOLONG, and its directory is removed
// after the run.
func TestDeepDirectoriesAreBounded(t *testing.T) {
	t.Parallel()
	filesDir := t.TempDir()
	e := newEngine(t, Options{FilesDir: filesDir})
	lim := testmodule.Limits()
	lim.MaxFilesInBytes, lim.MaxFiles, lim.MaxFileWriteBytes, lim.MaxFilesOutBytes = wasmwiz.MiB, 100, 16*wasmwiz.MiB, wasmwiz.MiB
	files := &wasmwiz.RunFiles{Entries: []wasmwiz.FileEntry{{Path: "in.txt", Data: []byte("x")}}, Mount: "/"}
	if err := files.Check(lim); err != nil {
		t.Fatal(err)
	}
	res, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "deep_dirs.wasm"), Limits: lim, Files: files})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != wasmwiz.StatusExit || res.ExitCode != wasmwiz.MaxFileDepth {
		t.Fatalf("status %s exit %d; want exit %d (levels made before ENAMETOOLONG; 228: ENOSPC, the budget stopped it)", res.Status, res.ExitCode, wasmwiz.MaxFileDepth)
	}
	if entries, _ := os.ReadDir(filesDir); len(entries) != 0 {
		t.Fatalf("the run's directory is still there: %v", entries)
	}
}
