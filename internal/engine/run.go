package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/runfiles"
	"github.com/wasmwiz/wasmwiz/internal/wasifs"
)

// Sentinels a host function panics with to stop the guest; wazero turns the
// panic into the error the guest call returns.
var (
	errOutputLimit = errors.New("output limit exceeded")
	errDeadline    = errors.New("wall-time limit reached during a host sleep")
)

// DefaultName is argv[0] when a request names no module.
const DefaultName = "module.wasm"

// Run runs one module in a fresh anonymous instance under req.Limits. A
// guest outcome (ok, exit, trap, timeout, memory_limit, output_limit) is a
// Result with a nil error. The wall time covers compiling the module (its
// CompileDuration) and the guest (its Duration). Errors: ETOOLARGE (module
// or stdin over its limit, or a compile that took the whole wall time),
// EINVALID (not runnable, unknown function, wrong params, memory
// minimum over the limit), all before the guest starts; EUNAVAILABLE after
// Close or when ctx is cancelled before the run ends; EINTERNAL.
//
// Zero limits: Timeout 0 runs without a deadline, MaxMemoryBytes 0 allows
// the wasm32 maximum (4 GiB), MaxOutputBytes, MaxModuleBytes and
// MaxStdinBytes 0 do not limit. req.SHA256, when set, is trusted as the
// digest of req.Wasm (it keys the compile cache); with it, req.Wasm may be
// nil when req.LoadWasm is set, which is called only when the compiled code
// is not in memory.
func (e *Engine) Run(ctx context.Context, req *wasmwiz.RunRequest) (res *wasmwiz.Result, err error) {
	if req != nil && req.OnOutput != nil {
		return e.RunStreaming(ctx, req, onOutputWriter{req.OnOutput, false}, onOutputWriter{req.OnOutput, true})
	}
	return e.RunStreaming(ctx, req, nil, nil)
}

// onOutputWriter hands a stream's writes to RunRequest.OnOutput.
type onOutputWriter struct {
	fn     func(stderr bool, p []byte)
	stderr bool
}

func (w onOutputWriter) Write(p []byte) (int, error) {
	w.fn(w.stderr, p)
	return len(p), nil
}

// RunStreaming is Run that also copies the guest's stdout and stderr to the
// given writers (nil: none) as the guest writes them, within the same caps,
// so that a command-line user sees output live and keeps it even if the
// process has to end the guest by exiting. The writers are called from the
// goroutine running the guest, never after RunStreaming returns.
func (e *Engine) RunStreaming(ctx context.Context, req *wasmwiz.RunRequest, stdout, stderr io.Writer) (res *wasmwiz.Result, err error) {
	defer func() {
		// wazero recovers panics in guest calls itself; this is for a bug
		// anywhere else on the way, which must not take the process down.
		if p := recover(); p != nil {
			e.log.Error("engine panic", "panic", p)
			res, err = nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, fmt.Errorf("panic: %v", p), "the engine failed")
		}
	}()
	if req == nil {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "no run request")
	}
	lim := req.Limits
	if err := wasmwiz.CheckArgv(req.Name, req.Args, req.Env); err != nil {
		return nil, err
	}
	if err := checkModuleSize(req.Wasm, lim); err != nil {
		return nil, err
	}
	if lim.MaxStdinBytes > 0 && int64(len(req.Stdin)) > lim.MaxStdinBytes {
		return nil, wasmwiz.SizeError("stdin", int64(len(req.Stdin)), lim.MaxStdinBytes, "")
	}
	if err := e.begin(); err != nil {
		return nil, err
	}
	defer e.end()

	sha := strings.ToLower(req.SHA256)
	if sha == "" {
		sha = wasmwiz.ModuleDigest(req.Wasm)
	}
	c, cached, compiling, err := e.cache.getOrLoad(ctx, req.Wasm, req.LoadWasm, sha)
	if err != nil {
		return nil, err
	}
	defer e.cache.release(c)
	// The wall time covers the compile: the guest gets what is left. A
	// compile cannot be stopped in-process, but it is refused when it used
	// the whole of it (the worker pool stops it at the deadline).
	if lim.Timeout > 0 && compiling > 0 {
		if compiling >= lim.Timeout {
			return nil, wasmwiz.Errorf(wasmwiz.ETOOLARGE, "compiling the module took %s, past the wall-time limit of %s; a module this costly to compile is refused",
				compiling.Round(time.Millisecond), lim.Timeout)
		}
		r := *req
		r.Limits.Timeout -= compiling
		req = &r
	}
	if err := checkFits(c.info, lim); err != nil {
		return nil, err
	}
	fn, params, err := c.info.resolve(req)
	if err != nil {
		return nil, err
	}
	var tree *runfiles.Tree
	if req.Files != nil {
		// The run's private directory: made fresh, removed whatever happens.
		if tree, err = runfiles.Make(e.opts.FilesDir, req.Files); err != nil {
			return nil, err
		}
		defer tree.Remove()
		req = tree.Request(req)
	}
	mounts, err := openMounts(req.Mounts)
	if err != nil {
		return nil, err
	}
	defer closeMounts(mounts)
	res = &wasmwiz.Result{Module: c.info.insp.Info(), CompileCached: cached, CompileDuration: compiling}
	res.Module.Entry = fn
	res.Module.SHA256 = sha
	if err := e.execute(ctx, c, req, mounts, fn, params, res, stdout, stderr); err != nil {
		return nil, err
	}
	if tree != nil {
		// What the guest left, whatever its outcome (a guest stopped at its
		// deadline keeps what it wrote, as it keeps its output).
		if res.Files, err = tree.Collect(lim); err != nil {
			return nil, err
		}
	}
	if res.Status == wasmwiz.StatusTimeout && errors.Is(ctx.Err(), context.Canceled) {
		// The caller went away (shutdown, client gone): not the guest's doing.
		return nil, wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, ctx.Err(), "the run was cancelled")
	}
	return res, nil
}

