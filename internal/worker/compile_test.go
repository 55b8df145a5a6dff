package worker

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/hostiletest"
	"github.com/wasmwiz/wasmwiz/internal/metrictest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestCompileBombDoesNotMakeOthersWait: while one caller's compile bomb
// compiles (a 90 KB module of nested loops that takes wazero tens of
// seconds), another caller's hello world runs at once: compiles never take
// the last worker. A second bomb meanwhile is refused EUNAVAILABLE after
// the short wait for a compile slot rather than taking that worker.
func TestCompileBombDoesNotMakeOthersWait(t *testing.T) {
	t.Parallel()
	opts := testOptions(t, 2, 0)
	opts.CompileWait = 100 * time.Millisecond
	pl := newTestPool(t, opts)
	hello := testmodule.Read(t, "hello.wasm")
	if res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: hello, Limits: testmodule.Limits()}); err != nil || res.Status != wasmwiz.StatusOK {
		t.Fatalf("hello: %v %+v", err, res)
	}

	bombCtx, stopBomb := context.WithCancel(context.Background())
	defer stopBomb()
	var bombDone atomic.Bool
	bombErr := make(chan error, 1)
	go func() {
		lim := testmodule.Limits()
		lim.Timeout = 10 * time.Minute // it must still be compiling when the others are done
		_, err := pl.Run(bombCtx, &wasmwiz.RunRequest{Wasm: hostiletest.DeepLoops(30_000), Limits: lim})
		bombDone.Store(true)
		bombErr <- err
	}()
	testenv.WaitFor(t, "the bomb to compile in a worker", func() bool { return len(busyPIDs(pl)) == 1 })

	lim := testmodule.Limits()
	_, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: hostiletest.DeepLoops(30_001), Limits: lim})
	var retry *wasmwiz.RetryAfterError
	if wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE || !errors.As(err, &retry) || !strings.Contains(wasmwiz.ErrorMessage(err), "busy compiling") {
		t.Errorf("a second bomb: %v, want EUNAVAILABLE with a retry hint", err)
	}
	// What is not a module needs no slot: refused at once, by what is wrong
	// with it, for a run and for an inspection, however large.
	notModules := map[string][]byte{
		"magic bytes":      bytes.Repeat([]byte{0}, 8<<20),
		"text format":      testmodule.Read(t, "add.wat"),
		"components":       {0, 'a', 's', 'm', 0x0d, 0, 1, 0},
		"shorter than the": []byte("\x00asm\x01"),
	}
	for want, wasm := range notModules {
		_, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: lim})
		if wasmwiz.ErrorCode(err) != wasmwiz.EINVALID || !strings.Contains(wasmwiz.ErrorMessage(err), want) {
			t.Errorf("run of a module that is not one (%s) while the slot is taken: %v, want EINVALID", want, err)
		}
		_, err = pl.Inspect(context.Background(), wasm, lim)
		if wasmwiz.ErrorCode(err) != wasmwiz.EINVALID || !strings.Contains(wasmwiz.ErrorMessage(err), want) {
			t.Errorf("inspection of a module that is not one (%s) while the slot is taken: %v, want EINVALID", want, err)
		}
	}
	for i := range 3 {
		res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: hello, Limits: testmodule.Limits()})
		if err != nil || res.Status != wasmwiz.StatusOK || string(res.Stdout) != "Hello, World!\n" {
			t.Fatalf("hello %d beside the bomb: %v %+v", i, err, res)
		}
	}
	if bombDone.Load() {
		t.Fatalf("the bomb finished before the hello worlds: the test proves nothing (%v)", testenv.Recv(t, bombErr, "the bomb's error"))
	}
	stopBomb()
	if err := testenv.Recv(t, bombErr, "the cancelled bomb"); wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Errorf("the cancelled bomb: %v, want EUNAVAILABLE", err)
	}
}

