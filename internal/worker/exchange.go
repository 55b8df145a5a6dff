package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// One exchange with a worker: a request out, then the worker's frames back
// (output, stats, started) until its answer, under a deadline that kills the
// worker when it passes. The pool (pool.go) decides which worker; the
// requests (request.go) decide what to send and what the answer means.

// errWorkerOOM is an exchange ending in the worker's death from out-of-memory.
var errWorkerOOM = errors.New("worker ran out of memory")

// errWorkerGone ends an exchange whose worker had exited before a byte of
// the request reached it (killed or crashed while idle, and handed out
// before the pool reaped it): nothing of the request ran, so the pool hands
// it to another worker. Returned to the caller only when that happened
// more often than the pool has workers.
var errWorkerGone = &wasmwiz.Error{Code: wasmwiz.EUNAVAILABLE,
	Message: "the worker process taken for this request had exited before the request reached it; retry in a second",
	Err:     &wasmwiz.RetryAfterError{After: time.Second}}

// runClock follows a request's compile and guest. The wall time covers
// both (one deadline from the moment the request reaches its worker); the
// guest's Duration counts from the worker's "started" frame, sent when it
// has compiled a module it did not hold, and the compile is what came
// before. A worker holding the module starts the guest at once.
type runClock struct {
	start     time.Time // the request reached its worker
	guest     time.Time // the guest started; zero while compiling
	compiling bool      // the worker is compiling the module
	onStarted func()    // called once the compile is done (frees the compile slot); may be nil
}

// startedAt returns when the guest started (the request's start when the
// worker held the module).
func (c *runClock) startedAt() time.Time {
	if c.guest.IsZero() {
		return c.start
	}
	return c.guest
}

// compileTook returns how long the worker compiled, 0 when it held the module.
func (c *runClock) compileTook() time.Duration {
	if c.guest.IsZero() {
		return 0
	}
	return c.guest.Sub(c.start)
}

// request is one request to a worker, and what the pool learns of it while
// the worker answers.
type request struct {
	kind byte   // msgRun or msgInspect
	sha  string // the module's digest (wasmwiz.ModuleDigest)
	// wasm is the module's bytes, or nil until load has read them: a worker
	// that holds the module gets the request without them.
	wasm []byte
	load func(context.Context) ([]byte, error)
	// encode writes the request's body; withWasm false leaves the module
	// out. hint is the body's size without the module.
	encode   func(e *enc, wasm []byte)
	hint     int
	deadline time.Time
	// info, when non-nil, receives what the pool knows of the module: from
	// the worker's "started" frame, once per module and worker, kept in
	// p.mods.
	info *wasmwiz.ModuleInfo
	// out, when non-nil (runs), collects the guest's output frames, also
	// those the worker wrote before it was killed at the deadline; output
	// frames to a request without out are a protocol failure.
	out *runOutput
	// clk, when non-nil, follows the compile: a "need module" frame means
	// the worker compiles, a "started" frame that it is done.
	clk *runClock
	// seq is the run's number on its worker (proc.runSeq): the output
	// region holds this run's output only once the worker marked it so.
	seq uint64
	// peak is the guest's linear memory as the output region last said,
	// read when the worker was killed or died during the run.
	peak int64
}

// loadError is a failure to read the module's bytes (RunRequest.LoadWasm):
// nothing was sent for them, so the worker is still fine.
type loadError struct{ err error }

func (e *loadError) Error() string { return e.err.Error() }
func (e *loadError) Unwrap() error { return e.err }

