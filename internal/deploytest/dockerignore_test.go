package deploytest

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// The Docker build context that .dockerignore leaves holds every file the
// Dockerfile's `go build ./cmd/wasmwiz` reads from it: go.mod, go.sum, and
// each file of the module's own packages that the build compiles or embeds,
// as `go list -deps` names them for that build (CGO_ENABLED=0, GOOS=linux;
// everything else comes from the module cache, filled by `go mod download`).
// The context is what git tracks or would track (not what .gitignore hides,
// such as a local wasmwiz-data/), less what .dockerignore excludes, as
// `docker build .` in a clone sees it. A context that holds those files
// builds what they build here, so the test does not compile them again: a
// build with the Dockerfile's flags shares no package with the test
// binaries' builds, and cost a new checkout about 160 s of a 2-core machine.
func TestDockerContextBuilds(t *testing.T) {
	t.Parallel()
	ign := readDockerIgnore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ls := exec.CommandContext(ctx, "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	ls.Dir = repoPath(t, ".")
	out, err := ls.Output()
	if err != nil {
		t.Skipf("git ls-files: %v (not a git checkout)", err)
	}
	inContext := map[string]bool{}
	for _, rel := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if rel != "" && !ign.excluded(rel) {
			inContext[rel] = true
		}
	}
	needed := append([]string{"go.mod", "go.sum"}, buildFiles(ctx, t)...)
	for _, rel := range needed {
		if !inContext[rel] {
			t.Errorf("the Docker context lacks %s, which go build ./cmd/wasmwiz reads (excluded by .dockerignore: %v)", rel, ign.excluded(rel))
		}
	}
	if len(needed) < 50 {
		t.Fatalf("go list named %d files of the build, fewer than the program has: %q", len(needed), needed)
	}
}

// buildFiles lists, relative to the module root and slash-separated, the
// files of the module's own packages that the Dockerfile's build of
// ./cmd/wasmwiz compiles or embeds.
func buildFiles(ctx context.Context, t *testing.T) []string {
	t.Helper()
	root := repoPath(t, ".")
	list := exec.CommandContext(ctx, "go", "list", "-deps",
		"-json=ImportPath,Dir,Module,GoFiles,CgoFiles,CFiles,SFiles,HFiles,SysoFiles,EmbedFiles,Error,DepsErrors",
		"./cmd/wasmwiz")
	list.Dir = root
	list.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=-mod=readonly")
	var stderr strings.Builder
	list.Stderr = &stderr
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/wasmwiz: %v\n%s", err, stderr.String())
	}
	var files []string
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct {
			ImportPath                                                       string
			Dir                                                              string
			Module                                                           *struct{ Main bool }
			GoFiles, CgoFiles, CFiles, SFiles, HFiles, SysoFiles, EmbedFiles []string
			Error                                                            *struct{ Err string }
			DepsErrors                                                       []struct{ Err string }
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Error != nil || len(p.DepsErrors) > 0 {
			t.Fatalf("go list: %s: %+v %+v", p.ImportPath, p.Error, p.DepsErrors)
		}
		if p.Module == nil || !p.Module.Main {
			continue // the standard library or a dependency
		}
		for _, group := range [][]string{p.GoFiles, p.CgoFiles, p.CFiles, p.SFiles, p.HFiles, p.SysoFiles, p.EmbedFiles} {
			for _, f := range group {
				rel, err := filepath.Rel(root, filepath.Join(p.Dir, f))
				if err != nil {
					t.Fatal(err)
				}
				files = append(files, filepath.ToSlash(rel))
			}
		}
	}
	return files
}