// TestCompileWaitingIsCounted: a request waiting for a compile slot is
// counted (wasmwiz_compile_waiting) while it waits, and no longer once it
// gave up.
func TestCompileWaitingIsCounted(t *testing.T) {
	t.Parallel()
	opts := testOptions(t, 2, 0) // one compile slot
	opts.CompileWait = time.Minute
	pl := newTestPool(t, opts)
	release, err := pl.compiles.slot(context.Background(), "held")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := pl.Run(ctx, &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "hello.wasm"), Limits: testmodule.Limits()})
		done <- err
	}()
	testenv.WaitFor(t, "the run counted waiting for the compile slot", func() bool {
		return metrictest.Values(t, pl)["wasmwiz_compile_waiting"] == 1
	})
	cancel()
	if err := testenv.Recv(t, done, "the run that gave up"); wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Errorf("a run whose request ended while it waited for the compile slot: %v, want EUNAVAILABLE", err)
	}
	if n := pl.Stats().CompileWaiting; n != 0 {
		t.Errorf("%d requests counted waiting after the only one gave up", n)
	}
}

// TestCompileSlots: a pool of Size workers lets Size-1 compiles run at once
// (at least one), and a module known compiled needs no slot.
func TestCompileSlots(t *testing.T) {
	t.Parallel()
	for size, want := range map[int]int{1: 1, 2: 1, 3: 2, 8: 7} {
		c := newCompiles(size, time.Millisecond)
		var held []func()
		for i := range want {
			release, err := c.slot(context.Background(), "m"+string(rune('a'+i)))
			if err != nil {
				t.Fatalf("size %d: slot %d: %v", size, i, err)
			}
			held = append(held, release)
		}
		if _, err := c.slot(context.Background(), "another"); wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
			t.Errorf("size %d: slot %d: %v, want EUNAVAILABLE", size, want+1, err)
		}
		c.compiled("known")
		if release, err := c.slot(context.Background(), "known"); err != nil {
			t.Errorf("size %d: a known module waited for a slot: %v", size, err)
		} else {
			release()
		}
		held[0]()
		held[0]() // releasing twice frees one slot
		if _, err := c.slot(context.Background(), "next"); err != nil {
			t.Errorf("size %d: after a release: %v", size, err)
		}
		if _, err := c.slot(context.Background(), "one more"); wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
			t.Errorf("size %d: a double release freed two slots", size)
		}
	}
}

// TestVerdicts: a module that did not compile within a wall time or a
// memory budget is refused for requests with no more of either, tried
// again for requests with more, set aside while the module is known
// compiled, and forgotten after verdictTTL; the pool remembers at most
// maxVerdicts of them.
func TestVerdicts(t *testing.T) {
	t.Parallel()
	c := newCompiles(2, time.Millisecond)
	c.remember("slow", 5*time.Second, 0)
	c.remember("big", 0, 100*wasmwiz.MiB)
	tests := []struct {
		name    string
		sha     string
		timeout time.Duration
		budget  int64
		code    string
	}{
		{"the same wall time", "slow", 5 * time.Second, wasmwiz.GiB, wasmwiz.ETOOLARGE},
		{"less time", "slow", time.Second, wasmwiz.GiB, wasmwiz.ETOOLARGE},
		{"more time may try", "slow", 10 * time.Second, wasmwiz.GiB, ""},
		{"the same memory", "big", time.Minute, 100 * wasmwiz.MiB, wasmwiz.ETOOLARGE},
		{"more memory may try", "big", time.Minute, 200 * wasmwiz.MiB, ""},
		{"another module", "other", time.Second, wasmwiz.MiB, ""},
	}
	for _, tt := range tests {
		err := c.refused(tt.sha, tt.timeout, tt.budget)
		if wasmwiz.ErrorCode(err) != tt.code && !(tt.code == "" && err == nil) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.code)
		}
	}
	// A module that another request compiled since only loads: its
	// verdict is set aside while it is known, and holds again once it is
	// forgotten (its compiled code gone).
	c.remember("compiled since", 5*time.Second, 0)
	c.compiled("compiled since")
	if err := c.refused("compiled since", time.Second, 0); err != nil {
		t.Errorf("a module known compiled is refused: %v", err)
	}
	c.forget("compiled since")
	if err := c.refused("compiled since", time.Second, 0); wasmwiz.ErrorCode(err) != wasmwiz.ETOOLARGE {
		t.Errorf("a forgotten module's verdict: %v, want ETOOLARGE", err)
	}
	// Verdicts expire.
	c.mu.Lock()
	c.verdicts["slow"].at = time.Now().Add(-verdictTTL - time.Second)
	c.mu.Unlock()
	if err := c.refused("slow", time.Second, 0); err != nil {
		t.Errorf("an expired verdict still refuses: %v", err)
	}
	// And are bounded in number.
	for i := range maxVerdicts + 10 {
		c.remember(strings.Repeat("x", 1+i%7)+string(rune(i)), time.Second, 0)
	}
	if n := len(c.verdicts); n > maxVerdicts || c.order.Len() != n {
		t.Errorf("%d verdicts (%d in order), want at most %d", n, c.order.Len(), maxVerdicts)
	}
}

