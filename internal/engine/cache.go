package engine

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/wasmwiz/wasmwiz"
)

// compiled is one module compiled and analysed, shared by every run of the
// same bytes. It stays valid while refs > 0, even after eviction.
type compiled struct {
	key   string
	owner string // who compiled it (wasmwiz.OwnerFromContext): its bytes count to them
	mod   wazero.CompiledModule
	info  *analysis
	size  int64 // estimated bytes held, for the LRU bound
	// diskPath is the file of its compiled code in the on-disk cache ("" for
	// none); touched is when its recency there was last set.
	diskPath string
	touched  time.Time

	refs    int
	evicted bool
	elem    *list.Element
}

// flight is one compile that concurrent first requests of a module wait for.
type flight struct {
	done    chan struct{}
	waiters int // requests waiting; each gets a reference before done closes
	c       *compiled
	err     error
}

// compileCache holds compiled modules keyed by content hash and the runtime
// settings compiled code depends on, within a byte budget shared fairly by
// their owners (wasmwiz.NewContextWithOwner): past the budget, the owner
// holding the most bytes gives up its least recently used module first. One
// owner alone has a plain LRU; a tenant compiling a stream of distinct
// modules pushes out its own code, and the others keep theirs as long as
// they hold less than it does. A module being compiled is compiled once
// however many requests want it at the same time.
type compileCache struct {
	e      *Engine
	budget int64

	mu       sync.Mutex
	entries  map[string]*compiled
	lru      *list.List // front: most recently used; values *compiled
	bytes    int64
	owned    map[string]int64 // bytes per owner; no zero entries
	inflight map[string]*flight

	hits, misses, diskHits uint64
	compileTime            time.Duration
}

func newCompileCache(e *Engine, budget int64) *compileCache {
	return &compileCache{
		e: e, budget: budget,
		entries:  map[string]*compiled{},
		lru:      list.New(),
		owned:    map[string]int64{},
		inflight: map[string]*flight{},
	}
}

// cacheKey is the content hash plus what the compiled code depends on: the
// in-guest interrupt checks are compiled into the code, and the tables'
// maximums are rewritten (account.go; "t1" names that rule).
func (e *Engine) cacheKey(sha string) string {
	if e.opts.NoGuestInterrupt {
		return sha + "/nointerrupt/t1"
	}
	return sha + "/interrupt/t1"
}

// estimateCompiledSize is the LRU's guess of what a compiled module holds:
// wazero keeps the decoded module (about the binary's size) and native code,
// and reports neither. Measured on a 2.6 MB Go wasip1 module: 12.5-15.7 MB
// of resident memory after compiling, given back on close, so 6x.
func estimateCompiledSize(wasmLen int) int64 { return 6*int64(wasmLen) + 64*wasmwiz.KiB }

// getOrLoad is get for a module that may come without its bytes
// (RunRequest.LoadWasm): load is called only when the compiled code is not
// held, so a warm run never reads the module.
func (cc *compileCache) getOrLoad(ctx context.Context, wasm []byte, load func(context.Context) ([]byte, error), sha string) (*compiled, bool, time.Duration, error) {
	if len(wasm) == 0 && load != nil {
		key := cc.e.cacheKey(sha)
		cc.mu.Lock()
		if c, ok := cc.entries[key]; ok {
			cc.useLocked(c)
			cc.mu.Unlock()
			return c, true, 0, nil
		}
		cc.mu.Unlock()
		var err error
		if wasm, err = load(ctx); err != nil {
			return nil, false, 0, err
		}
	}
	return cc.get(wasmwiz.OwnerFromContext(ctx), wasm, sha)
}

// useLocked takes a reference to c, found in memory, and counts the hit;
// cc.mu is held.
func (cc *compileCache) useLocked(c *compiled) {
	c.refs++
	cc.lru.MoveToFront(c.elem)
	cc.hits++
}

