package testmodule

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// TestMain prints, after the tests, a summary of those skipped for want of
// a program, and what would run them.
func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

// TestModulesAreCurrent rebuilds every module from its source into a
// temporary directory and compares the bytes with the committed .wasm, so a
// source edited without `make testdata` fails here; and every .wasm has its
// source.
func TestModulesAreCurrent(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"make", "wat2wasm", "clang", "wasm-ld"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Skip(t, tool+" is not installed, cannot check that the test modules are current",
				"install wabt, clang, lld, wasi-libc and libclang-rt-14-dev-wasm32 (Debian)")
		}
	}
	out := t.TempDir()
	cmd := exec.Command("make", "-s", "-C", "testdata", "OUT="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make: %v\n%s", err, b)
	}
	sources := append(Names("*.wat"), Names("*.c")...)
	if len(sources) < 20 {
		t.Fatalf("only %d sources", len(sources))
	}
	built := map[string]bool{}
	for _, src := range sources {
		name := strings.TrimSuffix(src, filepath.Ext(src)) + ".wasm"
		built[name] = true
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Errorf("%s was not built: %v", name, err)
			continue
		}
		if !bytes.Equal(b, Read(t, name)) {
			t.Errorf("%s differs from what %s builds: run make testdata", name, src)
		}
	}
	for _, name := range Names("*.wasm") {
		if !built[name] {
			t.Errorf("%s has no source beside it", name)
		}
	}
}

func TestPath(t *testing.T) {
	t.Parallel()
	p := Path(t, "hello.wasm")
	b, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(b, Read(t, "hello.wasm")) || filepath.Base(p) != "hello.wasm" {
		t.Errorf("Path(hello.wasm) = %s holding %d bytes (%v), want hello.wasm with the module", p, len(b), err)
	}
}
