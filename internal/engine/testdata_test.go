package engine

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// TestTestdataIsCurrent rebuilds every test module from its source into a
// temporary directory and compares the bytes with the committed .wasm, so a
// source edited without `make -C internal/engine/testdata` fails here.
func TestTestdataIsCurrent(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"make", "wat2wasm", "clang", "wasm-ld"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Skip(t, tool+" is not installed, cannot check that testdata/*.wasm are current",
				"install wabt, clang, lld, wasi-libc and libclang-rt-14-dev-wasm32 (Debian)")
		}
	}
	out := t.TempDir()
	cmd := exec.Command("make", "-s", "-C", "testdata", "OUT="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make: %v\n%s", err, b)
	}
	sources, _ := filepath.Glob("testdata/*.wat")
	cs, _ := filepath.Glob("testdata/*.c")
	sources = append(sources, cs...)
	if len(sources) < 20 {
		t.Fatalf("only %d sources in testdata", len(sources))
	}
	for _, src := range sources {
		name := strings.TrimSuffix(filepath.Base(src), filepath.Ext(src)) + ".wasm"
		built, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Errorf("%s was not built: %v", name, err)
			continue
		}
		committed, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Errorf("%s is not committed: %v", name, err)
			continue
		}
		if !bytes.Equal(built, committed) {
			t.Errorf("testdata/%s differs from what %s builds: run make -C internal/engine/testdata", name, filepath.Base(src))
		}
	}
}