// TestSlowModuleLoadIsNotTheCompile: the time a stored module's bytes take
// to come from the store (RunRequest.LoadWasm: the database, slowed by
// other tenants) is not the request's wall time, so a module the store
// hands over late is no module that did not compile in time, and no
// verdict refuses it afterwards.
func TestSlowModuleLoadIsNotTheCompile(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, testOptions(t, 1, 0))
	wasm := hostiletest.Const(4242)
	sha := wasmwiz.ModuleDigest(wasm)
	lim := testmodule.Limits()
	lim.Timeout = 200 * time.Millisecond
	slow := func(ctx context.Context) ([]byte, error) {
		select {
		case <-time.After(2 * lim.Timeout):
		case <-ctx.Done():
		}
		return wasm, nil
	}
	for _, load := range []struct {
		what string
		f    func(context.Context) ([]byte, error)
	}{{"a slow store read", slow}, {"a fast one after it", func(context.Context) ([]byte, error) { return wasm, nil }}} {
		res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{SHA256: sha, LoadWasm: load.f, Function: "get", Limits: lim})
		if err != nil || res.Status != wasmwiz.StatusOK || len(res.Results) != 1 || res.Results[0].String() != "4242" {
			t.Fatalf("%s: %v, %s", load.what, err, statusOf(res))
		}
	}
}

// TestCompileMemoryBomb: a 1 MB module whose compile takes wazero gigabytes
// (a br_table of a million targets) is refused ETOOLARGE once its compile
// passes the memory the request allows, with the worker's memory within
// its bound meanwhile, and the refusal is remembered.
func TestCompileMemoryBomb(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, testOptions(t, 1, 0))
	wasm := hostiletest.HugeBrTable(1_000_000, 100, 1)
	lim := testmodule.Limits()
	lim.MaxMemoryBytes = 16 * wasmwiz.MiB
	lim.Timeout = 10 * time.Minute // the memory, not the time, must end it
	idle := residentBytes(pl.PIDs()[0])
	stop := peakRSS(pl)
	start := time.Now()
	_, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: lim})
	took := time.Since(start)
	peak := stop()
	if wasmwiz.ErrorCode(err) != wasmwiz.ETOOLARGE || !strings.Contains(wasmwiz.ErrorMessage(err), "compiling the module needs more than") {
		t.Fatalf("Run: %v, want ETOOLARGE for the compile's memory", err)
	}
	bound := idle + compileDataBudget(lim, len(wasm)) + raceOverhead*hardLimitMargin
	t.Logf("worker anonymous resident memory: %s idle, %s at most while compiling (bound %s)",
		mib(idle), mib(peak), mib(bound))
	if peak > bound {
		t.Errorf("the worker held %s compiling, over its bound of %s", mib(peak), mib(bound))
	}
	testenv.Prove(t, "compile memory bomb: a br_table of 1,000,000 targets (1 MB module, gigabytes to compile; cap 16MiB)",
		"refused 413 ETOOLARGE once the compile passes the request's memory; the worker stays within its bound; the refusal is remembered",
		"time to answer", testenv.Ms(took),
		"peak RSS", workerPeak(peak, idle, bound))
	before := pl.Stats()
	if _, err := pl.Inspect(context.Background(), wasm, lim); wasmwiz.ErrorCode(err) != wasmwiz.ETOOLARGE {
		t.Fatalf("Inspect of the same module: %v, want ETOOLARGE", err)
	}
	if after := pl.Stats(); after.Inspections != before.Inspections {
		t.Errorf("the remembered refusal reached a worker")
	}
}

