package worker

import (
	"context"
	"errors"
	"os"
	"strings"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// The pool's wasmwiz.Engine methods: each checks what it can before a worker
// is involved, takes a worker (pool.go), has one exchange with it
// (exchange.go) and turns the answer into a result or an error.

// Run runs req in a worker. Results and errors are those of wasmwiz.Engine:
// guest outcomes, timeouts included, are Results. The guest's output reaches
// the pool as it is written, so a run whose worker is killed at the deadline
// (timeout) or dies from out-of-memory (memory_limit) still carries what the
// guest wrote before, bounded by Limits.MaxOutputBytes. Errors: EINVALID for a
// request without a wall-time limit and for what the engine refuses,
// ETOOLARGE for a module or stdin over its limit (the worker's engine
// checks; Executor.Execute has refused them before), EUNAVAILABLE when the
// pool is closing or the request ended (ctx) before the run did (its worker
// is killed; the Result returned with that error says what the run used
// until then), and
// EINTERNAL when the worker died during the run for a reason other than
// memory (a death from out-of-memory is the status memory_limit).
func (pl *Pool) Run(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
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
	sha := moduleSHA(req.SHA256, req.Wasm)
	p, err := pl.acquire(ctx, sha)
	if err != nil {
		return nil, err
	}
	clk := &runClock{guest: l.Timeout + pl.opts.KillGrace, compile: pl.opts.InspectTimeout, start: time.Now()}
	rq := &request{kind: msgRun, sha: sha, wasm: req.Wasm, load: req.LoadWasm, hint: copiedSize(len(req.Stdin)) + 256,
		deadline: clk.start.Add(clk.guest), out: newRunOutput(l.MaxOutputBytes), clk: clk,
		info: &wasmwiz.ModuleInfo{SHA256: sha, SizeBytes: int64(len(req.Wasm))}}
	if !p.mods.has(sha) {
		rq.deadline = rq.deadline.Add(clk.compile) // and reading the module, when it comes by digest
	}
	body := *req
	rq.encode = func(e *enc, wasm []byte) {
		body.Wasm = wasm
		encodeRun(e, sha, &body, wasm != nil)
	}
	kind, d, healthy, err := pl.exchange(ctx, p, rq)
	info, out := *rq.info, rq.out
	start := clk.start
	pl.runs.Add(1)
	if req.Function != "" {
		info.Entry = req.Function
	}
	var peak int64
	defer func() { pl.release(p, healthy, peak) }()
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		pl.timeouts.Add(1)
		res := &wasmwiz.Result{Status: wasmwiz.StatusTimeout, Duration: time.Since(start), Module: info}
		out.fill(res) // what the guest wrote before it was killed
		return res, nil
	case errors.Is(err, errWorkerOOM):
		res := &wasmwiz.Result{
			Status:   wasmwiz.StatusMemoryLimit,
			Trap:     "the worker process ran out of memory",
			Duration: time.Since(start),
			Module:   info,
		}
		out.fill(res)
		return res, nil
	case err != nil && ctx.Err() != nil:
		// The request ended (a client that went away) and the worker was
		// killed: the error, with what the run used until then, for its
		// usage record.
		res := &wasmwiz.Result{Duration: time.Since(start), Module: info}
		out.fill(res)
		return res, err
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
		peak = res.MemoryPeakBytes
		return res, nil
	case msgError:
		return nil, decodeError(d)
	}
	return nil, wasmwiz.Errorf(wasmwiz.EINTERNAL, "worker protocol: unexpected answer %q", kind)
}

// Inspect inspects a module in a worker, so that compiling untrusted code
// never happens in the server's process; the module stays with that worker
// for the runs that usually follow. Errors: those of wasmwiz.Engine.Inspect,
// EUNAVAILABLE when the pool is closing, ctx ended, or the inspection took
// longer than Options.InspectTimeout, EINVALID when the worker ran out of
// memory compiling the module, and EINTERNAL when it died otherwise.
func (pl *Pool) Inspect(ctx context.Context, wasm []byte, limits wasmwiz.Limits) (*wasmwiz.Inspection, error) {
	if limits.MaxModuleBytes > 0 && int64(len(wasm)) > limits.MaxModuleBytes {
		return nil, wasmwiz.SizeError("module", int64(len(wasm)), limits.MaxModuleBytes, "")
	}
	sha := moduleSHA("", wasm)
	p, err := pl.acquire(ctx, sha)
	if err != nil {
		return nil, err
	}
	kind, d, healthy, err := pl.exchange(ctx, p, &request{kind: msgInspect, sha: sha, wasm: wasm, hint: 64,
		deadline: time.Now().Add(pl.opts.InspectTimeout),
		encode:   func(e *enc, b []byte) { encodeInspect(e, sha, wasm, limits, b != nil) }})
	pl.inspections.Add(1)
	defer pl.release(p, healthy, 0)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "inspecting the module took longer than %s", pl.opts.InspectTimeout)
	case errors.Is(err, errWorkerOOM):
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "the module is too large to compile")
	case err != nil:
		return nil, err
	}
	switch kind {
	case msgInspection:
		return decodeInspection(d)
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
