// Package engine runs WebAssembly modules on wazero with limits that hold:
// it inspects and refuses modules before running them, runs WASI preview1
// commands and plain numeric functions in fresh anonymous instances, caps
// wall time, linear memory and output per run, and caches compiled code by
// content hash in memory (LRU by bytes) and optionally on disk.
//
// The engine runs guests in its own process. That is right for `wasmwiz run`
// and inside the worker processes of the server; see docs/RATIONALE.md
// ("Engine") for why the server must not run guests in its own process.
package engine

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/wasifs"
)

// Options configure an Engine. The zero value is valid.
type Options struct {
	// CacheDir is an on-disk compiled-code cache that processes share, so
	// that a restart or a new worker does not recompile; "" means none.
	CacheDir string
	// CacheMaxBytes bounds the files in CacheDir: past it the least recently
	// used are deleted (diskcache.go); 0 means no bound.
	CacheMaxBytes int64
	// MemoryCacheBytes bounds the compiled modules kept in memory, by their
	// estimated size; 0 means 256 MiB.
	MemoryCacheBytes int64
	// NoGuestInterrupt turns off wazero's in-guest cancellation checks
	// (WithCloseOnContextDone). With false (the default) a run past its
	// deadline is stopped from inside the process, which works for loops but
	// not for loop-free recursion. Worker processes set true: they are killed
	// at the deadline instead, which stops any guest and removes the cost of
	// the checks. Host sleeps honour the deadline either way.
	NoGuestInterrupt bool
	// Logger receives compile and cache events; nil discards them.
	Logger *slog.Logger
	// FilesDir is where the private directory of a run with files
	// (RunRequest.Files) is made; "" means os.TempDir().
	FilesDir string
}

// NewWorker starts the engine of a guest-running worker process (`wasmwiz
// worker`, and the worker tests' processes): with NoGuestInterrupt, since
// the pool stops a run past its deadline by killing its worker, which stops
// any guest and spares every guest the cost of the checks.
func NewWorker(ctx context.Context, cacheDir string, cacheMaxBytes, memoryCacheBytes int64, logger *slog.Logger) (*Engine, error) {
	return New(ctx, Options{CacheDir: cacheDir, CacheMaxBytes: cacheMaxBytes, MemoryCacheBytes: memoryCacheBytes,
		NoGuestInterrupt: true, Logger: logger})
}

// Engine runs WebAssembly modules. It is safe for concurrent use; every run
// gets a fresh anonymous instance. It implements wasmwiz.Engine.
type Engine struct {
	opts    Options
	log     *slog.Logger
	runtime wazero.Runtime
	ccache  wazero.CompilationCache // nil without CacheDir
	disk    *diskCache              // nil without CacheDir
	cache   *compileCache

	// wasiFuncs are the host functions a guest may import, by module and
	// name: wasi_snapshot_preview1 and wasi_unstable mapped onto it.
	wasiFuncs map[string]map[string]api.FunctionDefinition

	mu       sync.Mutex
	closed   bool
	running  sync.WaitGroup
	active   atomic.Int64 // runs and inspections in progress
	freeOnce sync.Once
}

var _ wasmwiz.Engine = (*Engine)(nil)

// WASI module names the engine provides. wasi_unstable is served by the
// same functions as wasi_snapshot_preview1, as wazero does for legacy code.
const (
	wasiPreview1 = wasi_snapshot_preview1.ModuleName
	wasiUnstable = "wasi_unstable"
)

// newRuntimeMu serialises wazero.NewRuntimeWithConfig and
// wazero.NewCompilationCacheWithDir: in v1.12.0 both fill a package-level
// version string lazily without a lock, a data race when two engines start
// at once (seen under -race).
var newRuntimeMu sync.Mutex

// NewRuntime is wazero.NewRuntimeWithConfig under newRuntimeMu, for a
// process that makes a bare wazero runtime beside engines (wasmwiz bench).
func NewRuntime(ctx context.Context, cfg wazero.RuntimeConfig) wazero.Runtime {
	newRuntimeMu.Lock()
	defer newRuntimeMu.Unlock()
	return wazero.NewRuntimeWithConfig(ctx, cfg)
}

// New starts an engine. It returns EINTERNAL when the runtime or the cache
// directory cannot be set up.
func New(ctx context.Context, opts Options) (*Engine, error) {
	if opts.MemoryCacheBytes <= 0 {
		opts.MemoryCacheBytes = wasmwiz.DefaultCompileCacheBytes
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := wazero.NewRuntimeConfigCompiler().
		WithCloseOnContextDone(!opts.NoGuestInterrupt).
		WithCoreFeatures(api.CoreFeaturesV2)
	e := &Engine{opts: opts, log: log}
	if opts.CacheDir != "" {
		newRuntimeMu.Lock()
		cc, err := wazero.NewCompilationCacheWithDir(opts.CacheDir)
		newRuntimeMu.Unlock()
		if err != nil {
			return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "compilation cache directory %s", opts.CacheDir)
		}
		e.ccache = cc
		e.disk = newDiskCache(opts.CacheDir, opts.CacheMaxBytes, !opts.NoGuestInterrupt, log)
		e.disk.evictSoon() // a bound lowered since the last start
		cfg = cfg.WithCompilationCache(cc)
	}
	newRuntimeMu.Lock()
	e.runtime = wazero.NewRuntimeWithConfig(ctx, cfg)
	newRuntimeMu.Unlock()
	e.cache = newCompileCache(e, opts.MemoryCacheBytes)
	e.wasiFuncs = map[string]map[string]api.FunctionDefinition{}
	for _, name := range []string{wasiPreview1, wasiUnstable} {
		b := e.runtime.NewHostModuleBuilder(name)
		wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(b)
		wasifs.Export(b, name == wasiUnstable) // every descriptor function: files, stdio, poll_oneoff, sockets
		cm, err := b.Compile(ctx)
		if err == nil {
			e.wasiFuncs[name] = cm.ExportedFunctions()
			_, err = e.runtime.InstantiateModule(ctx, cm, wazero.NewModuleConfig())
		}
		if err != nil {
			_ = e.runtime.Close(ctx)
			return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "instantiating %s", name)
		}
	}
	return e, nil
}

// CacheStats returns the compiled-code cache counters.
func (e *Engine) CacheStats() wasmwiz.CacheStats {
	st := e.cache.stats()
	if e.disk != nil {
		st.DiskEvictions = e.disk.evicted.Load()
	}
	return st
}

// Close waits for running guests, then frees every compiled module and the
// runtime. Runs after Close answer EUNAVAILABLE. When ctx ends first (a
// guest that never stops, with NoGuestInterrupt), Close returns EUNAVAILABLE
// and frees nothing, since freeing code a guest still runs would crash the
// process; a later Close may try again.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	idle := make(chan struct{})
	go func() {
		e.running.Wait()
		close(idle)
	}()
	select {
	case <-idle:
	case <-ctx.Done():
		return wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, ctx.Err(), "guests still running at close")
	}
	var err error
	e.freeOnce.Do(func() {
		e.cache.closeAll(ctx)
		err = e.runtime.Close(ctx)
		if e.ccache != nil {
			if cerr := e.ccache.Close(ctx); err == nil {
				err = cerr
			}
		}
	})
	return err
}

// begin registers an operation, or refuses it when the engine is closed.
func (e *Engine) begin() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "the engine is shutting down")
	}
	e.running.Add(1)
	e.active.Add(1)
	return nil
}

// end finishes an operation registered by begin.
func (e *Engine) end() {
	e.active.Add(-1)
	e.running.Done()
}