// TestPoolDiskCacheBound: the pool's bound on the on-disk compile cache
// reaches its workers, which keep the directory within it and count what
// they delete.
func TestPoolDiskCacheBound(t *testing.T) {
	t.Parallel()
	opts := testOptions(t, 2, 0)
	opts.CacheMaxBytes = 1 // nothing stays
	pl := newTestPool(t, opts)
	for i := range 4 {
		res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: hostiletest.ManyFunctions(100 + i), Limits: testmodule.Limits()})
		if err != nil || res.Status != wasmwiz.StatusOK {
			t.Fatalf("run %d: %v %+v", i, err, res)
		}
	}
	hello := testmodule.Read(t, "hello.wasm")
	testenv.WaitFor(t, "the workers to report evictions", func() bool {
		// A request carries a worker's figures back when they changed.
		_, _ = pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: hello, Limits: testmodule.Limits()})
		return pl.CacheStats().DiskEvictions >= 4
	})
	if m := metrictest.Values(t, pl); m["wasmwiz_compile_cache_evictions_total"] < 4 {
		t.Errorf("wasmwiz_compile_cache_evictions_total = %v, want at least 4", m["wasmwiz_compile_cache_evictions_total"])
	}
}

// TestEvictedModuleTakesASlotAgain: a module known compiled needs no compile
// slot because a worker holds it or loads it from the disk cache; once the
// cache evicted it, a worker compiles it afresh without a slot, once, and
// the module is known no more, so that its next request takes a slot (and a
// failed compile then leaves a verdict).
func TestEvictedModuleTakesASlotAgain(t *testing.T) {
	t.Parallel()
	opts := testOptions(t, 2, 0)
	opts.CacheMaxBytes = 1 // nothing stays on disk
	pl := newTestPool(t, opts)
	wasm := hostiletest.ManyFunctions(300)
	sha := wasmwiz.ModuleDigest(wasm)
	run := func(what string) *wasmwiz.Result {
		t.Helper()
		res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: testmodule.Limits()})
		if err != nil || res.Status != wasmwiz.StatusOK {
			t.Fatalf("%s: %v %+v", what, err, res)
		}
		return res
	}
	run("the first run")
	if !pl.compiles.isKnown(sha) {
		t.Fatal("a module that compiled is not known")
	}
	// Workers that hold nothing: the module must come from the disk cache,
	// which evicted it.
	old := pl.PIDs()
	for _, pid := range old {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	testenv.WaitFor(t, "the pool to replace its killed workers", func() bool {
		pids := pl.PIDs()
		return len(pids) == len(old) && !slices.ContainsFunc(pids, func(p int) bool { return slices.Contains(old, p) })
	})
	if res := run("a run after the eviction"); res.CompileCached {
		t.Fatal("the module came from a cache that keeps nothing: the test proves nothing")
	}
	if pl.compiles.isKnown(sha) {
		t.Fatal("a module its worker compiled afresh is still known: its requests skip the compile slot")
	}
	run("a run that took a slot")
	if !pl.compiles.isKnown(sha) {
		t.Fatal("the module is not known after it compiled again")
	}
}

