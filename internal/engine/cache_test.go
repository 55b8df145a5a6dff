package engine

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/hostiletest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

func runGet(t testing.TB, e *Engine, wasm []byte) *wasmwiz.Result {
	t.Helper()
	res, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Function: "get", Limits: testmodule.Limits()})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func TestCacheSingleCompileForConcurrentFirstRuns(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Options{})
	wasm := testmodule.Read(t, "calc_add.wasm")
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Stdin: []byte("40 2"), Limits: testmodule.Limits()})
			if err == nil && string(res.Stdout) != "42\n" {
				err = fmt.Errorf("stdout %q", res.Stdout)
			}
			errs <- err
		}()
	}
	testenv.Wait(t, "the concurrent compiles", wg.Wait)
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := e.CacheStats()
	if st.Misses != 1 || st.Hits != n-1 || st.Entries != 1 {
		t.Fatalf("stats %+v, want one compile and %d hits", st, n-1)
	}
	if res := runGet(t, e, hostiletest.Const(5)); res.CompileCached {
		t.Fatal("a first run reports cached code")
	}
	if res := runGet(t, e, hostiletest.Const(5)); !res.CompileCached {
		t.Fatal("a second run reports uncached code")
	}
}

func TestCacheEvictsLeastRecentlyUsedByBytes(t *testing.T) {
	t.Parallel()
	one := estimateCompiledSize(len(hostiletest.Const(1)))
	e := newEngine(t, Options{MemoryCacheBytes: 3 * one})
	for i := range int32(3) {
		runGet(t, e, hostiletest.Const(i))
	}
	runGet(t, e, hostiletest.Const(0)) // 0 is now the most recently used
	runGet(t, e, hostiletest.Const(3)) // evicts 1, the least recently used
	st := e.CacheStats()
	if st.Entries != 3 || st.Bytes > 3*one {
		t.Fatalf("stats %+v, want 3 entries within %d bytes", st, 3*one)
	}
	for _, tc := range []struct {
		n      int32
		cached bool
	}{{0, true}, {3, true}, {1, false}} {
		res := runGet(t, e, hostiletest.Const(tc.n))
		if res.CompileCached != tc.cached || res.Results[0].String() != fmt.Sprint(tc.n) {
			t.Errorf("module %d: cached %v result %v, want cached %v", tc.n, res.CompileCached, res.Results, tc.cached)
		}
	}
}

func TestCacheHammer(t *testing.T) {
	t.Parallel()
	// A budget of a few modules and many more modules in play: entries are
	// evicted while other goroutines still run them.
	e := newEngine(t, Options{MemoryCacheBytes: 4 * estimateCompiledSize(len(hostiletest.Const(1)))})
	const goroutines, perG, modules = 8, 60, 12
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perG {
				n := int32((g*7 + i) % modules)
				res, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: hostiletest.Const(n), Function: "get", Limits: testmodule.Limits()})
				if err != nil {
					errs <- err
					return
				}
				if res.Status != wasmwiz.StatusOK || len(res.Results) != 1 || res.Results[0].String() != fmt.Sprint(n) {
					errs <- fmt.Errorf("module %d: %+v", n, res)
					return
				}
				if i%10 == 0 {
					if _, err := e.Inspect(context.Background(), hostiletest.Const(n), testmodule.Limits()); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	testenv.Wait(t, "the concurrent compiles", wg.Wait)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := e.CacheStats()
	if st.Entries > 4 || st.Hits+st.Misses != goroutines*perG+goroutines*perG/10 {
		t.Fatalf("stats %+v", st)
	}
	if st.Misses < modules {
		t.Fatalf("%d compiles for %d modules", st.Misses, modules)
	}
}

func TestCacheOnDisk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	wasm := testmodule.Read(t, "fib.wasm")
	run := func(e *Engine) *wasmwiz.Result {
		res, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Args: []string{"10"}, Limits: testmodule.Limits()})
		if err != nil || string(res.Stdout) != "55\n" {
			t.Fatalf("Run: %v %+v", err, res)
		}
		return res
	}
	first := newEngine(t, Options{CacheDir: dir})
	if res := run(first); res.CompileCached {
		t.Fatal("first compile reported as cached")
	}
	// A new process (here: a new engine) finds the compiled code on disk.
	second := newEngine(t, Options{CacheDir: dir})
	if res := run(second); !res.CompileCached {
		t.Fatal("compile with the code on disk reported as uncached")
	}
	if st := second.CacheStats(); st.DiskHits != 1 || st.Misses != 1 {
		t.Fatalf("stats %+v, want one disk hit", st)
	}
	// The interrupt setting is part of the key: code compiled with the
	// checks is not reused without them.
	third := newEngine(t, Options{CacheDir: dir, NoGuestInterrupt: true})
	if res := run(third); res.CompileCached {
		t.Fatal("code compiled for another interrupt setting reported as cached")
	}
}

func TestClosedEngineRefuses(t *testing.T) {
	t.Parallel()
	e, err := New(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	runGet(t, e, hostiletest.Const(1))
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err = e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: hostiletest.Const(1), Function: "get", Limits: testmodule.Limits()})
	if wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE || !strings.Contains(wasmwiz.ErrorMessage(err), "shutting down") {
		t.Fatalf("Run after Close: %v", err)
	}
}

// TestCacheSharesBudgetAmongOwners: past the budget, the owner holding the
// most gives up its least recently used module first. A tenant compiling a
// stream of distinct modules evicts its own code; another tenant's modules,
// older than all of it, stay compiled (under a plain LRU they would be the
// first to go).
func TestCacheSharesBudgetAmongOwners(t *testing.T) {
	t.Parallel()
	one := estimateCompiledSize(len(hostiletest.Const(1)))
	e := newEngine(t, Options{MemoryCacheBytes: 4 * one})
	victim := wasmwiz.NewContextWithOwner(context.Background(), "user:2")
	attacker := wasmwiz.NewContextWithOwner(context.Background(), "user:1")
	run := func(ctx context.Context, n int32) *wasmwiz.Result {
		t.Helper()
		res, err := e.Run(ctx, &wasmwiz.RunRequest{Wasm: hostiletest.Const(n), Function: "get", Limits: testmodule.Limits()})
		if err != nil || res.Results[0].String() != fmt.Sprint(n) {
			t.Fatalf("module %d: %v %+v", n, err, res)
		}
		return res
	}
	run(victim, 50)
	run(victim, 51)
	for n := range int32(10) {
		run(attacker, n)
	}
	if st := e.CacheStats(); st.Entries != 4 || st.Bytes > 4*one {
		t.Fatalf("stats %+v, want 4 entries within %d bytes", st, 4*one)
	}
	for _, n := range []int32{50, 51} {
		if res := run(victim, n); !res.CompileCached {
			t.Errorf("the victim's module %d was evicted by the other owner's compiles", n)
		}
	}
	// The attacker keeps its share: its two most recent modules.
	for _, tc := range []struct {
		n      int32
		cached bool
	}{{9, true}, {8, true}, {0, false}} {
		if res := run(attacker, tc.n); res.CompileCached != tc.cached {
			t.Errorf("the attacker's module %d: cached %v, want %v", tc.n, res.CompileCached, tc.cached)
		}
	}
}
