// Package worker runs guests for the server in a pool of worker processes,
// one run per process at a time, so that the wall-time limit always holds:
// a run past its deadline ends by killing its worker, which stops any guest
// (wazero's in-guest cancellation misses loop-free recursion), and a guest
// that runs compiled code without returning stalls only its own process's
// garbage collector, never the server's. See docs/RATIONALE.md, "Worker
// processes".
//
// The parent side is Pool, a wasmwiz.Engine. The child side is ServeProcess,
// the body of the hidden `wasmwiz worker` subcommand. The server wires them:
//
//	exe, _ := os.Executable()
//	pool, err := worker.New(ctx, worker.Options{
//		Size: cfg.Workers, Spares: 1, Command: []string{exe, "worker"},
//		CacheDir: cfg.CacheDir, MemoryCacheBytes: cfg.CompileCacheBytes, Logger: log,
//	})
//	...
//	defer pool.Close(shutdownCtx) // drains runs in flight, then kills and reaps
//
// Pool.Stats and Pool.CacheStats feed the metrics.
package worker

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// Options configure a Pool.
type Options struct {
	// Size is the number of runs (and inspections) at a time; 0 means one per
	// CPU.
	Size int
	// Spares are worker processes started beyond Size and kept warm, so that
	// a worker killed at a deadline is replaced at once; 0 means none.
	Spares int
	// Command starts a worker: argv whose program calls ServeProcess. The
	// server passes its own executable and "worker"; tests re-execute the
	// test binary.
	Command []string
	// Env is the whole environment of a worker; nothing is inherited.
	Env []string
	// CacheDir is the on-disk compiled-code cache the workers share; ""
	// means none (every worker compiles every module it meets).
	CacheDir string
	// CacheMaxBytes bounds CacheDir's files: the workers delete the least
	// recently used past it, one at a time (internal/engine); 0: no bound.
	CacheMaxBytes int64
	// MemoryCacheBytes bounds each worker's in-memory compiled-code cache; 0
	// leaves the engine's default.
	MemoryCacheBytes int64
	// ModuleCacheBytes bounds the module bytes each worker keeps so that the
	// pool need not resend them; 0 means 64 MiB.
	ModuleCacheBytes int64
	// KillGrace is how long past Limits.Timeout a run may take before its
	// worker is killed, so that a guest blocked in a host sleep can still
	// answer "timeout" by itself; 0 means 20 ms.
	KillGrace time.Duration
	// StartTimeout bounds the start of one worker up to its hello; 0 means 30 s.
	StartTimeout time.Duration
	// InspectTimeout bounds the compile of an inspection whose limits set no
	// wall time; 0 means 60 s. (A run's compile is bounded by its wall time,
	// and so is an inspection's when its limits set one.)
	InspectTimeout time.Duration
	// CompileWait is how long a request that must compile waits for one of
	// the Size-1 compile slots before it is refused EUNAVAILABLE (compile.go);
	// 0 means DefaultCompileWait.
	CompileWait time.Duration
	// MaxIdleRSSBytes: a worker whose resident memory is above it after a run
	// that used more than 16 MiB of linear memory is replaced. 0 means
	// MemoryCacheBytes (or 256 MiB) + ModuleCacheBytes + 128 MiB; -1 turns
	// the check off.
	MaxIdleRSSBytes int64
	// WorkerLogLevel is the level of the workers' own logs, which the pool
	// forwards to Logger line by line.
	WorkerLogLevel slog.Level
	// Logger receives worker starts, crashes and their forwarded stderr; nil
	// discards them.
	Logger *slog.Logger
	// FilesDir is where the pool makes its private directory, with one
	// directory in it per worker for its runs' files; "" means os.TempDir().
	// New removes what pools of processes that are gone left there
	// (filesroot.go).
	FilesDir string
	// NoLandlock starts workers without their Landlock domain, which a
	// kernel without Landlock ABI 2 lacks anyway (with a warning). The domain
	// lets a worker execute Command[0] only: a Command that is a wrapper
	// starting another program needs it.
	NoLandlock bool
}

