package engine

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/hostiletest"
)

// TestHostileTestdataIsCurrent: testdata/hostile holds exactly what
// `go run ./internal/hostiletest/cmd/hostile -out internal/engine/testdata/hostile`
// writes, so the committed seeds cannot drift from their generator.
func TestHostileTestdataIsCurrent(t *testing.T) {
	t.Parallel()
	want := map[string][]byte{}
	for _, ex := range hostiletest.Examples() {
		want[ex.Name+".wasm"] = ex.Wasm
	}
	files, err := filepath.Glob("testdata/hostile/*.wasm")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		w, ok := want[name]
		switch {
		case !ok:
			t.Errorf("testdata/hostile/%s is not a hostiletest example", name)
		case !bytes.Equal(b, w):
			t.Errorf("testdata/hostile/%s differs from its generator: run go run ./internal/hostiletest/cmd/hostile -out internal/engine/testdata/hostile", name)
		}
		delete(want, name)
	}
	for name := range want {
		t.Errorf("testdata/hostile/%s is missing", name)
	}
}
