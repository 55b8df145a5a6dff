package engine

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/procfs"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// selfStatus reads /proc/self/status; zero where there is no /proc.
func selfStatus() procfs.ProcStatus {
	p, err := procfs.Self()
	if err != nil {
		return procfs.ProcStatus{}
	}
	st, _ := p.NewStatus()
	return st
}

type processLevels struct {
	goroutines int
	heap       uint64
	rssKiB     int64
	vmKiB      int64
	fds        int
}

func measureLevels(t testing.TB) processLevels {
	t.Helper()
	var ms runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	// Goroutines that wazero or the timers started may take a moment to
	// notice that they are done; wait for the count to settle.
	n := runtime.NumGoroutine()
	for range 50 {
		time.Sleep(10 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			break
		}
		n = m
	}
	runtime.ReadMemStats(&ms)
	st := selfStatus()
	return processLevels{goroutines: n, heap: ms.HeapAlloc, rssKiB: int64(st.VmRSS >> 10), vmKiB: int64(st.VmSize >> 10), fds: testenv.OpenFDs(t)}
}

// TestNoLeaksAfterManyRuns runs ok runs, timeouts, traps, memory bombs and
// output floods on one engine and checks that goroutines, heap, resident
// and mapped memory and file descriptors come back to where they started.
// Loop-free recursion is not in the mix: in-process it cannot be stopped
// (see docs/RATIONALE.md); the worker pool's test covers it.
func TestNoLeaksAfterManyRuns(t *testing.T) {
	e := newEngine(t, Options{})
	lim := testmodule.Limits()
	// The jobs that should end on their own get a wall time they never come
	// near, so that a loaded machine cannot turn a memory bomb into a timeout.
	lim.Timeout = time.Minute
	lim.MaxMemoryBytes = 8 * wasmwiz.MiB
	lim.MaxOutputBytes = 4096
	type job struct {
		file   string
		fn     string
		stdin  string
		lim    func(l *wasmwiz.Limits)
		status wasmwiz.Status
	}
	jobs := []job{
		{file: "hello.wasm", status: wasmwiz.StatusOK},
		{file: "calc_add.wasm", stdin: "1 2", status: wasmwiz.StatusOK},
		{file: "loop.wasm", lim: func(l *wasmwiz.Limits) { l.Timeout = 5 * time.Millisecond }, status: wasmwiz.StatusTimeout},
		{file: "poll_sleep.wasm", lim: func(l *wasmwiz.Limits) { l.Timeout = 5 * time.Millisecond }, status: wasmwiz.StatusTimeout},
		{file: "traps.wasm", fn: "div_by_zero", status: wasmwiz.StatusTrap},
		{file: "traps.wasm", fn: "out_of_bounds", status: wasmwiz.StatusTrap},
		{file: "memory_bomb.wasm", status: wasmwiz.StatusMemoryLimit},
		{file: "malloc_bomb.wasm", status: wasmwiz.StatusMemoryLimit},
		{file: "flood.wasm", status: wasmwiz.StatusOutputLimit},
	}
	wasm := map[string][]byte{}
	for _, j := range jobs {
		wasm[j.file] = testmodule.Read(t, j.file)
	}
	// A thousand runs: 222 memory bombs of 8 MiB would leak 1.7 GiB, far
	// past the bounds below, and every descriptor or goroutine counts
	// exactly; twice as many only cost twice the time.
	runs := 1000
	if testing.Short() {
		runs = 200
	}
	do := func(i int) error {
		j := jobs[i%len(jobs)]
		l := lim
		if j.lim != nil {
			j.lim(&l)
		}
		res, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm[j.file], Function: j.fn, Stdin: []byte(j.stdin), Limits: l})
		if err != nil {
			return fmt.Errorf("%s: %v", j.file, err)
		}
		if res.Status != j.status {
			return fmt.Errorf("%s %s: status %s, want %s (%s)", j.file, j.fn, res.Status, j.status, res.Trap)
		}
		return nil
	}
	// Warm up: compile everything (outside the short wall times, which are
	// about the guests) and let the runtime reach its steady size.
	for file, b := range wasm {
		if _, err := e.Inspect(context.Background(), b, wasmwiz.Limits{}); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	for i := range 3 * len(jobs) {
		if err := do(i); err != nil {
			t.Fatal(err)
		}
	}
	before := measureLevels(t)

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := do(i); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := range runs {
		next <- i
	}
	close(next)
	testenv.Wait(t, "the runs", wg.Wait)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	after := measureLevels(t)
	t.Logf("before %+v, after %d runs %+v", before, runs, after)
	if after.goroutines > before.goroutines+2 {
		t.Errorf("goroutines %d, started at %d", after.goroutines, before.goroutines)
	}
	if after.heap > before.heap+16<<20 {
		t.Errorf("heap %d bytes, started at %d", after.heap, before.heap)
	}
	// Every memory bomb touched 8 MiB: the runs would have leaked GiBs.
	if before.rssKiB > 0 && after.rssKiB > before.rssKiB+128<<10 {
		t.Errorf("resident memory %d KiB, started at %d KiB", after.rssKiB, before.rssKiB)
	}
	if before.vmKiB > 0 && after.vmKiB > before.vmKiB+1<<20 {
		t.Errorf("mapped memory %d KiB, started at %d KiB: linear memories are not unmapped", after.vmKiB, before.vmKiB)
	}
	if after.fds > before.fds {
		t.Errorf("open file descriptors %d, started at %d", after.fds, before.fds)
	}
}
