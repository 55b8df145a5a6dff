package worker

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/hostiletest"
	"github.com/wasmwiz/wasmwiz/internal/metrictest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// residentBytes returns the anonymous resident memory of process pid (its
// resident pages less those backed by files, such as the program's code,
// which a dying Go program reads to print its stacks), 0 when gone.
func residentBytes(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	resident, _ := statmBytes(b, 1)
	shared, ok := statmBytes(b, 2)
	if !ok {
		return 0
	}
	return resident - shared
}

// mib writes n bytes in MiB with one decimal.
func mib(n int64) string {
	return strconv.FormatFloat(float64(n)/float64(wasmwiz.MiB), 'f', 1, 64) + "MiB"
}

// peakRSS samples the anonymous resident memory of the pool's busy workers until
// stop is called, and returns the largest sample: what a guest made a
// worker hold, even one that died of it.
func peakRSS(pl *Pool) (stop func() int64) {
	var (
		mu   sync.Mutex
		peak int64
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Go(func() {
		for {
			for _, pid := range busyPIDs(pl) {
				if r := residentBytes(pid); r > 0 {
					mu.Lock()
					peak = max(peak, r)
					mu.Unlock()
				}
			}
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	return func() int64 {
		close(done)
		wg.Wait()
		return peak
	}
}

// TestPoolHostileMemory: guests that make the host allocate past their cap
// through what the engine does not count (the call stack, function
// references) or counts statically (tables) leave the worker's resident
// memory within the run's bound, and the run ends memory_limit, never a
// timeout or the host's RAM. The bound is the worker's own limit
// (memlimit.go): what it held before the run plus the run's budget.
func TestPoolHostileMemory(t *testing.T) {
	t.Parallel()
	type want struct {
		status wasmwiz.Status
		trap   string
	}
	tests := []struct {
		name    string
		wasm    []byte
		cap     int64
		timeout time.Duration
		want    want
	}{
		{"table growth under 1MiB fails in the guest", hostiletest.TableGrowLoop(100_000, -1, hostiletest.Trap), wasmwiz.MiB, time.Minute,
			want{wasmwiz.StatusTrap, "unreachable"}},
		{"table growth under 128MiB fails in the guest", hostiletest.TableGrowLoop(1_000_000, -1, hostiletest.Trap), 128 * wasmwiz.MiB, time.Minute,
			want{wasmwiz.StatusTrap, "unreachable"}},
		// The 61-byte attack: it ignores the failure and loops, so it ends
		// at its (short) deadline, with its memory flat meanwhile.
		{"table growth that ignores failure", hostiletest.TableGrowLoop(1_000_000, -1, hostiletest.Ignore), 128 * wasmwiz.MiB, time.Second,
			want{wasmwiz.StatusTimeout, ""}},
		{"ref.func allocating host memory", hostiletest.RefFuncLoop(), 16 * wasmwiz.MiB, time.Minute,
			want{wasmwiz.StatusMemoryLimit, "out of memory"}},
		{"deep recursion under a small cap", hostiletest.DeepRecursion(), 16 * wasmwiz.MiB, time.Minute,
			want{wasmwiz.StatusMemoryLimit, "out of memory"}},
		{"deep recursion under a large cap overflows its stack", hostiletest.DeepRecursion(), 512 * wasmwiz.MiB, time.Minute,
			want{wasmwiz.StatusTrap, "stack overflow"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pl := newTestPool(t, testOptions(t, 1, 0))
			// Warm: compile first, so that what is measured is the run.
			lim := testmodule.Limits()
			lim.MaxMemoryBytes, lim.Timeout = tt.cap, tt.timeout
			if _, err := pl.Inspect(context.Background(), tt.wasm, lim); err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			idle := residentBytes(pl.PIDs()[0])
			stop := peakRSS(pl)
			start := time.Now()
			res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: tt.wasm, Limits: lim})
			took := time.Since(start)
			peak := stop()
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Status != tt.want.status || !strings.Contains(res.Trap, tt.want.trap) {
				t.Errorf("status %s (trap %q), want %s (%q)", res.Status, res.Trap, tt.want.status, tt.want.trap)
			}
			bound := idle + runDataBudget(lim, 0) + raceOverhead*hardLimitMargin
			t.Logf("worker anonymous resident memory: %s idle, %s at most during the run (bound %s)",
				mib(idle), mib(peak), mib(bound))
			if peak > bound {
				t.Errorf("the worker held %s during the run, over its bound of %s", mib(peak), mib(bound))
			}
			testenv.Prove(t, "host memory through the engine: "+tt.name+" (cap "+mib(tt.cap)+")",
				"the run ends "+string(res.Status)+"; the worker's memory stays within its bound; the pool goes on",
				"time to answer", testenv.Ms(took),
				"peak RSS", workerPeak(peak, idle, bound))
			// The pool goes on: a hello world runs next.
			res, err = pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "hello.wasm"), Limits: testmodule.Limits()})
			if err != nil || res.Status != wasmwiz.StatusOK {
				t.Fatalf("hello afterwards: %v %+v", err, res)
			}
		})
	}
}