// Stats are the pool's counters, for metrics.
type Stats struct {
	Size     int // runs at a time
	Workers  int // live worker processes
	Busy     int // workers running a request
	Idle     int // workers ready for one
	Starting int // workers being started

	CompileWaiting int // requests waiting for a compile slot

	Runs        uint64 // runs answered (any status, or a caller's error)
	Inspections uint64 // inspections answered
	Timeouts    uint64 // runs ended by killing their worker at the deadline
	Kills       uint64 // workers killed: deadlines, cancelled requests, broken protocol, memory
	Retires     uint64 // workers replaced at their own request, their memory mappings past their allowance
	Crashes     uint64 // workers that died on their own
	Restarts    uint64 // workers started to replace one that ended
	StartFails  uint64 // worker starts that failed
	ModuleSends uint64 // requests that carried the module's bytes
	ModuleHits  uint64 // requests routed to a worker that already held the module
}

// Pool runs guests in worker processes. It implements wasmwiz.Engine and is
// safe for concurrent use.
type Pool struct {
	opts   Options
	log    *slog.Logger
	cfg    childConfig
	target int // Size + Spares

	sem      chan struct{} // one token per run at a time
	compiles *compiles     // compile slots, modules known compiled, verdicts (compile.go)
	closing  chan struct{} // closed by Close
	ctx      context.Context
	cancel   context.CancelFunc

	inflight sync.WaitGroup // acquired workers
	spawning sync.WaitGroup // background starts
	children sync.WaitGroup // started processes until reaped

	mu       sync.Mutex
	closed   bool
	procs    map[*proc]struct{} // live processes
	idle     []*proc
	starting int
	changed  chan struct{}      // closed and replaced when a worker becomes idle or the pool closes
	gone     wasmwiz.CacheStats // counters of workers that ended

	landlock  *landlock // the workers' domain; nil: none
	filesRoot string    // the pool's private directory: one directory per worker
	filesLock *os.File  // holds filesRoot's lock (filesroot.go)
	spawned   atomic.Uint64

	runs, inspections, timeouts, kills, crashes, restarts, startFails, moduleSends, moduleHits, retires atomic.Uint64
	// outputFrames counts output frames received: output that did not go
	// through a worker's output region (region.go).
	outputFrames atomic.Uint64
}

var _ wasmwiz.Engine = (*Pool)(nil)

// Defaults for Options' zero values.
const (
	DefaultModuleCacheBytes = 64 * wasmwiz.MiB
	DefaultKillGrace        = 20 * time.Millisecond
	DefaultStartTimeout     = 30 * time.Second
	DefaultInspectTimeout   = 60 * time.Second
	// memoryOverhead is what a worker may hold beyond a run's memory cap and
	// its caches before its Go memory limit makes the collector work harder.
	memoryOverhead = 64 * wasmwiz.MiB
)

