package engine

import (
	"context"
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
		Wasm: testmodule.Read(t, "unstable_files.wasm"), Limits: limits(), Mounts: []wasmwiz.Mount{{HostDir: dir, GuestDir: "/"}},
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
			_, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "fsprobe.wasm"), Limits: limits(), Mounts: tt.mounts})
			if wasmwiz.ErrorCode(err) != wasmwiz.EINVALID || !strings.Contains(wasmwiz.ErrorMessage(err), tt.want) {
				t.Fatalf("Run: %v, want EINVALID with %q", err, tt.want)
			}
		})
	}
}
