// Package testmodule holds the WebAssembly modules the tests run, in
// testdata/ each beside the .wat or .c source it is built from, embedded so
// that a test of any package reads them by name instead of by a path
// relative to its own directory. The README's examples use these files too.
// Go programs, in testdata/go, are built at test time instead (GoWasip1):
// a Go wasip1 module is megabytes, too large to commit.
//
// The committed .wasm files are what the sources build (a test checks it):
// after editing a source, run `make testdata` (or make -C
// internal/testmodule/testdata, or go generate ./internal/testmodule); it
// needs wabt (wat2wasm), clang, lld, wasi-libc and libclang-rt-14-dev-wasm32.
//
// Imported by tests only.
package testmodule

import (
	"embed"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

//go:generate make -C testdata

// embedded are the modules and their sources.
//
//go:embed testdata/*.wasm testdata/*.wat testdata/*.c
var embedded embed.FS

// files are the modules and sources by name, without the directory.
var files = mustSub(embedded, "testdata")

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// Read returns the named file ("hello.wasm", or a source such as
// "add.wat"), failing t when there is none.
func Read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := ReadFile(name)
	if err != nil {
		t.Fatalf("test module: %v", err)
	}
	return b
}

// ReadFile returns the named file, for code that has no testing.TB (a
// test's child process).
func ReadFile(name string) ([]byte, error) { return fs.ReadFile(files, name) }

// Path writes the named file into a temporary directory of t and returns
// its path, for what takes a module from disk (the CLI, a browser's file
// input). The file keeps its name, which a WASI guest sees as argv[0].
func Path(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, Read(t, name), 0o644); err != nil {
		t.Fatalf("test module: %v", err)
	}
	return p
}

// Names returns the names of the files matching pattern (fs.Glob syntax,
// e.g. "*.wasm"), sorted.
func Names(pattern string) []string {
	names, err := fs.Glob(files, pattern)
	if err != nil {
		panic("testmodule: bad pattern " + pattern)
	}
	return names
}