// exchange sends rq to p (which the caller acquired) and returns the final
// answer's kind and body, and whether p may serve again. Until the answer,
// it reads only within rq.deadline; past it, or when ctx ends, or on any
// protocol failure, it kills p, waits until the process is reaped, and
// returns os.ErrDeadlineExceeded, EUNAVAILABLE (the caller left, or the
// worker was killed from outside), errWorkerGone (the worker had exited
// before the request reached it), errWorkerOOM or EINTERNAL.
// When the module's bytes cannot be read it returns that error with p
// healthy.
func (pl *Pool) exchange(ctx context.Context, p *proc, rq *request) (k byte, d *dec, healthy bool, err error) {
	// Until this request is over, the pipe stays open even once the worker
	// is reaped, so that frames it wrote before it died can still be read.
	p.holdStdout()
	defer p.releaseStdout()
	stop := context.AfterFunc(ctx, p.kill) // the caller went away: stop the guest
	sends, unsent := 0, false
	send := func(withWasm bool) error {
		var wasm []byte
		if withWasm {
			if rq.wasm == nil && rq.load != nil {
				began := time.Now()
				b, err := rq.load(ctx)
				if err != nil {
					return &loadError{err}
				}
				rq.wasm = b
				// Reading the module from the store is neither its compile
				// nor its guest: the request's clock and deadline move past
				// it, so that a slow store (other tenants' load) is not a
				// module that did not compile in time.
				took := time.Since(began)
				rq.deadline = rq.deadline.Add(took)
				if rq.clk != nil {
					rq.clk.start = rq.clk.start.Add(took)
				}
				_ = p.stdin.SetWriteDeadline(rq.deadline)
				_ = p.stdout.SetReadDeadline(rq.deadline)
			}
			wasm = rq.wasm
			pl.moduleSends.Add(1)
		}
		e := newFrame(rq.hint + copiedSize(len(wasm)))
		rq.encode(e, wasm)
		n, err := writeFrameAfter(p.stdin, nil, rq.kind, e)
		if err != nil && sends == 0 && n == 0 && (errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrClosed)) {
			// Not a byte of the request reached the worker: it had exited
			// while idle, and the pool had not marked it dead yet.
			unsent = true
		}
		sends++
		return err
	}
	sha, info, out, clk := rq.sha, rq.info, rq.out, rq.clk
	_ = p.stdin.SetWriteDeadline(rq.deadline)
	_ = p.stdout.SetReadDeadline(rq.deadline)
	held := p.mods.has(sha)
	if held {
		pl.moduleHits.Add(1)
		if v, _ := p.mods.get(sha); v != nil && info != nil {
			*info = *v.(*wasmwiz.ModuleInfo)
		}
	}
	started := false
	aligned := true // no frame was cut short: what follows in the pipe is whole frames
	var maxOutput int64
	if out != nil {
		maxOutput = out.limit
	}
	// The guest's output is in the worker's output region (region.go) up to
	// the first output frame, if any: read it before that frame, or at the
	// answer, or once a killed or dead worker is gone.
	regionOn := out != nil && out.onOutput == nil && p.region != nil && rq.kind == msgRun
	takeRegion := func() error {
		if !regionOn {
			return nil
		}
		regionOn = false
		return p.regionOutput(rq.seq, out)
	}
	if p.isDead() {
		// Exited while idle (killed from outside, say), before the pool saw
		// it go: the request goes to another worker.
		err, unsent = errWorkerGone, true
	} else {
		err = send(!held)
	}
	for err == nil {
		var body []byte
		k, body, aligned, err = readFrameAligned(p.r, maxOutput)
		if err != nil {
			break
		}
		if k == msgOutput { // the most frequent frame: no decoder needed
			pl.outputFrames.Add(1)
			if out == nil {
				err = fmt.Errorf("worker protocol: output frame outside a run")
			} else if err = takeRegion(); err == nil {
				err = out.add(body)
			}
			continue
		}
		d = &dec{b: body}
		if k == msgResult || k == msgError || k == msgInspection {
			if cpu, ok := cutCPU(d); ok {
				p.cpuAtAnswer = cpu
			}
		}
		switch k {
		case msgNeedModule:
			if clk != nil {
				clk.compiling = true
			}
			err = send(true)
		case msgStarted:
			mi := decodeModuleInfo(d)
			if err = d.done(); err == nil {
				started = true
				if clk != nil {
					clk.guest, clk.compiling = time.Now(), false
					if clk.onStarted != nil {
						clk.onStarted()
					}
				}
				p.mods.add(sha, int64(len(rq.wasm)), &mi)
				if info != nil {
					*info = mi
				}
			}
		case msgRetire:
			p.retire = true
		case msgStats:
			st := decodeCacheStats(d)
			if err = d.done(); err == nil {
				pl.mu.Lock()
				p.cacheStats = st
				pl.mu.Unlock()
			}
		case msgInspection:
			peek := *d
			var mi *wasmwiz.ModuleInfo
			if in, err := decodeInspection(&peek); err == nil {
				v := in.Info()
				mi = &v
			}
			p.mods.add(sha, int64(len(rq.wasm)), mi)
			fallthrough
		case msgResult, msgError:
			if err = takeRegion(); err != nil {
				break
			}
			if rq.kind == msgRun && !started && p.mods.has(sha) {
				p.mods.add(sha, int64(len(rq.wasm)), nil) // most recent, as in the worker
			}
			if stop() {
				return k, d, true, nil
			}
			// The caller left just as the answer came: the worker is being
			// killed, but the answer is whole.
			pl.kills.Add(1)
			<-p.exited
			return k, d, false, nil
		default:
			err = fmt.Errorf("worker protocol: unexpected frame %q", k)
		}
	}
	stop()
	if le := (*loadError)(nil); errors.As(err, &le) && ctx.Err() == nil {
		// Nothing of this request is in the pipe: the worker waits for the
		// next one.
		return 0, nil, true, le.err
	}
	died := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, os.ErrClosed) || errors.Is(err, syscall.EPIPE)
	killedBefore := p.wasKilled()
	p.kill()
	if out != nil && aligned && errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
		// The guest may have written just before the deadline: read the
		// output frames still in the pipe, up to the EOF its death brings.
		drainOutput(p, out, takeRegion)
	}
	<-p.exited
	// What the guest wrote to the region before the worker was killed or
	// died (not read yet when no output frame came), and the memory it
	// reached.
	_ = takeRegion()
	if rq.kind == msgRun {
		rq.peak = p.regionPeak(rq.seq)
	}
	switch {
	case ctx.Err() != nil:
		pl.kills.Add(1)
		return 0, nil, false, wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, context.Cause(ctx), "the request ended before the run did")
	case errors.Is(err, os.ErrDeadlineExceeded):
		pl.kills.Add(1)
		return 0, nil, false, err
	case pl.isClosing():
		return 0, nil, false, errClosed
	}
	report := p.crashReport()
	if unsent {
		// Nothing of this request ran: another worker can take it (Run,
		// Inspect), whatever ended this one.
		pl.crashes.Add(1)
		pl.log.Warn("a worker had exited before a request reached it", "worker", report)
		return 0, nil, false, errWorkerGone
	}
	if died {
		pl.crashes.Add(1)
	} else {
		pl.kills.Add(1)
	}
	if p.outOfMemory() {
		pl.log.Warn("worker ran out of memory", "worker", report)
		return 0, nil, false, errWorkerOOM
	}
	if p.killedFromOutside(killedBefore) {
		// Not the request's doing: no memory_limit, and no verdict against
		// the module it compiled (request.go), which would refuse it for
		// everyone. A worker killed while idle and handed this request
		// before it was reaped ends here too.
		pl.log.Warn("worker killed from outside during a request", "worker", report)
		return 0, nil, false, wasmwiz.RetryLater(wasmwiz.EUNAVAILABLE, time.Second,
			"the worker process running this request was killed from outside the server (SIGKILL, which the kernel's out-of-memory killer sends when the host runs short of memory); retry in a second")
	}
	pl.log.Error("worker failed during a request", "err", err, "worker", report)
	return 0, nil, false, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "the worker process died")
}

// drainTimeout bounds reading what a killed worker left in its pipe. The
// end of the pipe (EOF) comes as soon as the kernel has ended the process;
// this only guards against a writer we do not know of.
const drainTimeout = 2 * time.Second

// drainOutput reads the output frames a killed worker wrote before it died,
// until EOF, a frame of another kind, or a broken frame; before the first,
// it calls first (the output region's content, which precedes any frame).
func drainOutput(p *proc, out *runOutput, first func() error) {
	_ = p.stdout.SetReadDeadline(time.Now().Add(drainTimeout))
	for {
		k, body, _, err := readFrameAligned(p.r, out.limit)
		if err != nil || k != msgOutput || first() != nil || out.add(body) != nil {
			return
		}
	}
}