// TestPoolCompileCacheSharedAmongOwners: a run's owner
// (wasmwiz.NewContextWithOwner) travels to its worker, whose compile cache
// shares its budget among owners: one owner's stream of distinct modules
// does not evict another's older module (with every run counted to one
// owner, the worker's plain LRU would).
func TestPoolCompileCacheSharedAmongOwners(t *testing.T) {
	t.Parallel()
	opts := testOptions(t, 1, 0)
	opts.CacheDir = "" // an eviction from memory is a compile: CompileCached tells
	// About four modules: the engine estimates 6x the binary plus 64 KiB.
	opts.MemoryCacheBytes = 4 * (6*int64(len(hostiletest.Const(0))) + 64*wasmwiz.KiB)
	pl := newTestPool(t, opts)
	victim := wasmwiz.NewContextWithOwner(context.Background(), "user:2")
	attacker := wasmwiz.NewContextWithOwner(context.Background(), "user:1")
	run := func(ctx context.Context, n int32) *wasmwiz.Result {
		t.Helper()
		res, err := pl.Run(ctx, &wasmwiz.RunRequest{Wasm: hostiletest.Const(n), Function: "get", Limits: testmodule.Limits()})
		if err != nil || res.Status != wasmwiz.StatusOK || len(res.Results) != 1 || res.Results[0].String() != strconv.Itoa(int(n)) {
			t.Fatalf("module %d: %v %+v", n, err, res)
		}
		return res
	}
	inspect := func(ctx context.Context, n int32) {
		t.Helper()
		if _, err := pl.Inspect(ctx, hostiletest.Const(n), testmodule.Limits()); err != nil {
			t.Fatalf("inspecting module %d: %v", n, err)
		}
	}
	run(victim, 50)
	for n := range int32(8) {
		run(attacker, n)
	}
	if res := run(victim, 50); !res.CompileCached {
		t.Error("the victim's module was evicted by the other owner's runs")
	}
	if res := run(attacker, 0); res.CompileCached {
		t.Error("the attacker's oldest module is still held: the budget did not bind")
	}
	// Inspections (an upload's) carry their owner too.
	inspect(victim, 40)
	for n := range int32(8) {
		inspect(attacker, 20+n)
	}
	for _, n := range []int32{40, 50} {
		if res := run(victim, n); !res.CompileCached {
			t.Errorf("the victim's module %d was evicted by the other owner's inspections", n)
		}
	}
}

// bigModule returns a valid plain module of n functions of k no-op
// instructions each, exporting the first as _start: large enough that
// compiling it takes far longer than running it.
func bigModule(n, k int) []byte {
	code := make([]byte, 0, 3*k+1)
	for range k {
		code = append(code, hostiletest.OpI32Const, 1, hostiletest.OpDrop)
	}
	m := &hostiletest.Module{
		Types:   [][]byte{hostiletest.FuncType(nil, nil)},
		Exports: [][]byte{hostiletest.Export("_start", 0, 0)},
	}
	body := hostiletest.Body(nil, append(code, hostiletest.OpEnd))
	for range n {
		m.Funcs = append(m.Funcs, 0)
		m.Code = append(m.Code, body)
	}
	return m.Bytes()
}

// TestWallTimeCoversTheCompile: a run's wall time covers compiling its
// module. A module whose compile takes longer than the wall time is refused
// (ETOOLARGE) with its worker killed, not answered "ok" after the compile,
// and the refusal is remembered: the same request again costs no worker.
// With room, the result reports the compile apart from the guest's
// duration, and the worker then holds the module compiled.
func TestWallTimeCoversTheCompile(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, testOptions(t, 1, 0))
	wasm := bigModule(4000, 400) // ~4.8 MB of code, about a second to compile here
	short := testmodule.Limits()
	short.Timeout = 10 * time.Millisecond
	_, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: short})
	if wasmwiz.ErrorCode(err) != wasmwiz.ETOOLARGE || !strings.Contains(wasmwiz.ErrorMessage(err), "did not compile within 10ms") {
		t.Fatalf("a compile past the wall time: %v, want ETOOLARGE", err)
	}
	before := pl.Stats()
	if before.Kills != 1 || before.Timeouts != 0 {
		t.Errorf("stats %+v: want the compiling worker killed, and no guest timeout", before)
	}
	_, err = pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: short})
	if wasmwiz.ErrorCode(err) != wasmwiz.ETOOLARGE {
		t.Fatalf("the same again: %v, want ETOOLARGE", err)
	}
	if after := pl.Stats(); after.Runs != before.Runs || after.Kills != before.Kills {
		t.Errorf("the remembered refusal reached a worker: stats %+v, then %+v", before, after)
	}

	res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: testmodule.Limits()})
	if err != nil || res.Status != wasmwiz.StatusOK {
		t.Fatalf("with a generous wall time: %v %+v", err, res)
	}
	if res.CompileDuration < short.Timeout || res.CompileCached {
		t.Errorf("compile %v (cached %v): want the compile reported", res.CompileDuration, res.CompileCached)
	}
	first := res.CompileDuration
	res, err = pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: testmodule.Limits()})
	if err != nil || res.Status != wasmwiz.StatusOK || res.CompileDuration >= first || !res.CompileCached {
		t.Fatalf("held: %v, compile %v (first %v), cached %v", err, res.CompileDuration, first, res.CompileCached)
	}
}

