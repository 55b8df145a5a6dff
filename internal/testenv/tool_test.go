package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const oapiCodegen = "github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen"

// TestCIVersion: the versions .ci/run pins are read from it; a name it
// does not pin fails.
func TestCIVersion(t *testing.T) {
	if v := CIVersion(t, "OAPI_CODEGEN_VERSION"); !regexp.MustCompile(`^v\d+\.\d+\.\d+$`).MatchString(v) {
		t.Fatalf("OAPI_CODEGEN_VERSION = %q", v)
	}
	if got := call("TestX", func(t testing.TB) { CIVersion(t, "NO_SUCH_VERSION") }); !strings.Contains(got.fatal, "pins no NO_SUCH_VERSION") {
		t.Fatalf("an unpinned name: fatal %q", got.fatal)
	}
}

// TestCIToolMissing: without the pinned build in the CI cache or on PATH,
// CITool skips saying how to install it, or fails when required; a tool
// .ci/run does not install at that variable fails whatever the machine.
func TestCIToolMissing(t *testing.T) {
	resetSkips(t)
	goCmd, err := exec.LookPath("go")
	if err != nil {
		Skip(t, "no go command on PATH", "install Go")
	}
	t.Setenv("WASMWIZ_CI_CACHE", t.TempDir())
	t.Setenv("PATH", filepath.Dir(goCmd))
	t.Setenv(RequireVar, "")
	version := CIVersion(t, "OAPI_CODEGEN_VERSION")
	got := call("TestGen", func(t testing.TB) { CITool(t, oapiCodegen, "OAPI_CODEGEN_VERSION") })
	if want := "go install " + oapiCodegen + "@" + version; !strings.Contains(got.skipped, want) || got.fatal != "" {
		t.Fatalf("absent tool: skipped %q, fatal %q; want a skip saying %s", got.skipped, got.fatal, want)
	}
	t.Setenv(RequireVar, "1")
	if got := call("TestGen", func(t testing.TB) { CITool(t, oapiCodegen, "OAPI_CODEGEN_VERSION") }); got.fatal == "" {
		t.Fatal("absent tool with WASMWIZ_TEST_REQUIRE_SERVICES=1 did not fail")
	}
	t.Setenv(RequireVar, "")
	if got := call("TestGen", func(t testing.TB) { CITool(t, "example.com/not/installed", "OAPI_CODEGEN_VERSION") }); !strings.Contains(got.fatal, "does not install example.com/not/installed") {
		t.Fatalf("a tool .ci/run does not install: fatal %q", got.fatal)
	}
}

// TestBuiltFrom reads the package and module version a Go program was
// built from: this test binary is built from this package, at (devel).
func TestBuiltFrom(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		Skip(t, "no go command on PATH", "install Go")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if v, err := builtFrom(exe, "github.com/wasmwiz/wasmwiz/internal/testenv.test"); err != nil || v != "(devel)" {
		t.Fatalf("builtFrom(the test binary): %q, %v", v, err)
	}
	if v, err := builtFrom(exe, oapiCodegen); err == nil {
		t.Fatalf("the test binary is %s at %s", oapiCodegen, v)
	}
	if _, err := builtFrom(filepath.Join(t.TempDir(), "absent"), oapiCodegen); err == nil {
		t.Fatal("an absent file is a program")
	}
}