// get returns the compiled module for wasm (whose hex sha256 is sha) with a
// reference the caller must release (a compile's bytes count to owner),
// whether it came from a cache (memory or disk), and how long it took to
// compile or load (0 when it was in memory; the wait when another request
// was compiling it). It returns EINVALID for modules that cannot run here.
func (cc *compileCache) get(owner string, wasm []byte, sha string) (*compiled, bool, time.Duration, error) {
	key := cc.e.cacheKey(sha)
	cc.mu.Lock()
	if c, ok := cc.entries[key]; ok {
		cc.useLocked(c)
		touch := c.diskPath != "" && time.Since(c.touched) > touchEvery
		if touch {
			c.touched = time.Now()
		}
		cc.mu.Unlock()
		if touch { // in use: not the least recent on disk either
			cc.e.disk.touch(c.diskPath)
		}
		return c, true, 0, nil
	}
	if f, ok := cc.inflight[key]; ok {
		cc.hits++
		f.waiters++
		cc.mu.Unlock()
		start := time.Now()
		<-f.done
		if f.err != nil {
			return nil, false, time.Since(start), f.err
		}
		// The caller waited for the compile: its code was not cached.
		return f.c, false, time.Since(start), nil
	}
	f := &flight{done: make(chan struct{})}
	cc.inflight[key] = f
	cc.misses++
	cc.mu.Unlock()

	start := time.Now()
	c, diskHit, err := cc.e.compile(wasm, sha)
	took := time.Since(start)

	cc.mu.Lock()
	delete(cc.inflight, key)
	cc.compileTime += took
	if err == nil {
		if diskHit {
			cc.diskHits++
		}
		c.key, c.owner = key, owner
		c.refs = 1 + f.waiters
		c.elem = cc.lru.PushFront(c)
		cc.entries[key] = c
		cc.bytes += c.size
		cc.owned[owner] += c.size
		cc.evictLocked()
	}
	f.c, f.err = c, err
	close(f.done)
	cc.mu.Unlock()
	if err == nil {
		if c.diskPath != "" {
			cc.e.disk.touch(c.diskPath)
			if !diskHit {
				cc.e.disk.claim(c.diskPath, owner)
				cc.e.disk.evictSoon() // the compile added a file
			}
		}
		cc.e.log.Debug("compiled module", "sha256", sha, "bytes", len(wasm), "seconds", took.Seconds(), "from_disk", diskHit)
	}
	return c, diskHit && err == nil, took, err
}

// evictLocked drops entries while over budget, always keeping the newest:
// the least recently used of the owner holding the most bytes goes first
// (between owners holding as much, the one whose entry is older). An entry
// still in use is closed by its last release.
func (cc *compileCache) evictLocked() {
	for cc.bytes > cc.budget && cc.lru.Len() > 1 {
		var c *compiled
		for el := cc.lru.Back(); el != cc.lru.Front(); el = el.Prev() {
			if e := el.Value.(*compiled); c == nil || cc.owned[e.owner] > cc.owned[c.owner] {
				c = e
			}
		}
		cc.lru.Remove(c.elem)
		delete(cc.entries, c.key)
		cc.bytes -= c.size
		if cc.owned[c.owner] -= c.size; cc.owned[c.owner] <= 0 {
			delete(cc.owned, c.owner)
		}
		c.evicted = true
		if c.refs == 0 {
			_ = c.mod.Close(context.Background())
		}
	}
}

// release gives back a reference taken by get.
func (cc *compileCache) release(c *compiled) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	c.refs--
	if c.refs == 0 && c.evicted {
		_ = c.mod.Close(context.Background())
	}
}

func (cc *compileCache) stats() wasmwiz.CacheStats {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return wasmwiz.CacheStats{
		Hits: cc.hits, Misses: cc.misses, DiskHits: cc.diskHits,
		CompileSeconds: cc.compileTime.Seconds(),
		Entries:        len(cc.entries), Bytes: cc.bytes,
	}
}

func (cc *compileCache) closeAll(ctx context.Context) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for _, c := range cc.entries {
		_ = c.mod.Close(ctx)
	}
	cc.entries = map[string]*compiled{}
	cc.lru.Init()
	cc.bytes = 0
	cc.owned = map[string]int64{}
}

// compile parses, checks and compiles one module, and says whether its
// compiled code came from the on-disk cache. Everything that makes a module
// unrunnable here is EINVALID.
func (e *Engine) compile(wasm []byte, sha string) (*compiled, bool, error) {
	h, err := parseHeader(wasm)
	if err != nil {
		return nil, false, err
	}
	if err := e.checkImportNames(h); err != nil {
		return nil, false, err
	}
	// Tables get the maximum the engine accounts for (account.go).
	code := rewriteTables(wasm, h)
	var diskPath string
	diskHit := false
	if e.disk != nil {
		diskPath = e.disk.path(code)
		diskHit = e.disk.has(diskPath)
	}
	mod, err := e.compileModule(code)
	if err != nil {
		return nil, false, wasmwiz.WrapError(wasmwiz.EINVALID, err, "invalid module: %v", err)
	}
	info, err := e.analyse(h, mod, wasm, sha)
	if err != nil {
		_ = mod.Close(context.Background())
		return nil, false, err
	}
	info.footprint = accountInstance(h)
	return &compiled{mod: mod, info: info, size: estimateCompiledSize(len(wasm)), diskPath: diskPath, touched: time.Now()}, diskHit, nil
}

// compileModule calls wazero, turning a panic into an error: wazero
// v1.12.0's validator indexes the type section with an unchecked index for
// some malformed modules (found by fuzzing), and a panic here would also
// leave the waiters of a compile hanging.
func (e *Engine) compileModule(wasm []byte) (mod wazero.CompiledModule, err error) {
	defer func() {
		if p := recover(); p != nil {
			e.log.Warn("wazero panicked compiling a module", "panic", p)
			mod, err = nil, fmt.Errorf("the validator failed on it: %v", p)
		}
	}()
	return e.runtime.CompileModule(context.Background(), wasm)
}
