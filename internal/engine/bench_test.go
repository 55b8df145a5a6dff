package engine

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// rawWazero runs a WASI command the way a bare wazero program would: one
// runtime, the module compiled once, a fresh anonymous instance per run.
type rawWazero struct {
	r   wazero.Runtime
	mod wazero.CompiledModule
}

func newRawWazero(b *testing.B, wasm []byte, interrupt bool) *rawWazero {
	ctx := context.Background()
	newRuntimeMu.Lock()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(interrupt))
	newRuntimeMu.Unlock()
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	mod, err := r.CompileModule(ctx, wasm)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = r.Close(ctx) })
	return &rawWazero{r: r, mod: mod}
}

func (w *rawWazero) run(b *testing.B, args ...string) []byte {
	var out bytes.Buffer
	m, err := w.r.InstantiateModule(context.Background(), w.mod,
		wazero.NewModuleConfig().WithName("").WithStdout(&out).WithArgs(append([]string{"raw"}, args...)...))
	if err != nil {
		b.Fatal(err)
	}
	_ = m.Close(context.Background())
	return out.Bytes()
}

func benchEngineRun(b *testing.B, e *Engine, wasm []byte, args []string, want string) {
	b.Helper()
	lim := testmodule.Limits()
	lim.Timeout = time.Minute
	for b.Loop() {
		res, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Args: args, Limits: lim})
		if err != nil || string(res.Stdout) != want {
			b.Fatalf("Run: %v %+v", err, res)
		}
	}
}

// BenchmarkWarmRun is the per-run cost of a tiny WASI command with its code
// compiled: the engine next to bare wazero doing the same.
func BenchmarkWarmRun(b *testing.B) {
	wasm := testmodule.Read(b, "hello.wasm")
	b.Run("engine", func(b *testing.B) {
		e := newEngine(b, Options{})
		benchEngineRun(b, e, wasm, nil, "Hello, World!\n")
	})
	b.Run("raw-wazero", func(b *testing.B) {
		w := newRawWazero(b, wasm, true)
		for b.Loop() {
			if out := w.run(b); string(out) != "Hello, World!\n" {
				b.Fatalf("stdout %q", out)
			}
		}
	})
}

// BenchmarkFib30 is a CPU-bound guest (recursive fib(30), from C): with
// the in-guest timeout checks, without them in the engine, and bare wazero
// without any cancellation.
func BenchmarkFib30(b *testing.B) {
	wasm := testmodule.Read(b, "fib.wasm")
	args := []string{"30"}
	b.Run("engine-interrupt", func(b *testing.B) {
		benchEngineRun(b, newEngine(b, Options{}), wasm, args, "832040\n")
	})
	b.Run("engine-no-interrupt", func(b *testing.B) {
		benchEngineRun(b, newEngine(b, Options{NoGuestInterrupt: true}), wasm, args, "832040\n")
	})
	b.Run("raw-wazero-no-cancel", func(b *testing.B) {
		w := newRawWazero(b, wasm, false)
		for b.Loop() {
			if out := w.run(b, args...); string(out) != "832040\n" {
				b.Fatalf("stdout %q", out)
			}
		}
	})
}

// BenchmarkCompileGoModule compiles a Go wasip1 module: cold, from the
// memory cache, and from the disk cache in a new engine (a restart).
func BenchmarkCompileGoModule(b *testing.B) {
	wasm := testmodule.GoWasip1(b, "gohello")
	b.ReportMetric(float64(len(wasm)), "module-bytes")
	inspect := func(b *testing.B, e *Engine) {
		if _, err := e.Inspect(context.Background(), wasm, testmodule.Limits()); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			e, err := New(context.Background(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			inspect(b, e)
			_ = e.Close(context.Background())
		}
	})
	b.Run("memory-cache", func(b *testing.B) {
		e := newEngine(b, Options{})
		inspect(b, e)
		for b.Loop() {
			inspect(b, e)
		}
	})
	b.Run("disk-cache", func(b *testing.B) {
		dir := b.TempDir()
		warm, err := New(context.Background(), Options{CacheDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		inspect(b, warm)
		_ = warm.Close(context.Background())
		for b.Loop() {
			e, err := New(context.Background(), Options{CacheDir: dir})
			if err != nil {
				b.Fatal(err)
			}
			inspect(b, e)
			if st := e.CacheStats(); st.DiskHits != 1 {
				b.Fatalf("not served from disk: %+v", st)
			}
			_ = e.Close(context.Background())
		}
	})
}
