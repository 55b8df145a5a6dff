// Package testenv is test support for tests that need something from
// outside the process: a PostgreSQL or a Redis named by a WASMWIZ_TEST_*
// variable, or a program such as a browser or a toolchain. Without it such
// a test skips and says why, unless WASMWIZ_TEST_REQUIRE_SERVICES=1 (CI),
// when it fails.
//
// Every skip is also recorded, and Run, called from a package's TestMain,
// prints one summary of them after the tests: how many skipped, for want of
// what, and the variable or program that would run them. `go test ./...`
// shows a passing package's output only with -v, so without -v Run writes
// the summary to the terminal (/dev/tty) as well; see docs/RATIONALE.md.
//
// A tool that .ci/run installs at a pinned version (a code generator, say)
// is found with CITool, which takes only that build, and CIVersion reads
// the versions .ci/run pins, so that CI and the tests agree on them.
//
// It also holds what every kind of test needs alike: waits bounded by
// Patience that fail with a message instead of hanging (WaitFor, Recv,
// Wait), multipart request bodies (Multipart), and a settable clock (Clock).
//
// Imported by tests only.
package testenv

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// RequireVar, set to 1, makes a missing prerequisite fail a test instead of
// skipping it.
const RequireVar = "WASMWIZ_TEST_REQUIRE_SERVICES"

// Required reports whether a missing prerequisite fails the test (RequireVar
// is 1).
func Required() bool { return os.Getenv(RequireVar) == "1" }

// Service is a server that integration tests reach through a URL in a
// variable.
type Service struct {
	Name    string // what it is, e.g. "PostgreSQL"
	Var     string // the variable holding its URL
	Example string // an example URL for a local one
	Local   string // host:port where a local one usually listens, for the summary's hint
}

// The services of the integration tests.
var (
	Postgres = Service{Name: "PostgreSQL", Var: "WASMWIZ_TEST_POSTGRES_URL",
		Example: "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", Local: "127.0.0.1:5432"}
	Redis = Service{Name: "Redis", Var: "WASMWIZ_TEST_REDIS_URL",
		Example: "redis://127.0.0.1:6379/0", Local: "127.0.0.1:6379"}
)

// URL returns the service's URL from its variable. Without one it skips t,
// saying which variable runs it, and records the skip; it fails t instead
// when Required.
func (s Service) URL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(s.Var); u != "" {
		return u
	}
	missing(t, s.Var+" is not set", fmt.Sprintf("set %s (e.g. %s)", s.Var, s.Example), s.Local)
	return ""
}

// PostgresURL is Postgres.URL.
func PostgresURL(t testing.TB) string { t.Helper(); return Postgres.URL(t) }

// RedisURL is Redis.URL.
func RedisURL(t testing.TB) string { t.Helper(); return Redis.URL(t) }

// Skip skips t for want of a prerequisite that is not a variable: what is
// missing ("no chromium on this machine") and how to get it ("install
// chromium"). The skip is recorded under how; it fails t instead when
// Required.
func Skip(t testing.TB, what, how string) {
	t.Helper()
	missing(t, what, how, "")
}

func missing(t testing.TB, what, how, local string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s, and %s=1: %s", what, RequireVar, how)
	}
	record(t.Name(), how, local)
	t.Skipf("%s: %s to run it", what, how)
}

// skips are the recorded skips of this test binary: test names by remedy.
var skips = struct {
	sync.Mutex
	tests map[string]map[string]bool
	local map[string]string
}{tests: map[string]map[string]bool{}, local: map[string]string{}}

func record(test, how, local string) {
	skips.Lock()
	defer skips.Unlock()
	if skips.tests[how] == nil {
		skips.tests[how] = map[string]bool{}
	}
	skips.tests[how][test] = true
	if local != "" {
		skips.local[how] = local
	}
}

