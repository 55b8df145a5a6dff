package worker

import (
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/prometheus/procfs"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/engine"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// BenchmarkHandoff measures the per-run cost of running a tiny module
// through a worker process next to calling the engine in this process. The
// difference is the hand-off: encoding, two pipe writes and reads, and two
// process wake-ups. pipe-floor is the least any such hand-off costs here: a
// 64-byte frame to a process that only copies it back. Each reports cpu-µs/op,
// the CPU time of this process and of the other one per run. Figures are in
// docs/PERFORMANCE.md, "Worker pool" and "The crossing's floor".
func BenchmarkHandoff(b *testing.B) {
	b.Run("pipe-floor", benchPipeFloor)
	modules := []struct {
		name string
		req  func(b *testing.B) *wasmwiz.RunRequest
	}{
		{"hello", func(b *testing.B) *wasmwiz.RunRequest {
			return &wasmwiz.RunRequest{Wasm: testmodule.Read(b, "hello.wasm"), Limits: testmodule.Limits()}
		}},
		{"add", func(b *testing.B) *wasmwiz.RunRequest {
			return &wasmwiz.RunRequest{Wasm: testmodule.Read(b, "add.wasm"), Function: "add", Params: []string{"2", "3"}, Limits: testmodule.Limits()}
		}},
	}
	for _, m := range modules {
		b.Run(m.name+"/in-process", func(b *testing.B) {
			eng, err := engine.New(context.Background(), engine.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer eng.Close(context.Background())
			benchRuns(b, eng, m.req(b), nil)
		})
		b.Run(m.name+"/in-process-no-interrupt", func(b *testing.B) {
			eng, err := engine.New(context.Background(), engine.Options{NoGuestInterrupt: true})
			if err != nil {
				b.Fatal(err)
			}
			defer eng.Close(context.Background())
			benchRuns(b, eng, m.req(b), nil)
		})
		b.Run(m.name+"/worker", func(b *testing.B) {
			pl := newTestPool(b, testOptions(b, 1, 0))
			benchRuns(b, pl, m.req(b), pl.PIDs)
		})
	}
}

// benchRuns runs req on eng b.N times; pids, when set, names the other
// processes whose CPU time counts in cpu-µs/op (the pool's workers).
func benchRuns(b *testing.B, eng wasmwiz.Engine, req *wasmwiz.RunRequest, pids func() []int) {
	ctx := context.Background()
	if _, err := eng.Run(ctx, req); err != nil { // warm: compiled, module held
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var others []int
	if pids != nil {
		others = pids()
	}
	cpu := startCPU(b, others)
	for b.Loop() {
		res, err := eng.Run(ctx, req)
		if err != nil || res.Status != wasmwiz.StatusOK {
			b.Fatalf("run: %v, %+v", err, res)
		}
	}
	cpu.report(b)
}

// pipeEchoChild is the test binary as the far end of pipe-floor: it copies
// every 64-byte frame it reads on stdin back to stdout, and does nothing
// else.
const pipeEchoChild testenv.Child = "WASMWIZ_PIPE_ECHO_CHILD"

func pipeEchoMain() error {
	buf := make([]byte, 64)
	for {
		if _, err := io.ReadFull(os.Stdin, buf); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if _, err := os.Stdout.Write(buf); err != nil {
			return err
		}
	}
}

// benchPipeFloor sends a 64-byte frame to a child process and reads it back,
// one at a time, as the pool does with a run and its answer: two pipe
// writes, two reads and two wake-ups between processes that sleep in
// between, with no work on either side.
func benchPipeFloor(b *testing.B) {
	cmd := pipeEchoChild.Command(b)
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		in.Close()
		if err := cmd.Wait(); err != nil {
			b.Errorf("echo child: %v", err)
		}
	}()
	frame := make([]byte, 64)
	roundTrip := func() {
		if _, err := in.Write(frame); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(out, frame); err != nil {
			b.Fatal(err)
		}
	}
	for range 1000 { // the child's runtime started, its pages touched
		roundTrip()
	}
	cpu := startCPU(b, []int{cmd.Process.Pid})
	for b.Loop() {
		roundTrip()
	}
	cpu.report(b)
}

// cpuMeter measures the CPU time of this process and of others (by
// /proc/PID/stat, in clock ticks) across a benchmark's loop.
type cpuMeter struct {
	others []int
	self   time.Duration
	theirs time.Duration
}

func startCPU(b *testing.B, others []int) *cpuMeter {
	b.Helper()
	return &cpuMeter{others: others, self: processCPU(), theirs: othersCPU(b, others)}
}

// report adds cpu-µs/op: the CPU time both used since startCPU over b.N.
func (m *cpuMeter) report(b *testing.B) {
	b.Helper()
	used := processCPU() - m.self + othersCPU(b, m.others) - m.theirs
	b.ReportMetric(float64(used.Microseconds())/float64(b.N), "cpu-µs/op")
}

func othersCPU(b *testing.B, pids []int) time.Duration {
	b.Helper()
	var sum time.Duration
	for _, pid := range pids {
		p, err := procfs.NewProc(pid)
		if err != nil {
			b.Fatal(err)
		}
		st, err := p.Stat()
		if err != nil {
			b.Fatal(err)
		}
		sum += time.Duration(st.CPUTime() * float64(time.Second))
	}
	return sum
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
		if _, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(b, "hello.wasm"), Limits: testmodule.Limits()}); err != nil {
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
	l := testmodule.Limits()
	l.Timeout = 10 * time.Millisecond
	loop := &wasmwiz.RunRequest{Wasm: testmodule.Read(b, "loop.wasm"), Limits: l}
	compileFirst(b, pl, loop.Wasm)
	hello := &wasmwiz.RunRequest{Wasm: testmodule.Read(b, "hello.wasm"), Limits: testmodule.Limits()}
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

// BenchmarkLargeModule runs a Go wasip1 hello world (gohello, ~2.7 MB) warm on a
// worker that holds it, and on a worker that must be sent it again every
// run (two variants of the module alternate through a one-byte module
// cache), which is what routing runs to a holder saves. Both variants stay
// compiled in the worker's memory cache.
func BenchmarkLargeModule(b *testing.B) {
	wasm := testmodule.GoWasip1(b, "gohello")
	// The same module with an custom section "x" (one zero byte) appended: another
	// digest, the same code.
	variant := append(append([]byte{}, wasm...), 0, 3, 1, 'x', 0)
	lim := testmodule.Limits()
	lim.MaxModuleBytes = 0
	b.Run("held", func(b *testing.B) {
		pl := newTestPool(b, testOptions(b, 1, 0))
		benchRuns(b, pl, &wasmwiz.RunRequest{Wasm: wasm, Limits: lim}, pl.PIDs)
		b.ReportMetric(float64(len(wasm)), "module-bytes")
	})
	b.Run("resent", func(b *testing.B) {
		opts := testOptions(b, 1, 0)
		opts.ModuleCacheBytes = 1
		pl := newTestPool(b, opts)
		reqs := []*wasmwiz.RunRequest{{Wasm: wasm, Limits: lim}, {Wasm: variant, Limits: lim}}
		for _, r := range reqs {
			if _, err := pl.Run(context.Background(), r); err != nil {
				b.Fatal(err)
			}
		}
		sends := pl.Stats().ModuleSends
		i := 0
		for b.Loop() {
			res, err := pl.Run(context.Background(), reqs[i%2])
			if err != nil || res.Status != wasmwiz.StatusOK {
				b.Fatalf("run: %v, %+v", err, res)
			}
			i++
		}
		if got := pl.Stats().ModuleSends - sends; got != uint64(i) {
			b.Fatalf("%d module sends in %d runs, want one per run", got, i)
		}
	})
}

// BenchmarkOutputFlood measures a guest that writes 8-byte lines until it
// reaches a 64 KiB output cap (8192 writes), in this process and through a
// worker, where every write is an output frame. Figures are in
// docs/PERFORMANCE.md, "Worker pool".
func BenchmarkOutputFlood(b *testing.B) {
	l := testmodule.Limits()
	l.MaxOutputBytes = 64 << 10
	req := &wasmwiz.RunRequest{Wasm: testmodule.Read(b, "flood.wasm"), Limits: l}
	run := func(b *testing.B, eng wasmwiz.Engine) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			res, err := eng.Run(ctx, req)
			if err != nil || res.Status != wasmwiz.StatusOutputLimit || int64(len(res.Stdout)) != l.MaxOutputBytes {
				b.Fatalf("run: %v, %+v", err, res)
			}
		}
	}
	b.Run("in-process-no-interrupt", func(b *testing.B) {
		eng, err := engine.New(context.Background(), engine.Options{NoGuestInterrupt: true})
		if err != nil {
			b.Fatal(err)
		}
		defer eng.Close(context.Background())
		run(b, eng)
	})
	b.Run("worker", func(b *testing.B) {
		run(b, newTestPool(b, testOptions(b, 1, 0)))
	})
}
