package worker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// fileLimits are limits for runs with files.
func fileLimits() wasmwiz.Limits {
	l := testmodule.Limits()
	l.MaxFilesInBytes, l.MaxFiles, l.MaxFileWriteBytes, l.MaxFilesOutBytes = wasmwiz.MiB, 100, wasmwiz.MiB, wasmwiz.MiB
	return l
}

// runDirs lists the run directories under the pool's files directory.
func runDirs(t *testing.T, pl *Pool) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(pl.filesRoot, "w*", "run-*"))
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// TestPoolRunFiles: a run's files reach the guest in a worker, the outputs
// come back, and no run directory is left, however the run ends: it
// finishes, traps, times out, its worker crashes, or its caller goes away.
func TestPoolRunFiles(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, faultyOptions(t, 1, 0))
	files := func() *wasmwiz.RunFiles {
		f := &wasmwiz.RunFiles{Entries: []wasmwiz.FileEntry{{Path: "in/x.txt", Data: []byte("hello")}}, Mount: "/work", Outputs: []string{"out/"}}
		if err := f.Check(fileLimits()); err != nil {
			t.Fatal(err)
		}
		return f
	}
	probe := testmodule.Read(t, "fsprobe.wasm")
	run := func(ctx context.Context, fn string, timeout time.Duration, args ...string) (*wasmwiz.Result, error) {
		l := fileLimits()
		if timeout > 0 {
			l.Timeout = timeout
		}
		return pl.Run(ctx, &wasmwiz.RunRequest{Wasm: probe, Function: fn, Args: args, Limits: l, Files: files()})
	}
	res, err := run(context.Background(), "", 0, "cat", "in/x.txt", "mkdir", "out", "copy", "in/x.txt", "out/y.txt", "cat", "/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	if want := "cat in/x.txt: ok hello\nmkdir out: ok\ncopy in/x.txt out/y.txt: ok 5\ncat /etc/passwd: ENOENT\n"; string(res.Stdout) != want {
		t.Fatalf("stdout %q, want %q (stderr %q)", res.Stdout, want, res.Stderr)
	}
	if len(res.Files) != 1 || res.Files[0].Path != "out/y.txt" || string(res.Files[0].Data) != "hello" {
		t.Fatalf("files %+v", res.Files)
	}
	if d := runDirs(t, pl); len(d) != 0 {
		t.Fatalf("after a run: %v", d)
	}

	ends := []struct {
		name string
		run  func() (*wasmwiz.Result, error)
		want wasmwiz.Status
	}{
		{"trap", func() (*wasmwiz.Result, error) {
			return run(context.Background(), "", 0, "mkdir", "out", "write", "out/partial", "p", "trap")
		}, wasmwiz.StatusTrap},
		{"timeout", func() (*wasmwiz.Result, error) {
			return run(context.Background(), "", 200*time.Millisecond, "mkdir", "out", "write", "out/partial", "p", "spin")
		}, wasmwiz.StatusTimeout},
		{"worker crash", func() (*wasmwiz.Result, error) { return run(context.Background(), "__exit", 0) }, ""},
		{"caller gone", func() (*wasmwiz.Result, error) {
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				testenv.WaitFor(t, "the run to reach its worker", func() bool { return len(busyPIDs(pl)) == 1 })
				cancel()
			}()
			return run(ctx, "", 0, "mkdir", "out", "spin")
		}, ""},
	}
	for _, end := range ends {
		res, err := end.run()
		switch {
		case end.want != "" && (err != nil || res.Status != end.want):
			t.Errorf("%s: %v %+v", end.name, err, res)
		case end.want == "" && err == nil:
			t.Errorf("%s: no error: %+v", end.name, res)
		}
		if end.want != "" && (len(res.Files) != 1 || res.Files[0].Path != "out/partial") {
			t.Errorf("%s: what the guest wrote before it ended: %+v", end.name, res.Files)
		}
		if d := runDirs(t, pl); len(d) != 0 {
			t.Errorf("after %s: %v", end.name, d)
		}
	}
	// Workers replaced after the crash and the kills left no directory.
	testenv.WaitFor(t, "a worker", func() bool { return pl.Stats().Idle == 1 })
	dirs, _ := filepath.Glob(filepath.Join(pl.filesRoot, "w*"))
	if len(dirs) != 1 {
		t.Errorf("worker directories %v, want the live worker's only", dirs)
	}
	root := pl.filesRoot
	if err := pl.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Fatalf("the pool's files directory is still there after Close: %v", err)
	}
}

// TestPoolRunFilesWriteBudget: past the tier's bytes a guest's write fails
// with ENOSPC in the worker, and the worker carries on.
func TestPoolRunFilesWriteBudget(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, testOptions(t, 1, 0))
	l := fileLimits()
	l.MaxFileWriteBytes = 64 << 10
	f := &wasmwiz.RunFiles{}
	if err := f.Check(l); err != nil {
		t.Fatal(err)
	}
	res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "fsprobe.wasm"), Args: []string{"fill", "big", "100000", "cat", "missing"}, Limits: l, Files: f})
	if err != nil {
		t.Fatal(err)
	}
	if s := string(res.Stdout); !strings.Contains(s, "fill big 100000: ENOSPC after ") || !strings.Contains(s, "cat missing: ENOENT") {
		t.Fatalf("stdout %q", s)
	}
}
