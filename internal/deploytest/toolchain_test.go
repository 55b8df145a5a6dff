package deploytest

import (
	"regexp"
	"testing"
)

// TestOneToolchain: the Go toolchain go.mod names is the one CI exports
// (machines here set GOTOOLCHAIN=local, which ignores go.mod) and the one the
// container image builds with, so that what govulncheck checks is what ships.
func TestOneToolchain(t *testing.T) {
	t.Parallel()
	find := func(file, pattern string) string {
		t.Helper()
		m := regexp.MustCompile(pattern).FindStringSubmatch(readFile(t, file))
		if m == nil {
			t.Fatalf("%s: no match for %s", file, pattern)
		}
		return m[1]
	}
	mod := find("go.mod", `(?m)^toolchain go(\S+)$`)
	ci := find(".ci/run", `(?m)^export GOTOOLCHAIN=go(\S+)$`)
	image := find("Dockerfile", `(?m)^ARG GO_VERSION=(\S+)$`)
	if ci != mod || image != mod {
		t.Errorf("toolchains differ: go.mod %s, .ci/run %s, Dockerfile %s", mod, ci, image)
	}
}
