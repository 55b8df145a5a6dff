package worker

import (
	"context"
	"errors"
	"os"
	"strings"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/runfiles"
)

// The pool's wasmwiz.Engine methods: each checks what it can before a worker
// is involved, takes a worker (pool.go), has one exchange with it
// (exchange.go) and turns the answer into a result or an error.

// Run runs req in a worker. Results and errors are those of wasmwiz.Engine:
// guest outcomes, timeouts included, are Results. Limits.Timeout covers
// compiling the module (when no worker has it compiled) and the guest: the
// result reports the two apart (CompileDuration, Duration). The guest's
// output reaches the pool as it is written, so a run whose worker is killed
// at the deadline (timeout) or dies from out-of-memory (memory_limit) still
// carries what the guest wrote before, bounded by Limits.MaxOutputBytes.
// Errors: EINVALID for a request without a wall-time limit, for bytes that
// do not open as a core module's (wasmwiz.CheckPreamble, before any wait)
// and for what the engine refuses; ETOOLARGE for a module or stdin over its
// limit (the worker's engine checks; Executor.Execute has refused them
// before) and for a module that did not compile within the wall time or
// the memory the request allows (remembered: compile.go); EUNAVAILABLE when
// the pool is closing, the request ended (ctx) before the run did (its
// worker is killed; the Result returned with that error says what the run
// used until then), no compile slot freed in time, or its worker was
// killed from outside the pool during the run (SIGKILL: these two with a
// RetryAfter hint); and EINTERNAL when the worker died during the run for a reason
// other than memory (a death from out-of-memory is the status
// memory_limit). A worker that had exited before the request reached it
// (killed while idle, a moment before) is passed over for another.
func (pl *Pool) Run(ctx context.Context, req *wasmwiz.RunRequest) (res *wasmwiz.Result, err error) {
	if req == nil {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "no run request")
	}
	l := req.Limits
	if l.Timeout <= 0 {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "a run needs a wall-time limit")
	}
	if len(req.Wasm) == 0 && (req.LoadWasm == nil || req.SHA256 == "") {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "no module to run")
	}
	// What is not a module is refused here, not after a wait for a compile
	// slot and a copy to a worker (a stored module was inspected when it
	// was stored).
	if len(req.Wasm) > 0 {
		if err := wasmwiz.CheckPreamble(req.Wasm); err != nil {
			return nil, err
		}
	}
	sha := moduleSHA(req.SHA256, req.Wasm)
	if err := pl.compiles.refused(sha, l.Timeout, compileDataBudget(l, len(req.Wasm))); err != nil {
		return nil, err
	}
	// A module compiled here before only loads (from a worker's memory or
	// the disk cache): its time and memory are the run's, not a verdict on
	// the module.
	known := pl.compiles.isKnown(sha)
	for tries := 1; ; tries++ {
		res, err = pl.runOn(ctx, req, sha, known)
		if !pl.retryGone(ctx, err, tries) {
			return res, err
		}
	}
}

// retryGone reports whether a request whose tries-th exchange ended in err
// goes to another worker: when its worker had exited before the request
// reached it (errWorkerGone), at most once per worker of the pool and one
// more, so that the workers killed together are passed over.
func (pl *Pool) retryGone(ctx context.Context, err error, tries int) bool {
	return errors.Is(err, errWorkerGone) && ctx.Err() == nil && tries <= pl.target
}

