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

// constModule is a tiny distinct plain module per n: "get" returns n.
func constModule(n int32) []byte {
	// (module (func (export "get") (result i32) (i32.const n)))
	m := hostiletest.Module{
		Types:   [][]byte{hostiletest.FuncType(nil, []byte{hostiletest.I32})},
		Funcs:   []uint32{0},
		Exports: [][]byte{hostiletest.Export("get", 0, 0)},
		Code:    [][]byte{hostiletest.Body(nil, append(hostiletest.SLEB([]byte{hostiletest.OpI32Const}, int64(n)), hostiletest.OpEnd))},
	}
	return m.Bytes()
}

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
	if res := runGet(t, e, constModule(5)); res.CompileCached {
		t.Fatal("a first run reports cached code")
	}
	if res := runGet(t, e, constModule(5)); !res.CompileCached {
		t.Fatal("a second run reports uncached code")
	}
}

func TestCacheEvictsLeastRecentlyUsedByBytes(t *testing.T) {
	t.Parallel()
	one := estimateCompiledSize(len(constModule(1)))
	e := newEngine(t, Options{MemoryCacheBytes: 3 * one})
	for i := range int32(3) {
		runGet(t, e, constModule(i))
	}
	runGet(t, e, constModule(0)) // 0 is now the most recently used
	runGet(t, e, constModule(3)) // evicts 1, the least recently used
	st := e.CacheStats()
	if st.Entries != 3 || st.Bytes > 3*one {
		t.Fatalf("stats %+v, want 3 entries within %d bytes", st, 3*one)
	}
	for _, tc := range []struct {
		n      int32
		cached bool
	}{{0, true}, {3, true}, {1, false}} {
		res := runGet(t, e, constModule(tc.n))
		if res.CompileCached != tc.cached || res.Results[0].String() != fmt.Sprint(tc.n) {
			t.Errorf("module %d: cached %v result %v, want cached %v", tc.n, res.CompileCached, res.Results, tc.cached)
		}
	}
}

func TestCacheHammer(t *testing.T) {
	t.Parallel()
	// A budget of a few modules and many more modules in play: entries are
	// evicted while other goroutines still run them.
	e := newEngine(t, Options{MemoryCacheBytes: 4 * estimateCompiledSize(len(constModule(1)))})
	const goroutines, perG, modules = 8, 60, 12
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perG {
				n := int32((g*7 + i) % modules)
				res, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: constModule(n), Function: "get", Limits: testmodule.Limits()})
				if err != nil {
					errs <- err
					return
				}
				if res.Status != wasmwiz.StatusOK || len(res.Results) != 1 || res.Results[0].String() != fmt.Sprint(n) {
					errs <- fmt.Errorf("module %d: %+v", n, res)
					return
				}
				if i%10 == 0 {
					if _, err := e.Inspect(context.Background(), constModule(n), testmodule.Limits()); err != nil {
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
	runGet(t, e, constModule(1))
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err = e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: constModule(1), Function: "get", Limits: testmodule.Limits()})
	if wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE || !strings.Contains(wasmwiz.ErrorMessage(err), "shutting down") {
		t.Fatalf("Run after Close: %v", err)
	}
}
