package worker

import (
	"context"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/engine"
)

// BenchmarkHandoff measures the per-run cost of running a tiny module
// through a worker process next to calling the engine in this process. The
// difference is the hand-off: encoding, two pipe writes and reads, and two
// process wake-ups. Figures are in docs/PERFORMANCE.md, "Worker pool".
func BenchmarkHandoff(b *testing.B) {
	modules := []struct {
		name string
		req  func(b *testing.B) *wasmwiz.RunRequest
	}{
		{"hello", func(b *testing.B) *wasmwiz.RunRequest {
			return &wasmwiz.RunRequest{Wasm: module(b, "hello.wasm"), Limits: limits()}
		}},
		{"add", func(b *testing.B) *wasmwiz.RunRequest {
			return &wasmwiz.RunRequest{Wasm: module(b, "add.wasm"), Function: "add", Params: []string{"2", "3"}, Limits: limits()}
		}},
	}
	for _, m := range modules {
		b.Run(m.name+"/in-process", func(b *testing.B) {
			eng, err := engine.New(context.Background(), engine.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer eng.Close(context.Background())
			benchRuns(b, eng, m.req(b))
		})
		b.Run(m.name+"/in-process-no-interrupt", func(b *testing.B) {
			eng, err := engine.New(context.Background(), engine.Options{NoGuestInterrupt: true})
			if err != nil {
				b.Fatal(err)
			}
			defer eng.Close(context.Background())
			benchRuns(b, eng, m.req(b))
		})
		b.Run(m.name+"/worker", func(b *testing.B) {
			pl := newTestPool(b, testOptions(b, 1, 0))
			benchRuns(b, pl, m.req(b))
		})
	}
}

func benchRuns(b *testing.B, eng wasmwiz.Engine, req *wasmwiz.RunRequest) {
	ctx := context.Background()
	if _, err := eng.Run(ctx, req); err != nil { // warm: compiled, module held
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := eng.Run(ctx, req)
		if err != nil || res.Status != wasmwiz.StatusOK {
			b.Fatalf("run: %v, %+v", err, res)
		}
	}
}
