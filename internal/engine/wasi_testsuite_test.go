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
	"github.com/wasmwiz/wasmwiz/internal/wasisuite"
)

// TestWASITestsuite runs the official WASI test suite's 72 preview1 tests
// through the engine in-process, each of the 49 filesystem tests on a fresh
// copy of its root mounted at "/"; components and wasi-threads must be
// refused clearly.
func TestWASITestsuite(t *testing.T) {
	t.Parallel()
	suite := wasisuite.Dir(t)
	e := newEngine(t, Options{CacheDir: wasisuite.CacheDir(t)})
	lim := testmodule.Limits()
	lim.MaxMemoryBytes = 512 * wasmwiz.MiB
	lim.MaxModuleBytes = 64 * wasmwiz.MiB
	lim.Timeout = 60 * time.Second

	wasisuite.RunAll(t, "the engine", func(t *testing.T, c wasisuite.Case) wasisuite.Outcome {
		var mounts []wasmwiz.Mount
		if root := c.FreshRoot(t); root != "" {
			mounts = []wasmwiz.Mount{{HostDir: root, GuestDir: "/"}}
		}
		wasm, err := os.ReadFile(c.Wasm)
		if err != nil {
			t.Fatal(err)
		}
		res, err := e.Run(context.Background(), &wasmwiz.RunRequest{
			Wasm: wasm, Name: c.Name + ".wasm", Args: c.Spec.Args, Env: c.Spec.Env, Limits: lim, Mounts: mounts,
		})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		return wasisuite.Outcome{Exited: res.Status.Exited(), ExitCode: res.ExitCode, Stdout: res.Stdout, Stderr: res.Stderr,
			Detail: string(res.Status) + " " + res.Trap}
	})

	refuse := []struct{ glob, want string }{
		{"tests/rust/testsuite/wasm32-wasip3/*.wasm", "components are not supported; build a core module for wasm32-wasip1"},
		{"tests/proposals/wasi-threads/*.wasm", "(an imported memory; the module must define its own)"},
	}
	for _, r := range refuse {
		files, _ := filepath.Glob(filepath.Join(suite, r.glob))
		if len(files) == 0 {
			t.Fatalf("no tests match %s", r.glob)
		}
		for _, file := range files {
			t.Run("refused/"+filepath.Base(file), func(t *testing.T) {
				wasm, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				_, err = e.Inspect(context.Background(), wasm, lim)
				msg := wasmwiz.ErrorMessage(err)
				if wasmwiz.ErrorCode(err) != wasmwiz.EINVALID || !strings.Contains(msg, r.want) {
					t.Fatalf("Inspect: %v, want EINVALID naming %q", err, r.want)
				}
				if strings.Contains(string(wasm), "thread-spawn") && !strings.Contains(msg, "wasi.thread-spawn") {
					t.Fatalf("Inspect: %q does not name wasi.thread-spawn", msg)
				}
				t.Logf("refused as expected: %s", msg)
			})
		}
	}
}