// New starts Size+Spares workers and waits until each has started its
// engine. It returns EINVALID for unusable options and EINTERNAL when a
// worker cannot start.
func New(ctx context.Context, opts Options) (*Pool, error) {
	if len(opts.Command) == 0 {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "worker pool: no command to start a worker")
	}
	if opts.Size <= 0 {
		opts.Size = runtime.NumCPU()
	}
	if opts.Spares < 0 {
		opts.Spares = 0
	}
	if opts.ModuleCacheBytes <= 0 {
		opts.ModuleCacheBytes = DefaultModuleCacheBytes
	}
	if opts.KillGrace <= 0 {
		opts.KillGrace = DefaultKillGrace
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.InspectTimeout <= 0 {
		opts.InspectTimeout = DefaultInspectTimeout
	}
	if opts.CompileWait <= 0 {
		opts.CompileWait = DefaultCompileWait
	}
	if opts.MaxIdleRSSBytes == 0 {
		mc := opts.MemoryCacheBytes
		if mc <= 0 {
			mc = wasmwiz.DefaultCompileCacheBytes
		}
		opts.MaxIdleRSSBytes = mc + opts.ModuleCacheBytes + 128*wasmwiz.MiB
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	pl := &Pool{
		opts:     opts,
		log:      log,
		target:   opts.Size + opts.Spares,
		sem:      make(chan struct{}, opts.Size),
		compiles: newCompiles(opts.Size, opts.CompileWait),
		closing:  make(chan struct{}),
		ctx:      pctx,
		cancel:   cancel,
		procs:    map[*proc]struct{}{},
		changed:  make(chan struct{}),
		cfg: childConfig{
			LimitsSchema:     wasmwiz.LimitsSchema(),
			CacheDir:         opts.CacheDir,
			CacheMaxBytes:    opts.CacheMaxBytes,
			MemoryCacheBytes: opts.MemoryCacheBytes,
			ModuleCacheBytes: opts.ModuleCacheBytes,
			MemoryOverhead:   memoryOverhead,
			LogLevel:         int64(opts.WorkerLogLevel),
		},
	}

	var err error
	if pl.filesRoot, pl.filesLock, err = makeFilesRoot(opts.FilesDir, log); err != nil {
		cancel()
		return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "the workers' files directory: %v", err)
	}
	if opts.CacheDir != "" {
		// Made here, not by the first worker: a domain can only grant what
		// exists when it is made.
		if err := os.MkdirAll(opts.CacheDir, 0o700); err != nil {
			cancel()
			pl.removeFilesRoot()
			return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "compilation cache directory %s: %v", opts.CacheDir, err)
		}
	}
	if !opts.NoLandlock {
		if pl.landlock, err = newLandlock(opts.Command[0], opts.CacheDir); err != nil {
			log.Warn("workers run without Landlock: they can open any file the server's user can", "err", err)
		}
	}

	// Start the first workers together; any failure fails New, so that a
	// broken command or cache directory is found at startup.
	started := make([]*proc, pl.target)
	errs := make([]error, pl.target)
	var wg sync.WaitGroup
	for i := range pl.target {
		wg.Go(func() { started[i], errs[i] = pl.startProc(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		pl.mu.Lock()
		pl.closed = true
		for _, p := range started {
			if p != nil {
				p.state = stateGone
				p.kill()
			}
		}
		pl.mu.Unlock()
		cancel()
		pl.children.Wait()
		pl.removeFilesRoot()
		return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "starting worker processes")
	}
	pl.mu.Lock()
	for _, p := range started {
		if p.state != stateGone { // it may have died already
			pl.procs[p] = struct{}{}
			p.state = stateIdle
			pl.idle = append(pl.idle, p)
		}
	}
	pl.maybeSpawnLocked()
	pl.mu.Unlock()
	return pl, nil
}

// removeFilesRoot removes the pool's private directory, then lets go of
// its lock.
func (pl *Pool) removeFilesRoot() {
	_ = os.RemoveAll(pl.filesRoot)
	_ = pl.filesLock.Close()
}

func (pl *Pool) startProc(ctx context.Context) (*proc, error) {
	dir := filepath.Join(pl.filesRoot, "w"+strconv.FormatUint(pl.spawned.Add(1), 10))
	return startProc(ctx, pl.opts.Command, pl.opts.Env, pl.cfg, pl.opts.StartTimeout, pl.log, &pl.children, pl.onExit, pl.landlock, dir)
}

// errClosed answers requests once Close has begun.
var errClosed = wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "the server is shutting down")

func (pl *Pool) isClosing() bool {
	select {
	case <-pl.closing:
		return true
	default:
		return false
	}
}

// slotAndWorker waits for sha's compile slot (compiles.slot), then takes
// a worker (acquire); freeSlot gives the slot back, which the caller does
// when the worker is done with sha.
func (pl *Pool) slotAndWorker(ctx context.Context, sha string) (p *proc, freeSlot func(), err error) {
	freeSlot, err = pl.compiles.slot(ctx, sha)
	if err != nil {
		return nil, nil, err
	}
	if p, err = pl.acquire(ctx, sha); err != nil {
		freeSlot()
		return nil, nil, err
	}
	return p, freeSlot, nil
}

