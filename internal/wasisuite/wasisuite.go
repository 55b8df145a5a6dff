// Package wasisuite runs the official WASI test suite's preview1 tests
// (../shared/wasi-testsuite beside the repository, see its README) for
// tests: it lists the cases with their specs, makes a fresh copy of a
// filesystem test's root, and judges an outcome. The engine, `wasmwiz run`
// and the HTTP API each run every case through it. Imported by tests only.
package wasisuite

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// Langs are the suite's folders of preview1 tests.
var Langs = []string{"assemblyscript", "c", "rust"}

// KnownFailures are preview1 tests that do not pass, with the reason; each
// still runs and must still fail, so the list stays true. Empty: every
// preview1 test passes through the engine's own descriptor functions
// (internal/wasifs).
var KnownFailures = map[string]string{}

// Case is one preview1 test.
type Case struct {
	ID   string // "rust/fd_readdir"
	Name string // "fd_readdir"
	Wasm string // path of the module
	Spec Spec
	dir  string
}

// Spec is a test's legacy JSON spec.
type Spec struct {
	Args     []string          `json:"args"`
	Env      map[string]string `json:"env"`
	Root     string            `json:"root"` // preopened as guest "/"; changed by the test
	ExitCode int               `json:"exit_code"`
	Stdout   *string           `json:"stdout"`
	Stderr   *string           `json:"stderr"`
}

// Dir finds the suite at ../shared/wasi-testsuite beside the repository,
// or beside a directory above it (a git worktree in a folder of worktrees
// shares its main checkout's suite). Without it the test skips
// (testenv.Skip), or fails when prerequisites are required (CI clones the
// suite there).
func Dir(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Join(filepath.Dir(file), "..", "..")
	first := filepath.Join(repo, "..", "shared", "wasi-testsuite")
	for d := filepath.Clean(repo); ; d = filepath.Dir(d) {
		dir := filepath.Join(filepath.Dir(d), "shared", "wasi-testsuite")
		if _, err := os.Stat(filepath.Join(dir, "tests")); err == nil {
			return dir
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	testenv.Skip(t, "WASI test suite not found at "+filepath.Clean(first), "put github.com/WebAssembly/wasi-testsuite at ../shared/wasi-testsuite beside the repository")
	return ""
}

// Cases lists the preview1 tests in a stable order.
func Cases(t testing.TB) []Case {
	t.Helper()
	suite := Dir(t)
	var out []Case
	for _, lang := range Langs {
		dir := filepath.Join(suite, "tests", lang, "testsuite", "wasm32-wasip1")
		files, err := filepath.Glob(filepath.Join(dir, "*.wasm"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no tests in %s", dir)
		}
		sort.Strings(files)
		for _, file := range files {
			name := strings.TrimSuffix(filepath.Base(file), ".wasm")
			c := Case{ID: lang + "/" + name, Name: name, Wasm: file, dir: dir}
			if b, err := os.ReadFile(strings.TrimSuffix(file, ".wasm") + ".json"); err == nil {
				if err := json.Unmarshal(b, &c.Spec); err != nil {
					t.Fatalf("spec of %s: %v", c.ID, err)
				}
			}
			out = append(out, c)
		}
	}
	if len(out) != 72 {
		t.Fatalf("found %d preview1 tests, want 72", len(out))
	}
	return out
}

// CacheDir is a compiled-code cache for the suite's modules that outlives
// the test run, so that the engine, `wasmwiz run` and the API tests (and
// the next run) compile each module once: under -race, compiling the 46
// Rust modules takes a minute. wazero keys it by its version and the
// module's digest.
func CacheDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "wasmwiz-test-wasi-suite-cache")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// FreshRoot copies the test's root into a new temporary directory and
// returns it ("" for a test without a root).
func (c Case) FreshRoot(t testing.TB) string {
	t.Helper()
	if c.Spec.Root == "" {
		return ""
	}
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS(filepath.Join(c.dir, c.Spec.Root))); err != nil {
		t.Fatal(err)
	}
	return root
}

// RootDir is the test's root in the suite (not to be changed: see FreshRoot).
func (c Case) RootDir() string {
	if c.Spec.Root == "" {
		return ""
	}
	return filepath.Join(c.dir, c.Spec.Root)
}

// Outcome is how a case's run ended, as Judge reads it.
type Outcome struct {
	Exited         bool // the guest finished by itself (status ok or exit)
	ExitCode       int
	Stdout, Stderr []byte
	Detail         string // for a failure message: the status, a trap
}

// RunAll runs every case as a subtest of t through run and judges each
// outcome; it fails t unless 49 of the cases are filesystem tests (each
// with a root), and logs how many passed through what (e.g. "HTTP API").
func RunAll(t *testing.T, through string, run func(t *testing.T, c Case) Outcome) {
	t.Helper()
	cases := Cases(t)
	var withRoot, passed int
	for _, c := range cases {
		if c.Spec.Root != "" {
			withRoot++
		}
		ok := t.Run(c.ID, func(t *testing.T) {
			c.judge(t, run(t, c))
		})
		if ok {
			passed++
		}
	}
	if withRoot != 49 {
		t.Fatalf("%d filesystem tests, want 49", withRoot)
	}
	t.Logf("%s: %d of %d preview1 tests as expected (%d filesystem tests; %d known failures)", through, passed, len(cases), withRoot, len(KnownFailures))
}

// judge compares an outcome with the spec and fails t, honouring
// KnownFailures.
func (c Case) judge(t testing.TB, o Outcome) {
	t.Helper()
	var problems []string
	if !o.Exited || o.ExitCode != c.Spec.ExitCode {
		problems = append(problems, "exit "+strconv.Itoa(o.ExitCode)+", want "+strconv.Itoa(c.Spec.ExitCode)+" "+o.Detail)
	}
	if c.Spec.Stdout != nil && string(o.Stdout) != *c.Spec.Stdout {
		problems = append(problems, "stdout "+quote(o.Stdout)+", want "+quote([]byte(*c.Spec.Stdout)))
	}
	if c.Spec.Stderr != nil && string(o.Stderr) != *c.Spec.Stderr {
		problems = append(problems, "stderr "+quote(o.Stderr)+", want "+quote([]byte(*c.Spec.Stderr)))
	}
	if reason, known := KnownFailures[c.ID]; known {
		if len(problems) == 0 {
			t.Fatalf("listed as a known failure (%s) but passes: take it off the list", reason)
		}
		t.Logf("known failure: %s; got %s; stderr %s", reason, strings.Join(problems, "; "), o.Stderr)
		return
	}
	if len(problems) > 0 {
		t.Errorf("%s\nstderr: %s", strings.Join(problems, "; "), o.Stderr)
	}
}

func quote(b []byte) string { q, _ := json.Marshal(string(b)); return string(q) }
