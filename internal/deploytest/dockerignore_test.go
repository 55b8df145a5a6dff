package deploytest

import (
	"context"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// dockerIgnore is the pattern list of .dockerignore. It supports what that
// file uses: names and globs relative to the context root, and "**/" for
// any depth; a pattern matching a directory excludes what is under it.
type dockerIgnore []string

func readDockerIgnore(t *testing.T) dockerIgnore {
	t.Helper()
	var pats dockerIgnore
	for _, line := range strings.Split(readFile(t, ".dockerignore"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf(".dockerignore: exceptions (%s) are not understood by this test", line)
		}
		pats = append(pats, strings.TrimPrefix(line, "/"))
	}
	return pats
}

// excluded reports whether rel (slash-separated) or a directory above it
// matches a pattern.
func (d dockerIgnore) excluded(rel string) bool {
	parts := strings.Split(rel, "/")
	for i := 1; i <= len(parts); i++ {
		prefix := strings.Join(parts[:i], "/")
		for _, p := range d {
			if anyDepth, ok := strings.CutPrefix(p, "**/"); ok {
				for j := 0; j < i; j++ {
					if m, _ := path.Match(anyDepth, strings.Join(parts[j:i], "/")); m {
						return true
					}
				}
				continue
			}
			if m, _ := path.Match(p, prefix); m {
				return true
			}
		}
	}
	return false
}

func TestDockerIgnoreMatcher(t *testing.T) {
	t.Parallel()
	d := dockerIgnore{".git", "bin", "**/*_test.go", "**/testdata", "docs"}
	tests := []struct {
		path string
		want bool
	}{
		{".git/config", true},
		{"bin", true},
		{"cmd/wasmwiz/main.go", false},
		{"cmd/wasmwiz/main_test.go", true},
		{"internal/testmodule/testdata/hello.wasm", true},
		{"go.mod", false},
		{"docs/API.md", true},
		{"internal/docs/x.go", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			if got := d.excluded(tt.path); got != tt.want {
				t.Errorf("excluded(%q) = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
}

// The Docker build context that .dockerignore leaves is enough for the
// Dockerfile's `go build ./cmd/wasmwiz` (embedded files included): the
// context is copied to a temporary directory and built there. The files
// copied are those git tracks or would track (not those .gitignore hides,
// such as a local wasmwiz-data/), as `docker build .` in a clone sees them.
func TestDockerContextBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the program from a copy of the repository; skipped with -short")
	}
	t.Parallel()
	ign := readDockerIgnore(t)
	for _, needed := range []string{"go.mod", "go.sum", "cmd/wasmwiz/main.go"} {
		if ign.excluded(needed) {
			t.Fatalf(".dockerignore excludes %s, which the Dockerfile copies", needed)
		}
	}
	// The bound is for a build that hangs: a cold build of every dependency
	// (modernc's SQLite is most of it) beside the race-built test suite
	// on two loaded cores was killed at five minutes.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	ls := exec.CommandContext(ctx, "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	ls.Dir = repoPath(t, ".")
	out, err := ls.Output()
	if err != nil {
		t.Skipf("git ls-files: %v (not a git checkout)", err)
	}
	dst := t.TempDir()
	copied := 0
	for _, rel := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if rel == "" || ign.excluded(rel) {
			continue
		}
		if err := testenv.CopyFile(repoPath(t, rel), filepath.Join(dst, filepath.FromSlash(rel))); err != nil {
			if os.IsNotExist(err) {
				continue // deleted in the work tree, not yet committed
			}
			t.Fatal(err)
		}
		copied++
	}
	// Built as the Dockerfile builds (-trimpath), the copy shares the build
	// cache with testenv.WasmwizBinary: only what differs is compiled again.
	// The build writes over a copy of that program, whose build ID names
	// everything it was linked from: when the context builds the very same
	// program, go build finds it up to date and skips the link (a 56 MB
	// executable, seconds of CPU); any difference compiles and links anew.
	program := filepath.Join(t.TempDir(), "wasmwiz")
	if err := testenv.CopyFile(testenv.WasmwizBinary(t), program); err != nil {
		t.Fatal(err)
	}
	build := exec.CommandContext(ctx, "go", testenv.BuildArgs(program)...)
	build.Dir = dst
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=readonly")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build in the Docker context (%d files) failed: %v\n%s", copied, err, b)
	}
}
