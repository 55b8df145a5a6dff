package engine

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// FuzzInspect: no input makes the engine panic, and every refusal is
// EINVALID with a message. The seeds are the test modules and one of each
// hostile class (testdata/hostile).
func FuzzInspect(f *testing.F) {
	for _, name := range testmodule.Names("*.wasm") {
		if b := testmodule.Read(f, name); len(b) < 1<<16 {
			f.Add(b)
		}
	}
	hostile, _ := filepath.Glob("testdata/hostile/*.wasm")
	if len(hostile) == 0 {
		f.Fatal("no seeds in testdata/hostile")
	}
	for _, file := range hostile {
		if b, err := os.ReadFile(file); err == nil && len(b) < 1<<16 {
			f.Add(b)
		}
	}
	f.Add([]byte{0, 'a', 's', 'm', 1, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff, 0x0f})
	e, err := New(context.Background(), Options{MemoryCacheBytes: 8 * wasmwiz.MiB})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = e.Close(context.Background()) })
	f.Fuzz(func(t *testing.T, wasm []byte) {
		_, err := e.Inspect(context.Background(), wasm, testmodule.Limits())
		if err != nil && (wasmwiz.ErrorCode(err) != wasmwiz.EINVALID || wasmwiz.ErrorMessage(err) == "") {
			t.Fatalf("Inspect: %v", err)
		}
	})
}
