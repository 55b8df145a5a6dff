package engine

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// wasiSuiteDir finds ../shared/wasi-testsuite beside the repository (the
// repository root is two levels above this package).
func wasiSuiteDir(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "wasi-testsuite")
	if _, err := os.Stat(filepath.Join(dir, "tests")); err != nil {
		testenv.Skip(t, "WASI test suite not found at "+dir, "put github.com/WebAssembly/wasi-testsuite at ../shared/wasi-testsuite beside the repository")
	}
	return dir
}

// wasiSpec is a test's legacy JSON spec.
type wasiSpec struct {
	Args     []string          `json:"args"`
	Env      map[string]string `json:"env"`
	Root     string            `json:"root"`
	ExitCode int               `json:"exit_code"`
	Stdout   *string           `json:"stdout"`
	Stderr   *string           `json:"stderr"`
}

// wasiKnownFailures are preview1 tests this engine runs but does not pass,
// with the reason; each is run and must still fail (so the list stays
// true). Empty since the engine has its own sock_shutdown and poll_oneoff.
var wasiKnownFailures = map[string]string{}

// TestWASITestsuite runs the official WASI test suite's preview1 tests
// through the engine: every AssemblyScript and C test and every Rust test
// that needs no preopened directory. Filesystem tests are skipped (there is
// no filesystem yet); components and wasi-threads must be refused clearly.
func TestWASITestsuite(t *testing.T) {
	t.Parallel()
	suite := wasiSuiteDir(t)
	e := sharedEngine(t)
	lim := limits()
	lim.MaxMemoryBytes = 512 * wasmwiz.MiB
	lim.MaxModuleBytes = 64 * wasmwiz.MiB
	lim.Timeout = 60 * time.Second

	for _, lang := range []string{"assemblyscript", "c", "rust"} {
		dir := filepath.Join(suite, "tests", lang, "testsuite", "wasm32-wasip1")
		files, err := filepath.Glob(filepath.Join(dir, "*.wasm"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no tests in %s", dir)
		}
		sort.Strings(files)
		for _, file := range files {
			name := strings.TrimSuffix(filepath.Base(file), ".wasm")
			id := lang + "/" + name
			t.Run(id, func(t *testing.T) {
				var spec wasiSpec
				if b, err := os.ReadFile(strings.TrimSuffix(file, ".wasm") + ".json"); err == nil {
					if err := json.Unmarshal(b, &spec); err != nil {
						t.Fatalf("spec: %v", err)
					}
				}
				if spec.Root != "" {
					t.Skip("filesystem tests wait for the files issue (needs a preopened " + spec.Root + ")")
				}
				wasm, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				res, err := e.Run(context.Background(), &wasmwiz.RunRequest{
					Wasm: wasm, Name: name + ".wasm", Args: spec.Args, Env: spec.Env, Limits: lim,
				})
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				var problems []string
				if res.ExitCode != spec.ExitCode || (res.Status != wasmwiz.StatusOK && res.Status != wasmwiz.StatusExit) {
					problems = append(problems, "status "+string(res.Status)+" exit "+itoa(res.ExitCode)+", want exit "+itoa(spec.ExitCode)+" "+res.Trap)
				}
				if spec.Stdout != nil && string(res.Stdout) != *spec.Stdout {
					problems = append(problems, "stdout "+quote(res.Stdout)+", want "+quote([]byte(*spec.Stdout)))
				}
				if spec.Stderr != nil && string(res.Stderr) != *spec.Stderr {
					problems = append(problems, "stderr "+quote(res.Stderr)+", want "+quote([]byte(*spec.Stderr)))
				}
				if reason, known := wasiKnownFailures[id]; known {
					if len(problems) == 0 {
						t.Fatalf("listed as a known failure (%s) but passes: take it off the list", reason)
					}
					t.Logf("known failure: %s; got %s; stderr %s", reason, strings.Join(problems, "; "), res.Stderr)
					return
				}
				if len(problems) > 0 {
					t.Errorf("%s\nstderr: %s", strings.Join(problems, "; "), res.Stderr)
				}
			})
		}
	}

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

func itoa(n int) string { return strconv.Itoa(n) }

func quote(b []byte) string { q, _ := json.Marshal(string(b)); return string(q) }
