package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// ciScript is where CI's steps and pinned tool versions are, relative to
// the module root.
const ciScript = ".ci/run"

// CIVersion returns the version .ci/run pins in the variable name (a line
// `NAME=v1.2.3`), failing t when there is none: CI and the test that uses
// the version read it from one place.
func CIVersion(t testing.TB, name string) string {
	t.Helper()
	script := readCIScript(t)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `=(\S+)$`).FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("%s pins no %s", ciScript, name)
	}
	return m[1]
}

// CIToolDir returns the directory .ci/run installs its tools into:
// $WASMWIZ_CI_CACHE/bin, by default ${XDG_CACHE_HOME:-$HOME/.cache}/wasmwiz-ci/bin.
func CIToolDir() string {
	cache := os.Getenv("WASMWIZ_CI_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, _ := os.UserHomeDir()
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "wasmwiz-ci")
	}
	return filepath.Join(cache, "bin")
}

// CITool returns the path of a program that .ci/run installs with
// `go install pkg@$versionVar`, at the version it pins there: the one in
// CIToolDir, else one on PATH, provided `go version -m` says it was built
// from pkg at that version. Without one it skips t, saying how to install
// it, and records the skip; it fails t instead when Required. It fails t
// when .ci/run does not install pkg at versionVar, since then CI would not
// run the test.
func CITool(t testing.TB, pkg, versionVar string) string {
	t.Helper()
	version := CIVersion(t, versionVar)
	if install := `"` + pkg + `@$` + versionVar + `"`; !strings.Contains(readCIScript(t), install) {
		t.Fatalf("%s does not install %s@$%s (go install %s)", ciScript, pkg, versionVar, install)
	}
	name := pkg[strings.LastIndex(pkg, "/")+1:]
	candidates := []string{filepath.Join(CIToolDir(), name)}
	if p, err := exec.LookPath(name); err == nil {
		candidates = append(candidates, p)
	}
	var seen []string
	for _, p := range candidates {
		got, err := builtFrom(p, pkg)
		switch {
		case err != nil:
			continue
		case got == version:
			return p
		default:
			seen = append(seen, p+" is "+got)
		}
	}
	what := name + " " + version + " is not installed"
	if len(seen) > 0 {
		what += " (" + strings.Join(seen, ", ") + ")"
	}
	Skip(t, what, fmt.Sprintf("install it: GOBIN=%s go install %s@%s (.ci/run does)", CIToolDir(), pkg, version))
	return ""
}

// builtFrom returns the version of pkg's module that the Go program at path
// was built from, or an error when it is not a Go program built from pkg.
func builtFrom(path, pkg string) (string, error) {
	if _, err := os.Stat(path); err != nil {
		return "", err
	}
	out, err := exec.Command("go", "version", "-m", path).Output()
	if err != nil {
		return "", fmt.Errorf("go version -m %s: %v", path, err)
	}
	built, version := false, ""
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "path":
			built = f[1] == pkg
		case len(f) >= 3 && f[0] == "mod" && strings.HasPrefix(pkg, f[1]):
			version = f[2]
		}
	}
	if !built || version == "" {
		return "", fmt.Errorf("%s is not built from %s", path, pkg)
	}
	return version, nil
}

func readCIScript(t testing.TB) string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, ciScript))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
