package worker

import (
	"time"

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

// BenchmarkWorkerStart measures starting one worker up to its hello (a
// process, a Go runtime and an engine), which is what replacing a killed
// worker costs, and reports the resident memory of a fresh worker and of one
// that has run hello.
func BenchmarkWorkerStart(b *testing.B) {
	opts := testOptions(b, 1, 0)
	var rssFresh, rssRan int64
	for b.Loop() {
		pl, err := New(context.Background(), opts)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		pl.mu.Lock()
		for p := range pl.procs {
			rssFresh = p.rssBytes()
		}
		pl.mu.Unlock()
		if _, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: module(b, "hello.wasm"), Limits: limits()}); err != nil {
			b.Fatal(err)
		}
		pl.mu.Lock()
		for p := range pl.procs {
			rssRan = p.rssBytes()
		}
		pl.mu.Unlock()
		if err := pl.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(rssFresh)/(1<<20), "MiB-rss-fresh")
	b.ReportMetric(float64(rssRan)/(1<<20), "MiB-rss-after-hello")
}

// BenchmarkTimeoutRecovery measures a run that times out (its worker killed)
// followed by a hello, on a pool with one spare: the hello is served by the
// spare while the replacement starts.
func BenchmarkTimeoutRecovery(b *testing.B) {
	pl := newTestPool(b, testOptions(b, 1, 1))
	l := limits()
	l.Timeout = 10 * time.Millisecond
	loop := &wasmwiz.RunRequest{Wasm: module(b, "loop.wasm"), Limits: l}
	hello := &wasmwiz.RunRequest{Wasm: module(b, "hello.wasm"), Limits: limits()}
	for b.Loop() {
		res, err := pl.Run(context.Background(), loop)
		if err != nil || res.Status != wasmwiz.StatusTimeout {
			b.Fatalf("loop: %v, %+v", err, res)
		}
		if _, err := pl.Run(context.Background(), hello); err != nil {
			b.Fatal(err)
		}
	}
}
