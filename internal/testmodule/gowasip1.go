package testmodule

import (
	"bytes"
	"embed"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// goPrograms are the Go programs of testdata/go, each a directory with
// its main.go: gohello (about 2.7 MB built), gofiles and gomembomb.
//
//go:embed testdata/go
var goPrograms embed.FS

// goBuilds are the programs built so far in this process, by name.
var goBuilds sync.Map // string → *goBuild

type goBuild struct {
	once sync.Once
	wasm []byte
	fail string // why it did not build
}

// GoWasip1 returns testdata/go/<name> built by the go command with
// GOOS=wasip1 GOARCH=wasm: a real Go program, megabytes of code with Go's
// runtime in it, which no committed module is. It is built once per test
// binary and each caller gets its own copy. Where it cannot be built (no go
// command, or a toolchain without wasip1) t is skipped through
// testenv.Skip, which fails it when services are required.
func GoWasip1(t testing.TB, name string) []byte {
	t.Helper()
	v, _ := goBuilds.LoadOrStore(name, new(goBuild))
	b := v.(*goBuild)
	b.once.Do(func() { b.wasm, b.fail = buildGoWasip1(name) })
	if b.wasm == nil {
		testenv.Skip(t, "building the Go wasip1 program "+name+" failed: "+b.fail, "use a Go toolchain that builds GOOS=wasip1")
	}
	return bytes.Clone(b.wasm)
}

// buildGoWasip1 writes the program's source into a directory of its own,
// outside any module, and builds it there, so that neither this module's
// go.mod nor the caller's GOFLAGS or go.work take part.
func buildGoWasip1(name string) (wasm []byte, fail string) {
	src, err := goPrograms.ReadFile(path.Join("testdata/go", name, "main.go"))
	if err != nil {
		return nil, err.Error()
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return nil, "no go command on PATH"
	}
	dir, err := os.MkdirTemp("", "wasmwiz-go-"+name)
	if err != nil {
		return nil, err.Error()
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644); err != nil {
		return nil, err.Error()
	}
	cmd := exec.Command(goCmd, "build", "-o", name+".wasm", "main.go")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, err.Error() + ": " + string(out)
	}
	wasm, err = os.ReadFile(filepath.Join(dir, name+".wasm"))
	if err != nil {
		return nil, err.Error()
	}
	return wasm, ""
}
