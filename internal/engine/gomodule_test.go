package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestGoModules runs real Go wasip1 programs: one that works, and one
// whose Go runtime dies of the memory cap, which must be memory_limit.
func TestGoModules(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Go wasip1 programs; skipped with -short")
	}
	t.Parallel()
	e := sharedEngine(t)
	// The wall time covers the compile: a Go program of a few MB took 12 s
	// to compile beside the rest of the tests on a loaded machine.
	limits := func() wasmwiz.Limits {
		l := testmodule.Limits()
		l.Timeout = 10 * time.Minute
		return l
	}
	t.Run("hello", func(t *testing.T) {
		t.Parallel()
		wasm := testmodule.GoWasip1(t, "gohello")
		res, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Stdin: []byte("Gopher\n"), Limits: limits()})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != wasmwiz.StatusOK || string(res.Stdout) != "Hello, Gopher!\n" {
			t.Fatalf("status %s stdout %q stderr %q trap %q", res.Status, res.Stdout, res.Stderr, res.Trap)
		}
	})
	t.Run("files", func(t *testing.T) {
		t.Parallel()
		wasm := testmodule.GoWasip1(t, "gofiles")
		for _, guest := range []string{"/", "/work"} {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "in.txt"), []byte("hello"), 0o644); err != nil {
				t.Fatal(err)
			}
			// Go takes its working directory from PWD (wasmwiz sets it to
			// the mount of an API run's files).
			res, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: limits(),
				Env: map[string]string{"PWD": guest}, Mounts: []wasmwiz.Mount{{HostDir: dir, GuestDir: guest}}})
			if err != nil {
				t.Fatal(err)
			}
			want := "wd " + guest + " <nil>\nentries in.txt\noutside: true\ndone\n"
			if res.Status != wasmwiz.StatusOK || string(res.Stdout) != want {
				t.Fatalf("%s: status %s stdout %q stderr %q trap %q", guest, res.Status, res.Stdout, res.Stderr, res.Trap)
			}
			b, err := os.ReadFile(filepath.Join(dir, "out", "report.txt"))
			if err != nil || string(b) != "5 bytes: HELLO" {
				t.Fatalf("%s: report %q %v", guest, b, err)
			}
		}
	})
	t.Run("out of memory", func(t *testing.T) {
		t.Parallel()
		wasm := testmodule.GoWasip1(t, "gomembomb")
		lim := limits()
		lim.MaxMemoryBytes = 48 * wasmwiz.MiB
		res, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: lim})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != wasmwiz.StatusMemoryLimit || !strings.Contains(string(res.Stderr), "out of memory") {
			t.Fatalf("status %s exit %d stderr %q trap %q", res.Status, res.ExitCode, res.Stderr, res.Trap)
		}
		if res.MemoryPeakBytes > lim.MaxMemoryBytes || !strings.Contains(string(res.Stdout), "allocated 1 MiB") {
			t.Fatalf("peak %d, stdout %q", res.MemoryPeakBytes, res.Stdout)
		}
	})
}