// execute instantiates and calls; it fills res with the guest's outcome.
func (e *Engine) execute(parent context.Context, c *compiled, req *wasmwiz.RunRequest, mounts []wasifs.Mount, fn string, params []uint64, res *wasmwiz.Result, stdoutTee, stderrTee io.Writer) error {
	lim := req.Limits
	ctx, cancel := parent, context.CancelFunc(func() {})
	if lim.Timeout > 0 {
		ctx, cancel = context.WithTimeout(parent, lim.Timeout)
	}
	defer cancel()

	memLimit := linearLimit(c.info, lim)
	mem := &memoryCap{limit: memLimit, onPeak: req.OnMemory}
	defer mem.release()
	ctx = experimental.WithMemoryAllocator(ctx, mem)
	stdin := bytes.NewReader(req.Stdin)
	// One cap for the run: stdout and stderr share it.
	budget := &outputBudget{limit: lim.MaxOutputBytes}
	stdout := &cappedBuffer{budget: budget, tee: stdoutTee}
	stderr := &cappedBuffer{budget: budget, tee: stderrTee}
	fds, err := wasifs.New(wasifs.Config{
		Stdin: stdin, Stdout: stdout, Stderr: stderr, Mounts: mounts, MaxWriteBytes: lim.MaxFileWriteBytes,
		MaxDepth: wasmwiz.MaxFileDepth,
		Sleep:    func(ctx context.Context, d time.Duration) { sleep(ctx, int64(d)) },
	})
	if err != nil {
		return wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "setting up the guest's files")
	}
	defer fds.Close()
	ctx = wasifs.WithTable(ctx, fds)
	name := req.Name
	if name == "" {
		name = DefaultName
	}
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions().
		WithStdin(stdin).
		WithStdout(stdout).
		WithStderr(stderr).
		WithArgs(append([]string{name}, req.Args...)...).
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader).
		WithNanosleep(func(ns int64) { sleep(ctx, ns) })
	keys := make([]string, 0, len(req.Env))
	for k := range req.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cfg = cfg.WithEnv(k, req.Env[k])
	}

	start := time.Now()
	var results []uint64
	mod, err := e.runtime.InstantiateModule(ctx, c.mod, cfg)
	if err == nil {
		if c.info.initialize && fn != "_initialize" && fn != "_start" {
			_, err = mod.ExportedFunction("_initialize").Call(ctx, params[:0]...)
		}
		if err == nil {
			results, err = mod.ExportedFunction(fn).Call(ctx, params...)
		}
		_ = mod.Close(context.Background())
	}
	res.Duration = time.Since(start)

	peak, refused := mem.stats()
	res.MemoryPeakBytes = int64(peak)
	res.Stdout, res.StdoutTruncated = stdout.buf.Bytes(), stdout.truncated
	res.Stderr, res.StderrTruncated = stderr.buf.Bytes(), stderr.truncated
	classify(ctx, err, res)
	if lim.Timeout > 0 && res.Duration > lim.Timeout && (res.Status == wasmwiz.StatusOK || res.Status == wasmwiz.StatusExit) {
		// The guest finished, but after its limit: code without loops is
		// not stopped by the in-guest checks (docs/RATIONALE.md). The limit
		// was still passed, as the worker pool would have reported.
		res.Status, res.ExitCode = wasmwiz.StatusTimeout, 0
		res.Trap = "the guest ran past its wall-time limit of " + lim.Timeout.String() + " (loop-free code is not stopped in-process)"
		return nil
	}
	if err == nil {
		def := c.info.funcs[fn]
		for i, t := range def.ResultTypes() {
			res.Results = append(res.Results, wasmwiz.Value{Type: api.ValueTypeName(t), Bits: results[i]})
		}
	}
	if refused && (res.Status == wasmwiz.StatusTrap || res.Status == wasmwiz.StatusExit) {
		res.Status = wasmwiz.StatusMemoryLimit
		if res.Trap == "" {
			res.Trap = "memory growth past the limit of " + capText(c.info, lim) + " was refused; the guest exited with code " + strconv.Itoa(res.ExitCode)
		}
	}
	return nil
}