// runOn is one try of Run: a worker, and one exchange with it.
func (pl *Pool) runOn(ctx context.Context, req *wasmwiz.RunRequest, sha string, known bool) (res *wasmwiz.Result, err error) {
	l := req.Limits
	p, freeSlot, err := pl.slotAndWorker(ctx, sha)
	if err != nil {
		return nil, err
	}
	defer freeSlot()
	// The run's private directory, in the worker's own directory (the one
	// its Landlock domain lets it write): made before the run, read and
	// removed after it whatever happened, before the worker serves anyone
	// else (see below).
	runReq := req
	var tree *runfiles.Tree
	if req.Files != nil {
		p.useFiles(true)
		if tree, err = runfiles.Make(p.filesDir, req.Files); err != nil {
			p.useFiles(false)
			pl.release(p, true, 0)
			return nil, err
		}
		runReq = tree.Request(req)
	}
	needed := !p.mods.has(sha) // the worker must load or compile it
	clk := &runClock{start: time.Now(), compiling: needed, onStarted: freeSlot}
	rq := &request{kind: msgRun, sha: sha, wasm: req.Wasm, load: req.LoadWasm, hint: copiedSize(len(req.Stdin)) + 256,
		deadline: clk.start.Add(l.Timeout + pl.opts.KillGrace), out: newRunOutput(l.MaxOutputBytes), clk: clk,
		info: &wasmwiz.ModuleInfo{SHA256: sha, SizeBytes: int64(len(req.Wasm))}}
	rq.out.onOutput = req.OnOutput
	p.runSeq++
	rq.seq = p.runSeq
	body := *runReq
	owner := wasmwiz.OwnerFromContext(ctx)
	rq.encode = func(e *enc, wasm []byte) {
		body.Wasm = wasm
		encodeRun(e, sha, &body, wasm != nil)
		encodeRunOutput(e, rq.seq, req.OnOutput != nil)
		encodeOwner(e, owner)
	}
	kind, d, healthy, err := pl.exchange(ctx, p, rq)
	info, out := *rq.info, rq.out
	pl.runs.Add(1)
	if req.Function != "" {
		info.Entry = req.Function
	}
	var peak int64
	defer func() { pl.release(p, healthy, peak) }()
	if tree != nil {
		defer func() { // before the release above
			if res != nil {
				files, cerr := tree.Collect(l)
				if cerr != nil && err == nil {
					res, err = nil, cerr
				} else {
					res.Files = files
				}
			}
			if rerr := tree.Remove(); rerr != nil {
				pl.log.Error("removing a run's directory", "dir", tree.Dir, "err", rerr)
			}
			p.useFiles(false)
		}()
	}
	switch {
	case clk.compiling && !known:
		// The worker was still compiling a module new here: the module, not
		// the guest, took the wall time or the memory.
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			pl.compiles.remember(sha, l.Timeout, 0)
			return nil, compileTooLong(l.Timeout)
		case errors.Is(err, errWorkerOOM):
			budget := compileDataBudget(l, len(rq.wasm))
			pl.compiles.remember(sha, 0, budget)
			return nil, compileTooBig(budget)
		}
	case clk.compiling && (errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, errWorkerOOM)):
		// Known, and still loading, or compiling afresh what the disk cache
		// evicted: no verdict, but its next request takes a slot.
		pl.compiles.forget(sha)
	case !clk.compiling && (err == nil || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, errWorkerOOM)):
		pl.compiles.compiled(sha)
	}
	// A run that ended without the worker's answer: its times as the pool
	// saw them, and what the guest wrote before.
	ended := func(status wasmwiz.Status, trap string) *wasmwiz.Result {
		res := &wasmwiz.Result{Status: status, Trap: trap, Module: info}
		if clk.compiling { // the module still compiling or loading: the guest never ran
			res.CompileDuration = time.Since(clk.start)
		} else {
			res.Duration, res.CompileDuration = time.Since(clk.startedAt()), clk.compileTook()
		}
		res.CPUTime = p.cpuSinceAnswer()
		res.MemoryPeakBytes = rq.peak
		out.fill(res)
		return res
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		pl.timeouts.Add(1)
		return ended(wasmwiz.StatusTimeout, ""), nil
	case errors.Is(err, errWorkerOOM):
		return ended(wasmwiz.StatusMemoryLimit, "the worker process ran out of memory"), nil
	case err != nil && ctx.Err() != nil:
		// The request ended (a client that went away) and the worker was
		// killed: the error, with what the run used until then, for its
		// usage record.
		return ended("", ""), err
	case err != nil:
		return nil, err
	}
	switch kind {
	case msgResult:
		res := decodeResult(d)
		if err := d.done(); err != nil {
			return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "reading the worker's answer")
		}
		out.fill(res)
		if res.Module.SHA256 == "" {
			res.Module = info
		}
		if known && needed && !res.CompileCached {
			// Known, but the worker compiled it afresh: the disk cache
			// evicted it. Its next request takes a compile slot.
			pl.compiles.forget(sha)
		}
		peak = res.MemoryPeakBytes
		return res, nil
	case msgError:
		return nil, decodeError(d)
	}
	return nil, wasmwiz.Errorf(wasmwiz.EINTERNAL, "worker protocol: unexpected answer %q", kind)
}