// DefaultParallel sets how many parallel tests of the package run at once
// (-parallel) to n, unless the command line set it. Call it from TestMain
// of a package whose tests mostly wait (on processes, servers, a
// database): the default, GOMAXPROCS, leaves a 2-core machine idle for most
// of such a package's time, and go test runs only GOMAXPROCS packages at
// once. Packages that spend processor time keep the default.
func DefaultParallel(n int) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", strconv.Itoa(n))
	}
}

// after holds what AfterTests registered.
var after struct {
	sync.Mutex
	running bool
	fs      []func()
}

// AfterTests registers f to run once the package's tests are done, in Run
// (last registered, first run), and reports whether it will: false when
// the tests do not run under Run (a TestMain of its own, or none), when
// nothing is registered. For what outlives a test on purpose, shared by the
// tests of a binary (PostgreSQL schemas kept for reuse).
func AfterTests(f func()) bool {
	after.Lock()
	defer after.Unlock()
	if after.running {
		after.fs = append(after.fs, f)
	}
	return after.running
}

// Run runs the tests of m, then what AfterTests registered, prints the
// summary of what was skipped for want of a prerequisite, if anything was,
// removes what WasmwizBinary built, then returns m's exit code.
// Call it from TestMain: os.Exit(testenv.Run(m)).
func Run(m *testing.M) int {
	after.Lock()
	after.running = true
	after.Unlock()
	code := m.Run()
	after.Lock()
	fs := after.fs
	after.fs, after.running = nil, false
	after.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	removeBinary()
	report(Summary(), os.Stdout, testing.Verbose() || !isPipe(os.Stdout), openTTY)
	return code
}

// report writes a non-empty summary to stdout and, unless stdout is shown
// (verbose, or streamed to a terminal or file), also to the terminal:
// `go test ./...` without -v keeps a passing package's output to itself.
func report(summary string, stdout io.Writer, shown bool, tty func() (io.WriteCloser, error)) {
	if summary == "" {
		return
	}
	fmt.Fprint(stdout, summary)
	if shown {
		return
	}
	if w, err := tty(); err == nil {
		fmt.Fprint(w, summary)
		w.Close()
	}
}

// openTTY opens the controlling terminal, which go test does not capture.
func openTTY() (io.WriteCloser, error) { return os.OpenFile("/dev/tty", os.O_WRONLY, 0) }

// Summary returns the summary Run prints: empty when nothing was skipped
// for want of a prerequisite, else one line for the package and one per
// remedy with the number of tests it would run.
func Summary() string {
	skips.Lock()
	defer skips.Unlock()
	if len(skips.tests) == 0 {
		return ""
	}
	remedies := make([]string, 0, len(skips.tests))
	total := 0
	for how, tests := range skips.tests {
		remedies = append(remedies, how)
		total += len(tests)
	}
	sort.Strings(remedies)
	var b strings.Builder
	fmt.Fprintf(&b, "testenv: %s: %d %s skipped (%s=1 fails them instead):\n", packageName(), total, plural(total, "test"), RequireVar)
	for _, how := range remedies {
		n := len(skips.tests[how])
		them := "them"
		if n == 1 {
			them = "it"
		}
		fmt.Fprintf(&b, "  %d %s: %s to run %s", n, plural(n, "test"), how, them)
		if local := skips.local[how]; local != "" && answers(local) {
			fmt.Fprintf(&b, " (something answers on %s)", local)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// answers reports whether something accepts TCP connections on addr.
func answers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// isPipe reports whether f is a pipe, as a test binary's stdout is when go
// test collects its output instead of streaming it.
func isPipe(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeNamedPipe != 0
}

// packageName is the directory go test runs the binary in (the package's),
// relative to the module root, e.g. "internal/postgres"; "." for the root.
func packageName() string {
	dir, err := os.Getwd()
	if err != nil {
		return "?"
	}
	root, err := ModuleRoot()
	if err != nil {
		return dir
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		return dir
	}
	return filepath.ToSlash(rel)
}
