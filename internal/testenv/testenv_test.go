package testenv

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// resetSkips empties the recorded skips for one test and restores them
// after.
func resetSkips(t *testing.T) {
	skips.Lock()
	saved, savedLocal := skips.tests, skips.local
	skips.tests, skips.local = map[string]map[string]bool{}, map[string]string{}
	skips.Unlock()
	t.Cleanup(func() {
		skips.Lock()
		skips.tests, skips.local = saved, savedLocal
		skips.Unlock()
	})
}

// fakeT records what a helper did to a test: a fatal stops it as
// testing.T's would (by panicking here).
type fakeT struct {
	testing.TB
	name           string
	fatal, skipped string
}

type stop struct{}

func (f *fakeT) Helper()      {}
func (f *fakeT) Name() string { return f.name }
func (f *fakeT) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	panic(stop{})
}
func (f *fakeT) Skipf(format string, args ...any) {
	f.skipped = fmt.Sprintf(format, args...)
	panic(stop{})
}

// call runs f on a fake test named name and reports what happened.
func call(name string, f func(t testing.TB)) (ft *fakeT) {
	ft = &fakeT{name: name}
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(stop); !ok {
				panic(v)
			}
		}
	}()
	f(ft)
	return ft
}

// TestSkipsAreRecordedAndSummarized: without their variable, service
// helpers skip saying which variable runs the test, and the summary counts
// each test once per remedy; with WASMWIZ_TEST_REQUIRE_SERVICES=1 they fail
// instead and record nothing.
func TestSkipsAreRecordedAndSummarized(t *testing.T) {
	resetSkips(t)
	t.Setenv(Postgres.Var, "")
	t.Setenv(Redis.Var, "redis://example:6379/0")
	t.Setenv(RequireVar, "")

	if got := call("TestA", func(t testing.TB) { PostgresURL(t) }); !strings.Contains(got.skipped, "set WASMWIZ_TEST_POSTGRES_URL (e.g. postgres://") {
		t.Fatalf("PostgresURL without its variable: skipped %q, fatal %q", got.skipped, got.fatal)
	}
	call("TestA", func(t testing.TB) { PostgresURL(t) }) // the same test again: counted once
	call("TestB/sub", func(t testing.TB) { PostgresURL(t) })
	if got := call("TestC", func(t testing.TB) { Skip(t, "no frobnicator", "install frobnicator") }); got.skipped != "no frobnicator: install frobnicator to run it" {
		t.Fatalf("Skip: %q", got.skipped)
	}
	if got := call("TestD", func(t testing.TB) {
		if u := RedisURL(t); u != "redis://example:6379/0" {
			t.Fatalf("RedisURL = %q", u)
		}
	}); got.skipped != "" || got.fatal != "" {
		t.Fatalf("RedisURL with its variable: skipped %q, fatal %q", got.skipped, got.fatal)
	}

	sum := Summary()
	for _, want := range []string{
		"testenv: internal/testenv: 3 tests skipped (WASMWIZ_TEST_REQUIRE_SERVICES=1 fails them instead):\n",
		"  2 tests: set WASMWIZ_TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run them",
		"  1 test: install frobnicator to run it\n",
	} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
	if strings.Contains(sum, "Redis") {
		t.Errorf("summary names Redis, whose variable is set:\n%s", sum)
	}

	t.Setenv(RequireVar, "1")
	got := call("TestE", func(t testing.TB) { PostgresURL(t) })
	if !strings.Contains(got.fatal, "WASMWIZ_TEST_POSTGRES_URL is not set, and WASMWIZ_TEST_REQUIRE_SERVICES=1") || got.skipped != "" {
		t.Fatalf("required: fatal %q, skipped %q", got.fatal, got.skipped)
	}
	if strings.Contains(Summary(), "  3 tests") {
		t.Fatal("a failed required test was counted as skipped")
	}
}

// TestSummaryEmpty: nothing skipped, nothing printed.
func TestSummaryEmpty(t *testing.T) {
	resetSkips(t)
	if s := Summary(); s != "" {
		t.Fatalf("Summary() = %q", s)
	}
}