// Inspect inspects a module in a worker, so that compiling untrusted code
// never happens in the server's process; the module stays with that worker
// for the runs that usually follow. The compile is bounded like a run's:
// by limits.Timeout (Options.InspectTimeout when zero) and the memory the
// limits allow, and it needs a compile slot unless the module is known
// compiled (compile.go). Errors: those of wasmwiz.Engine.Inspect;
// ETOOLARGE for a module that did not compile within those bounds
// (remembered); EUNAVAILABLE when the pool is closing, ctx ended, no
// compile slot freed in time, or a module compiled before did not load in
// time; EINTERNAL when the worker died otherwise.
func (pl *Pool) Inspect(ctx context.Context, wasm []byte, limits wasmwiz.Limits) (*wasmwiz.Inspection, error) {
	if limits.MaxModuleBytes > 0 && int64(len(wasm)) > limits.MaxModuleBytes {
		return nil, wasmwiz.SizeError("module", int64(len(wasm)), limits.MaxModuleBytes, "")
	}
	if err := wasmwiz.CheckPreamble(wasm); err != nil {
		return nil, err // as in Run
	}
	sha := moduleSHA("", wasm)
	timeout := limits.Timeout
	if timeout <= 0 {
		timeout = pl.opts.InspectTimeout
	}
	budget := compileDataBudget(limits, len(wasm))
	if err := pl.compiles.refused(sha, timeout, budget); err != nil {
		return nil, err
	}
	known := pl.compiles.isKnown(sha) // it only loads: no verdict on it (see Run)
	for tries := 1; ; tries++ {
		in, err := pl.inspectOn(ctx, wasm, limits, sha, timeout, budget, known)
		if !pl.retryGone(ctx, err, tries) {
			return in, err
		}
	}
}

// inspectOn is one try of Inspect: a worker, and one exchange with it.
func (pl *Pool) inspectOn(ctx context.Context, wasm []byte, limits wasmwiz.Limits, sha string, timeout time.Duration, budget int64, known bool) (*wasmwiz.Inspection, error) {
	owner := wasmwiz.OwnerFromContext(ctx)
	p, freeSlot, err := pl.slotAndWorker(ctx, sha)
	if err != nil {
		return nil, err
	}
	defer freeSlot()
	kind, d, healthy, err := pl.exchange(ctx, p, &request{kind: msgInspect, sha: sha, wasm: wasm, hint: 64,
		deadline: time.Now().Add(timeout),
		encode: func(e *enc, b []byte) {
			encodeInspect(e, sha, wasm, limits, b != nil)
			encodeOwner(e, owner)
		}})
	pl.inspections.Add(1)
	defer pl.release(p, healthy, 0)
	switch {
	case known && (errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, errWorkerOOM)):
		pl.compiles.forget(sha) // evicted from the disk cache, maybe: the retry takes a slot
		return nil, &wasmwiz.Error{Code: wasmwiz.EUNAVAILABLE, Message: "the server could not load the compiled module in time; retry later",
			Err: errors.Join(err, &wasmwiz.RetryAfterError{After: time.Second})}
	case errors.Is(err, os.ErrDeadlineExceeded):
		pl.compiles.remember(sha, timeout, 0)
		return nil, compileTooLong(timeout)
	case errors.Is(err, errWorkerOOM):
		pl.compiles.remember(sha, 0, budget)
		return nil, compileTooBig(budget)
	case err != nil:
		return nil, err
	}
	switch kind {
	case msgInspection:
		in, err := decodeInspection(d)
		if err == nil {
			pl.compiles.compiled(sha)
		}
		return in, err
	case msgError:
		return nil, decodeError(d)
	}
	return nil, wasmwiz.Errorf(wasmwiz.EINTERNAL, "worker protocol: unexpected answer %q", kind)
}

// copiedSize is how much of a byte string of n bytes a frame buffer holds:
// large ones are referenced, not copied (enc.bytes).
func copiedSize(n int) int {
	if n >= refBytes {
		return 0
	}
	return n
}

// moduleSHA returns the request's digest when it has one (trusted: the
// server computed it once), else the digest of wasm.
func moduleSHA(trusted string, wasm []byte) string {
	if trusted != "" {
		return strings.ToLower(trusted)
	}
	return wasmwiz.ModuleDigest(wasm)
}