// TestCompileSlotsTakeTurnsByOwner: a freed compile slot goes to the
// waiting request of the owner that compiled least lately, not to the
// first in line, so an owner keeping requests waiting (each a module that
// compiles for its whole wall time) cannot take every slot in turn while
// others are refused after their short wait.
func TestCompileSlotsTakeTurnsByOwner(t *testing.T) {
	t.Parallel()
	c := newCompiles(2, time.Minute) // one slot
	now := time.Unix(1_000_000, 0)
	var clock sync.Mutex
	c.now = func() time.Time { clock.Lock(); defer clock.Unlock(); return now }
	advance := func(d time.Duration) { clock.Lock(); now = now.Add(d); clock.Unlock() }
	ctxA := wasmwiz.NewContextWithOwner(context.Background(), "user:1")
	ctxB := wasmwiz.NewContextWithOwner(context.Background(), "user:2")

	releaseA, err := c.slot(ctxA, "bomb1")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 2)
	waitFor := func(ctx context.Context, who, sha string) {
		release, err := c.slot(ctx, sha)
		if err != nil {
			got <- who + ": " + err.Error()
			return
		}
		got <- who
		release()
	}
	go waitFor(ctxA, "A's second", "bomb2") // first in line
	testenv.WaitFor(t, "1 requests in line", func() bool { return c.waitingLen() == 1 })
	go waitFor(ctxB, "B", "small")
	testenv.WaitFor(t, "2 requests in line", func() bool { return c.waitingLen() == 2 })
	advance(5 * time.Second) // A's compile held the slot 5 s
	releaseA()
	if first := testenv.Recv(t, got, "the first request handed the slot"); first != "B" {
		t.Errorf("the freed slot went to %s, want B, whose owner has compiled nothing", first)
	}
	if second := testenv.Recv(t, got, "the second request handed the slot"); second != "A's second" {
		t.Errorf("then the slot went to %s, want A's second request", second)
	}

	// A share decays: B's 1 s weigh more than A's 5 s at first, less once
	// A's have halved a few times.
	for _, tc := range []struct {
		since time.Duration // since A's compile
		want  string
	}{{0, "B"}, {4 * compileShareHalfLife, "A"}} {
		advance(tc.since)
		releaseB, err := c.slot(ctxB, "b")
		if err != nil {
			t.Fatal(err)
		}
		advance(time.Second)
		go waitFor(ctxB, "B", "b")
		testenv.WaitFor(t, "1 request in line", func() bool { return c.waitingLen() == 1 })
		go waitFor(ctxA, "A", "a")
		testenv.WaitFor(t, "2 requests in line", func() bool { return c.waitingLen() == 2 })
		releaseB()
		if first := testenv.Recv(t, got, "the first request handed the slot"); first != tc.want {
			t.Errorf("%s after A's 5 s compile and B's 1 s: the freed slot went to %s, want %s", tc.since, first, tc.want)
		}
		testenv.Recv(t, got, "the second request handed the slot")
	}
}

// A request that gives up waiting leaves the line; one handed the slot as
// it gives up hands it on.
func TestCompileSlotWaitEnds(t *testing.T) {
	t.Parallel()
	c := newCompiles(2, 20*time.Millisecond)
	release, err := c.slot(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.slot(context.Background(), "b"); wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Fatalf("a request that waited past the wait: %v, want EUNAVAILABLE", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.slot(ctx, "c"); wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Fatalf("a request that ended while waiting: %v, want EUNAVAILABLE", err)
	}
	if n := c.waitingLen(); n != 0 {
		t.Fatalf("%d requests still in line after they gave up", n)
	}
	release()
	r, err := c.slot(context.Background(), "d")
	if err != nil {
		t.Fatalf("after the release: %v", err)
	}
	r()
	c.mu.Lock()
	free, owners := c.free, len(c.owners)
	c.mu.Unlock()
	if free != 1 || owners > 1 {
		t.Errorf("all released: %d free slots (want 1), %d owners remembered", free, owners)
	}
}
