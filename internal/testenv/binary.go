package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// built is the wasmwiz program built once for this test binary.
var built struct {
	once sync.Once
	dir  string // removed by Run after the tests
	path string
	out  []byte
	err  error
}

// WasmwizBinary builds the program (cmd/wasmwiz) once for this test binary
// and returns the executable's path, for tests that run it as a process.
// It is built with the go command's defaults, as go test builds the test
// binaries (no -race: it is the program under test, not the test), so that
// its packages are the build cache's entries that the test binaries'
// builds already made: the build compiles package main and links. Built as
// the Dockerfile builds it (CGO_ENABLED=0, -trimpath), every package would
// be compiled a second time, with other flags: on a new checkout, the first
// go test ./... spent about 160 s of a 2-core machine on that alone.
// The Dockerfile's build is what internal/deploytest checks.
func WasmwizBinary(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		root, err := ModuleRoot()
		if err != nil {
			built.err = err
			return
		}
		if built.dir, built.err = os.MkdirTemp("", "wasmwiz-bin-"); built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "wasmwiz")
		last := lastBuilt(root)
		// go build skips the link (a 56 MB executable, seconds of
		// processor time) when the file it would write is already the
		// program its sources build: start from the last one built here.
		if last != "" {
			_ = CopyFile(last, built.path)
		}
		cmd := exec.Command("go", "build", "-o", built.path, "./cmd/wasmwiz")
		cmd.Dir = root
		if built.out, built.err = cmd.CombinedOutput(); built.err == nil && last != "" {
			// Replaced whole (a rename), never written in place: another
			// test binary may be copying it.
			tmp := last + ".tmp" + strconv.Itoa(os.Getpid())
			if CopyFile(built.path, tmp) == nil {
				_ = os.Rename(tmp, last)
			}
			os.Remove(tmp)
		}
	})
	if built.err != nil {
		t.Fatalf("go build ./cmd/wasmwiz: %v\n%s", built.err, built.out)
	}
	return built.path
}

// removeBinary removes what WasmwizBinary built.
func removeBinary() {
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
}

// ModuleRoot returns the directory of go.mod above the working directory
// (go test runs a test in its package's directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// lastBuilt is where WasmwizBinary keeps a copy of the last program it built
// from the module at root, in the user's cache directory (one per checkout,
// so that two work trees do not take turns relinking); "" when there is no
// cache directory. The copy is never run, only copied.
func lastBuilt(root string) string {
	cache, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(cache, "wasmwiz-test", hex.EncodeToString(sum[:8]))
	if os.MkdirAll(dir, 0o755) != nil {
		return ""
	}
	return filepath.Join(dir, "wasmwiz")
}

// CopyFile copies the regular file src to dst, with its permissions,
// creating dst's directory; anything but a regular file is passed over.
func CopyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, st.Mode()&fs.ModePerm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