type closeRecorder struct {
	bytes.Buffer
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

// TestReport: the summary always goes to stdout; when go test would not
// show stdout, it also goes to the terminal, and a missing terminal is not
// an error.
func TestReport(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		summary  string
		shown    bool
		ttyErr   error
		stdout   string
		terminal string
	}{
		{"shown", "sum\n", true, nil, "sum\n", ""},
		{"hidden", "sum\n", false, nil, "sum\n", "sum\n"},
		{"hidden, no terminal", "sum\n", false, errors.New("no tty"), "sum\n", ""},
		{"nothing to say", "", false, nil, "", ""},
	} {
		var stdout bytes.Buffer
		tty := &closeRecorder{}
		report(tt.summary, &stdout, tt.shown, func() (io.WriteCloser, error) {
			if tt.ttyErr != nil {
				return nil, tt.ttyErr
			}
			return tty, nil
		})
		if stdout.String() != tt.stdout || tty.String() != tt.terminal || (tt.terminal != "" && !tty.closed) {
			t.Errorf("%s: stdout %q, terminal %q (closed %v)", tt.name, stdout.String(), tty.String(), tty.closed)
		}
	}
}

// moduleRoot is the repository root, two levels up.
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

var usesPrerequisite = regexp.MustCompile(`\b(testenv\.(PostgresURL|RedisURL|Skip|Postgres\.URL|Redis\.URL)|pgtest\.(Schema|ServerURL))\(`)

// TestEveryPackageSummarizes: every package whose tests can skip for want
// of a service or program (they call this package or pgtest) has a
// TestMain that runs testenv.Run, so that its skips are summarized.
func TestEveryPackageSummarizes(t *testing.T) {
	t.Parallel()
	root := moduleRoot(t)
	uses := map[string]bool{}
	runs := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dir, _ := filepath.Rel(root, filepath.Dir(path))
		if usesPrerequisite.Match(b) {
			uses[dir] = true
		}
		if bytes.Contains(b, []byte("testenv.Run(m)")) {
			runs[dir] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"internal/postgres", "internal/redis", "cmd/wasmwiz", "internal/http"} {
		if !uses[want] {
			t.Errorf("%s does not use testenv or pgtest: is the pattern of this test out of date?", want)
		}
	}
	for dir := range uses {
		if dir != "internal/testenv" && !runs[dir] {
			t.Errorf("%s has tests that skip without a service or program, but no TestMain calling testenv.Run(m)", dir)
		}
	}
}

// TestSummaryWithoutVerbose runs a package's tests the way a newcomer does,
// without -v and without the variables, in the package's directory (where
// go test streams the output): the summary names what was skipped and the
// variable that runs it.
func TestSummaryWithoutVerbose(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go test in internal/redis; skipped with -short")
	}
	t.Parallel()
	cmd := exec.Command("go", "test", "-count=1", "-run", "^TestConformance$")
	cmd.Dir = filepath.Join(moduleRoot(t), "internal", "redis")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WASMWIZ_TEST_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test: %v\n%s", err, out)
	}
	want := regexp.MustCompile(`(?m)^testenv: internal/redis: [1-9][0-9]* tests? skipped .*\n  [1-9][0-9]* tests?: set WASMWIZ_TEST_REDIS_URL \(e\.g\. redis://127\.0\.0\.1:6379/0\) to run (it|them)`)
	if !want.Match(out) {
		t.Fatalf("no summary naming WASMWIZ_TEST_REDIS_URL in:\n%s", out)
	}
}

// TestDefaultParallel: -parallel given on the command line wins; otherwise
// the package's default is set.
func TestDefaultParallel(t *testing.T) {
	f := flag.Lookup("test.parallel")
	before := f.Value.String()
	t.Cleanup(func() { _ = f.Value.Set(before) })
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	DefaultParallel(7)
	want := "7"
	if given {
		want = before
	}
	if got := f.Value.String(); got != want {
		t.Errorf("-parallel = %s after DefaultParallel(7), want %s (given on the command line: %v)", got, want, given)
	}
}