// capText names a run's memory cap, and the part of it the instance's
// footprint takes, for messages.
func capText(a *analysis, lim wasmwiz.Limits) string {
	if lim.MaxMemoryBytes <= 0 {
		return "4GiB"
	}
	s := wasmwiz.FormatSize(lim.MaxMemoryBytes)
	if f := a.footprint.total(); f >= wasmwiz.MiB {
		s += " (of which the module's " + a.footprint.String() + " take " + approxSize(f) + ")"
	}
	return s
}

// classify turns the error of a guest call into a status.
func classify(ctx context.Context, err error, res *wasmwiz.Result) {
	var exit *sys.ExitError
	switch {
	case err == nil:
		res.Status = wasmwiz.StatusOK
	case errors.Is(err, errOutputLimit):
		res.Status = wasmwiz.StatusOutputLimit
	case errors.Is(err, errDeadline):
		res.Status = wasmwiz.StatusTimeout
	case errors.As(err, &exit):
		switch code := exit.ExitCode(); {
		case code == sys.ExitCodeDeadlineExceeded || code == sys.ExitCodeContextCanceled:
			res.Status = wasmwiz.StatusTimeout
		case code == 0:
			res.Status = wasmwiz.StatusOK
		default:
			res.Status, res.ExitCode = wasmwiz.StatusExit, int(code)
		}
	case ctx.Err() != nil:
		res.Status = wasmwiz.StatusTimeout
	default:
		res.Status = wasmwiz.StatusTrap
		res.Trap = trapMessage(err)
	}
}

// trapMessage is wazero's trap text ("wasm error: unreachable" and the wasm
// stack) without the Go-side detail wazero appends for host panics.
func trapMessage(err error) string {
	msg := err.Error()
	if msg == "stack overflow" {
		// wazero reports call-stack exhaustion without the usual prefix or stack.
		return "wasm error: call stack exhausted (stack overflow)"
	}
	if i := strings.Index(msg, "\n\ngoroutine "); i >= 0 {
		msg = msg[:i]
	}
	if len(msg) > maxTrapBytes {
		// The stack names functions as the module's name section says, at
		// any length: the message is cut, so that a run's answer stays
		// bounded by its output cap plus a fixed size.
		msg = cutText(msg, maxTrapBytes, "\n… (cut at "+strconv.Itoa(maxTrapBytes)+" bytes)")
	}
	return msg
}

// maxTrapBytes bounds a trap message.
const maxTrapBytes = 8 << 10

// sleep is the guest's nanosleep (poll_oneoff clock subscriptions, sched
// sleeps): it ends early, stopping the guest, when the run's deadline passes.
func sleep(ctx context.Context, ns int64) {
	if ns <= 0 {
		return
	}
	t := time.NewTimer(time.Duration(ns))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		panic(errDeadline)
	}
}

// outputBudget is a run's output cap, shared by stdout and stderr.
type outputBudget struct {
	limit int64 // 0: no limit
	used  int64
}

// cappedBuffer keeps what a guest writes to one stream while the run's
// output budget lasts; the write that passes it keeps what fits, marks the
// stream truncated and stops the guest.
type cappedBuffer struct {
	buf       bytes.Buffer
	budget    *outputBudget
	truncated bool
	tee       io.Writer // optional live copy; its errors are ignored
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if o := b.budget; o.limit > 0 && o.used+int64(len(p)) > o.limit {
		fits := p[:o.limit-o.used]
		o.used = o.limit
		b.buf.Write(fits)
		b.copy(fits)
		b.truncated = true
		panic(errOutputLimit)
	}
	b.budget.used += int64(len(p))
	b.copy(p)
	return b.buf.Write(p)
}

func (b *cappedBuffer) copy(p []byte) {
	if b.tee != nil && len(p) > 0 {
		_, _ = b.tee.Write(p)
	}
}

// openMounts opens the host directories of a run, each through an os.Root.
// It returns EINVAL for a directory that cannot be opened or a guest path
// that is not absolute or is used twice.
func openMounts(ms []wasmwiz.Mount) ([]wasifs.Mount, error) {
	out := make([]wasifs.Mount, 0, len(ms))
	seen := map[string]bool{}
	for _, m := range ms {
		guest, err := m.GuestDir, error(nil)
		if guest != "." { // "." is the working directory of wasi-libc guests
			guest, err = wasmwiz.CleanGuestDir(m.GuestDir)
		}
		if err == nil && seen[guest] {
			err = wasmwiz.Errorf(wasmwiz.EINVALID, "two directories are mounted at %s", guest)
		}
		if err != nil {
			closeMounts(out)
			return nil, err
		}
		seen[guest] = true
		r, err := os.OpenRoot(m.HostDir)
		if err != nil {
			closeMounts(out)
			return nil, wasmwiz.WrapError(wasmwiz.EINVALID, err, "cannot open the directory %s: %v", m.HostDir, unwrapPathError(err))
		}
		out = append(out, wasifs.Mount{Root: r, GuestDir: guest, ReadOnly: m.ReadOnly})
	}
	return out, nil
}

func closeMounts(ms []wasifs.Mount) {
	for _, m := range ms {
		_ = m.Root.Close()
	}
}

// unwrapPathError returns the cause of an *fs.PathError, whose text would
// repeat the path.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