// acquire takes a run token and an idle worker, preferring one that holds
// the module sha.
func (pl *Pool) acquire(ctx context.Context, sha string) (*proc, error) {
	if err := ctx.Err(); err != nil {
		return nil, wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, context.Cause(ctx), "the request ended before it reached a worker")
	}
	select {
	case pl.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, context.Cause(ctx), "the request ended while waiting for a worker")
	case <-pl.closing:
		return nil, errClosed
	}
	for {
		pl.mu.Lock()
		if pl.closed {
			pl.mu.Unlock()
			<-pl.sem
			return nil, errClosed
		}
		if p := pl.takeIdleLocked(sha); p != nil {
			pl.inflight.Add(1)
			pl.mu.Unlock()
			return p, nil
		}
		ch := pl.changed
		pl.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			<-pl.sem
			return nil, wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, context.Cause(ctx), "the request ended while waiting for a worker")
		}
	}
}

// takeIdleLocked removes and returns the most recently used idle worker that
// holds sha, else the most recently used idle worker, else nil.
func (pl *Pool) takeIdleLocked(sha string) *proc {
	if len(pl.idle) == 0 {
		return nil
	}
	i := len(pl.idle) - 1
	for j := len(pl.idle) - 1; j >= 0; j-- {
		if pl.idle[j].mods.has(sha) {
			i = j
			break
		}
	}
	p := pl.idle[i]
	pl.idle = append(pl.idle[:i], pl.idle[i+1:]...)
	p.state = stateBusy
	return p
}

// release gives p back after a request: idle when healthy, else it is on its
// way out (killed and reaped, or being retired).
// peak is the run's peak linear memory: after a big run, a worker whose
// resident memory stays above Options.MaxIdleRSSBytes is killed and replaced.
func (pl *Pool) release(p *proc, healthy bool, peak int64) {
	if healthy && pl.opts.MaxIdleRSSBytes > 0 && peak > bigRunBytes {
		if rss := p.rssBytes(); rss > pl.opts.MaxIdleRSSBytes {
			pl.log.Info("retiring a worker that holds too much memory", "pid", p.pid, "rss_bytes", rss)
			p.kill()
			<-p.exited
			pl.kills.Add(1)
			healthy = false
		}
	}
	pl.mu.Lock()
	switch {
	case p.state == stateGone:
	case !healthy:
		// onExit will see it go.
	case pl.closed:
		p.state = stateGone
		p.stdin.Close() // EOF: the worker exits by itself
	case p.retire:
		// The worker asked to go (memlimit.go); onExit replaces it.
		pl.log.Info("retiring a worker whose memory mappings outgrew its allowance", "pid", p.pid)
		pl.retires.Add(1)
		p.state = stateGone
		p.stdin.Close()
	default:
		p.state = stateIdle
		pl.idle = append(pl.idle, p)
		pl.broadcastLocked()
	}
	pl.inflight.Done()
	pl.mu.Unlock()
	<-pl.sem
}

func (pl *Pool) broadcastLocked() {
	close(pl.changed)
	pl.changed = make(chan struct{})
}

// onExit is called once per started process after it is reaped.
func (pl *Pool) onExit(p *proc) {
	pl.mu.Lock()
	_, live := pl.procs[p]
	delete(pl.procs, p)
	if p.state == stateIdle {
		for i, q := range pl.idle {
			if q == p {
				pl.idle = append(pl.idle[:i], pl.idle[i+1:]...)
				break
			}
		}
		if !pl.closed {
			pl.crashes.Add(1)
			pl.log.Warn("idle worker died", "worker", p.crashReport())
		}
	}
	p.state = stateGone
	pl.gone.Hits += p.cacheStats.Hits
	pl.gone.Misses += p.cacheStats.Misses
	pl.gone.DiskHits += p.cacheStats.DiskHits
	pl.gone.CompileSeconds += p.cacheStats.CompileSeconds
	pl.gone.DiskEvictions += p.cacheStats.DiskEvictions
	if live {
		pl.maybeSpawnLocked()
	}
	pl.mu.Unlock()
	p.close()
}