// TestWorkerRetiresWhenItOutgrowsItsAllowance: a worker whose memory
// mappings grew past what it may hold between requests asks to be replaced,
// and the pool replaces it.
func TestWorkerRetiresWhenItOutgrowsItsAllowance(t *testing.T) {
	t.Parallel()
	opts := testOptions(t, 1, 0)
	// Caches of (almost) nothing: any growth of the Go heap is past the allowance.
	opts.MemoryCacheBytes, opts.ModuleCacheBytes = 1, 1
	pl := newTestPool(t, opts)
	pid := pl.PIDs()[0]
	// Globals live on the Go heap for as long as the instance does; 100,000
	// of them grow the heap by about 10 MiB, past an allowance of 64 MiB of
	// overhead only when the heap also holds their compile. Compile a big
	// module to get there.
	wasm := hostiletest.HugeFunction(200_000)
	lim := testmodule.Limits()
	lim.MaxModuleBytes = 0
	res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: lim})
	if err != nil || res.Status != wasmwiz.StatusOK {
		t.Fatalf("Run: %v %+v", err, res)
	}
	testenv.WaitFor(t, "the worker to be replaced", func() bool {
		pids := pl.PIDs()
		return len(pids) == 1 && pids[0] != pid
	})
	if s := pl.Stats(); s.Retires != 1 {
		t.Errorf("stats %+v, want one retirement", s)
	}
	if m := metrictest.Values(t, pl); m["wasmwiz_worker_retires_total"] != 1 {
		t.Errorf("wasmwiz_worker_retires_total = %v, want 1", m["wasmwiz_worker_retires_total"])
	}
}

// TestPoolMemoryAttackDoesNotMakeOthersWait: while one caller's guest grows
// a table for ever (growth failing at its bound, its worker's memory flat),
// another caller's hello worlds run on the other worker.
func TestPoolMemoryAttackDoesNotMakeOthersWait(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, testOptions(t, 2, 0))
	attack := hostiletest.TableGrowLoop(1_000_000, -1, hostiletest.Ignore)
	hello := testmodule.Read(t, "hello.wasm")
	compileFirst(t, pl, attack, hello)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() {
		lim := testmodule.Limits()
		lim.MaxMemoryBytes = 16 * wasmwiz.MiB
		lim.Timeout = 10 * time.Minute // it must still run when the others are done
		_, err := pl.Run(ctx, &wasmwiz.RunRequest{Wasm: attack, Limits: lim})
		done <- err
	}()
	testenv.WaitFor(t, "the attack to run", func() bool { return len(busyPIDs(pl)) == 1 })
	attacker := busyPIDs(pl)[0]
	sample := peakRSS(pl)
	var helloTook testenv.Latencies
	for i := range 20 {
		start := time.Now()
		res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: hello, Limits: testmodule.Limits()})
		helloTook.Since(start)
		if err != nil || string(res.Stdout) != "Hello, World!\n" {
			t.Fatalf("hello %d beside the attack: %v %+v", i, err, res)
		}
	}
	peak := sample()
	select {
	case err := <-done:
		t.Fatalf("the attack ended before the hello worlds (%v): the test proves nothing", err)
	default:
	}
	if r := residentBytes(attacker); r > 64*wasmwiz.MiB || peak > 64*wasmwiz.MiB {
		t.Errorf("the attacking worker holds %s (peak %s); its table's growth should fail long before", mib(r), mib(peak))
	}
	testenv.Prove(t, "table growth for ever (cap 16MiB), beside another caller",
		"growth fails at the cap, the attacker's worker stays flat; the other caller's hello worlds run on the other worker",
		"other tenant's latency", helloTook.String(),
		"peak RSS", "workers "+mib(peak))
	stop()
	if err := <-done; wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Errorf("the cancelled attack: %v, want EUNAVAILABLE", err)
	}
}

// workerPeak words a worker's peak for the prove report.
func workerPeak(peak, idle, bound int64) string {
	if peak == 0 {
		return "worker not sampled: the run ended first (idle " + mib(idle) + ", bound " + mib(bound) + ")"
	}
	return "worker " + mib(peak) + " (idle " + mib(idle) + ", bound " + mib(bound) + ")"
}