// maybeSpawnLocked starts workers in the background until live and starting
// workers reach Size+Spares.
func (pl *Pool) maybeSpawnLocked() {
	for !pl.closed && len(pl.procs)+pl.starting < pl.target {
		pl.starting++
		pl.spawning.Add(1)
		go pl.spawn()
	}
}

// spawn starts one replacement worker, retrying with backoff until it starts
// or the pool closes.
func (pl *Pool) spawn() {
	defer pl.spawning.Done()
	backoff := 50 * time.Millisecond
	for {
		p, err := pl.startProc(pl.ctx)
		pl.mu.Lock()
		if err == nil {
			pl.starting--
			if pl.closed || p.state == stateGone {
				pl.mu.Unlock()
				p.kill()
				return
			}
			pl.restarts.Add(1)
			pl.procs[p] = struct{}{}
			p.state = stateIdle
			pl.idle = append(pl.idle, p)
			pl.broadcastLocked()
			pl.mu.Unlock()
			return
		}
		if pl.closed {
			pl.starting--
			pl.mu.Unlock()
			return
		}
		pl.mu.Unlock()
		pl.startFails.Add(1)
		pl.log.Error("starting a worker failed", "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-pl.ctx.Done():
			pl.mu.Lock()
			pl.starting--
			pl.mu.Unlock()
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Stats returns the pool's counters.
func (pl *Pool) Stats() Stats {
	pl.mu.Lock()
	s := Stats{
		Size:     pl.opts.Size,
		Workers:  len(pl.procs),
		Idle:     len(pl.idle),
		Starting: pl.starting,
	}
	for p := range pl.procs {
		if p.state == stateBusy {
			s.Busy++
		}
	}
	pl.mu.Unlock()
	s.Runs = pl.runs.Load()
	s.Inspections = pl.inspections.Load()
	s.Timeouts = pl.timeouts.Load()
	s.Kills = pl.kills.Load()
	s.Crashes = pl.crashes.Load()
	s.Restarts = pl.restarts.Load()
	s.StartFails = pl.startFails.Load()
	s.ModuleSends = pl.moduleSends.Load()
	s.ModuleHits = pl.moduleHits.Load()
	s.Retires = pl.retires.Load()
	s.CompileWaiting = pl.compiles.waitingLen()
	return s
}

// CacheStats returns the compiled-code cache figures of the workers, as the
// workers last reported them: counters summed over every worker the pool
// ran (so they never go down), entries and bytes over the live ones.
func (pl *Pool) CacheStats() wasmwiz.CacheStats {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	st := pl.gone
	for p := range pl.procs {
		c := p.cacheStats
		st.Hits += c.Hits
		st.Misses += c.Misses
		st.DiskHits += c.DiskHits
		st.CompileSeconds += c.CompileSeconds
		st.DiskEvictions += c.DiskEvictions
		st.Entries += c.Entries
		st.Bytes += c.Bytes
	}
	return st
}

// PIDs returns the process ids of the live workers, for tests and
// diagnostics.
func (pl *Pool) PIDs() []int {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pids := make([]int, 0, len(pl.procs))
	for p := range pl.procs {
		pids = append(pids, p.pid)
	}
	return pids
}

// Close stops accepting requests (they answer EUNAVAILABLE), lets the runs
// in flight finish until ctx ends, then kills the workers that remain and
// reaps every one. It returns ctx's error when it had to kill runs.
func (pl *Pool) Close(ctx context.Context) error {
	pl.mu.Lock()
	if pl.closed {
		pl.mu.Unlock()
		pl.children.Wait()
		return nil
	}
	pl.closed = true
	close(pl.closing)
	pl.broadcastLocked()
	for _, p := range pl.idle {
		p.state = stateGone
		p.stdin.Close() // EOF: the worker exits by itself
	}
	pl.idle = nil
	pl.mu.Unlock()
	pl.cancel() // no more replacements
	pl.spawning.Wait()

	var err error
	done := make(chan struct{})
	go func() {
		pl.inflight.Wait()
		pl.children.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		pl.mu.Lock()
		for p := range pl.procs {
			p.kill()
		}
		pl.mu.Unlock()
		<-done
	}
	pl.removeFilesRoot()
	return err
}
