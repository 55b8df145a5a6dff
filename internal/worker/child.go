package worker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wasmwiz/wasmwiz"
)

// GuestEngine is the in-process engine a worker runs guests on: in the
// program, internal/engine's Engine started with NoGuestInterrupt.
type GuestEngine interface {
	wasmwiz.Engine
	// Close waits for running guests and frees the engine.
	Close(ctx context.Context) error
}

// EngineSettings is what the pool tells a worker about the engine to start.
type EngineSettings struct {
	CacheDir         string // on-disk compiled-code cache shared by the workers; "" for none
	CacheMaxBytes    int64  // bound of CacheDir's files; 0 for none
	MemoryCacheBytes int64  // in-memory compiled-code cache of this worker
	Logger           *slog.Logger
}

// ServeOptions configure Serve.
type ServeOptions struct {
	// NewEngine starts the worker's engine (required). The program passes
	// internal/engine without in-guest interruption, since the pool stops a
	// run past its deadline by killing the worker; this package meets the
	// engine only through GuestEngine.
	NewEngine func(ctx context.Context, s EngineSettings) (GuestEngine, error)
}

// ServeProcess is the body of the `wasmwiz worker` process: it serves the
// pool's requests on the process's stdin and stdout until stdin closes.
//
// Before anything else it moves the protocol off file descriptor 1: the
// protocol gets a private duplicate, and descriptor 1 becomes a copy of
// stderr, so that a stray write to os.Stdout (ours or a library's) lands in
// the log instead of corrupting a frame.
func ServeProcess(ctx context.Context, opts ServeOptions) error {
	if f := receiveHandoff(); f != nil {
		selfStatm = f
	}
	sharedRegion = receiveOutputRegion()
	fd, err := unix.FcntlInt(1, unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return fmt.Errorf("worker: dup stdout: %w", err)
	}
	if err := unix.Dup3(2, 1, 0); err != nil {
		return fmt.Errorf("worker: redirect stdout: %w", err)
	}
	out := os.NewFile(uintptr(fd), "worker-protocol")
	defer out.Close()
	// Defence in depth, see sandbox.go. Without it the engine's isolation
	// still holds, so a kernel that refuses seccomp costs a warning, not
	// the service.
	if err := installSandbox(); err != nil {
		fmt.Fprintf(os.Stderr, "level=WARN msg=\"worker runs without its seccomp sandbox\" err=%q\n", err)
	}
	return Serve(ctx, os.Stdin, out, opts)
}

// Serve answers the pool's requests read from in, writing frames to out and
// nothing else, one request at a time, until in reaches EOF (the pool closed
// it or died). It returns nil on EOF and an error when the stream is broken.
// It owns the process: it sets the Go memory limit (debug.SetMemoryLimit)
// around each run.
func Serve(ctx context.Context, in io.Reader, out io.Writer, opts ServeOptions) error {
	if opts.NewEngine == nil {
		return fmt.Errorf("worker: no engine to serve with")
	}
	r := bufio.NewReaderSize(in, 64<<10)
	kind, body, err := readFrame(r)
	if err != nil {
		return fmt.Errorf("worker: reading config: %w", err)
	}
	if kind != msgConfig {
		return fmt.Errorf("worker: first frame is %q, want config", kind)
	}
	var cfg childConfig
	d := &dec{b: body}
	cfg.decode(d)
	if err := d.done(); err != nil {
		e := newFrame(128)
		encodeError(e, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "%v", err))
		_ = writeFrame(out, msgError, e)
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.Level(cfg.LogLevel)}))
	eng, err := opts.NewEngine(ctx, EngineSettings{CacheDir: cfg.CacheDir, CacheMaxBytes: cfg.CacheMaxBytes, MemoryCacheBytes: cfg.MemoryCacheBytes, Logger: log})
	if err != nil {
		e := newFrame(64)
		encodeError(e, err)
		_ = writeFrame(out, msgError, e)
		return fmt.Errorf("worker: starting engine: %w", err)
	}
	defer eng.Close(context.WithoutCancel(ctx))

	s := &server{
		eng:     eng,
		out:     out,
		log:     log,
		cfg:     cfg,
		modules: newLRU(cfg.ModuleCacheBytes),
		region:  regionWriter{r: sharedRegion},
	}
	if sharedRegion != nil {
		s.onMemory = sharedRegion.setPeak
	}
	compiled := cfg.MemoryCacheBytes
	if compiled <= 0 {
		compiled = wasmwiz.DefaultCompileCacheBytes
	}
	s.baseMemoryLimit = cfg.MemoryOverhead + compiled + cfg.ModuleCacheBytes
	debug.SetMemoryLimit(s.baseMemoryLimit)
	s.data = newDataLimit(s.baseMemoryLimit)

	s.cpuAtAnswer = processCPU()
	e := newFrame(16)
	e.uvarint(protocolVersion)
	e.varint(int64(os.Getpid()))
	if err := writeFrame(out, msgHello, e); err != nil {
		return err
	}
	for {
		kind, body, err := readFrame(r)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("worker: reading request: %w", err)
		}
		switch kind {
		case msgRun:
			err = s.run(ctx, body)
		case msgInspect:
			err = s.inspect(ctx, body)
		default:
			err = fmt.Errorf("worker: unexpected frame %q", kind)
		}
		if err != nil {
			return err
		}
	}
}

// server is the state of one worker between requests.
type server struct {
	eng             GuestEngine
	out             io.Writer
	log             *slog.Logger
	cfg             childConfig
	modules         *lru // sha256 → *heldModule
	baseMemoryLimit int64
	data            *dataLimit // the process's own memory bound (memlimit.go)
	lastStats       wasmwiz.CacheStats
	// cpuAtAnswer is the process's CPU time when it sent its last final
	// answer (or its hello): a request's CPU time is what the process used
	// since, its decoding included, which is also how the pool prices a
	// run that ended by killing the worker.
	cpuAtAnswer time.Duration

	// Output frames of the run in progress, written from the goroutine
	// running the guest while Run is in progress and by nothing else then.
	outScratch []byte // reused frame buffer for small writes
	outErr     error  // the first failed output write: the stream is broken
	region     regionWriter
	// onMemory stores a run's memory peaks in the region (RunRequest.OnMemory;
	// made once, not a closure per run); nil without a region.
	onMemory func(int64)
}

// sharedRegion is the region ServeProcess received from the pool (nil: none,
// and output travels in frames).
var sharedRegion *outputRegion

// streamingEngine is an engine that copies a guest's output to writers as
// the guest writes it (internal/engine's Engine does). With one, a worker sends output
// frames during the run; without, it sends the result's output in output
// frames just before the result, so the parent has a single source either way.
type streamingEngine interface {
	RunStreaming(ctx context.Context, req *wasmwiz.RunRequest, stdout, stderr io.Writer) (*wasmwiz.Result, error)
}

// outputWriter sends what it is given as output frames of one stream.
type outputWriter struct {
	s  *server
	fd byte
}

// Write sends p as one output frame at once, so that what the guest wrote
// reaches the parent before anything the guest does next. It never fails:
// the engine ignores a copy's errors, so a broken pipe is remembered and ends
// the worker after the run.
func (w outputWriter) Write(p []byte) (int, error) {
	w.s.writeOutput(w.fd, p)
	return len(p), nil
}

func (s *server) writeOutput(fd byte, p []byte) {
	if s.outErr != nil || len(p) == 0 || s.region.write(fd, p) {
		return
	}
	s.outScratch, s.outErr = writeOutput(s.out, s.outScratch, fd, p)
	if cap(s.outScratch) > 2*refBytes {
		s.outScratch = nil // keep the reusable buffer small
	}
}

// heldModule is a module a worker keeps so the pool need not resend it.
type heldModule struct {
	wasm []byte
	info *wasmwiz.Inspection // inspected under no limits; for ModuleInfo only
}

// bigRunBytes is the peak linear memory above which a worker hands freed
// memory back to the system right after the run, so that an idle worker
// holds about its caches and not its largest run.
const bigRunBytes = 16 << 20

func (s *server) send(kind byte, e *enc) error { return writeFrame(s.out, kind, e) }

// cacheStats returns the engine's cache figures, when it reports them.
func (s *server) cacheStats() (wasmwiz.CacheStats, bool) {
	if cs, ok := s.eng.(cacheStatser); ok {
		return cs.CacheStats(), true
	}
	return wasmwiz.CacheStats{}, false
}

// final sends an answer (or the "started" frame, after which the worker may
// be killed), preceded by the engine's cache figures when they changed (a
// compile happened), so the pool can report them without asking.
func (s *server) final(kind byte, e *enc) error {
	return s.finalAt(kind, e, processCPU())
}

// finalAt is final for a caller that has just read the process's CPU time.
// The frames that precede the answer go out with it in one write, so that
// the pool's reader wakes once per answer rather than once per frame.
func (s *server) finalAt(kind byte, e *enc, cpu time.Duration) error {
	var pre []byte
	if kind != msgStarted && s.data.outgrown() {
		// This worker's mappings outgrew its allowance (memlimit.go): the
		// pool replaces it after this answer.
		re := newFrame(0)
		_ = sealFrame(msgRetire, re)
		pre = append(pre, re.b...)
	}
	if st, ok := s.cacheStats(); ok {
		if st != s.lastStats {
			s.lastStats = st
			se := newFrame(48)
			encodeCacheStats(se, st)
			_ = sealFrame(msgStats, se)
			pre = append(pre, se.b...)
		}
	}
	if kind != msgStarted {
		if n := e.n + len(e.b) - 4 + 8; int64(n) > frameLimit(kind, 0) {
			// The pool would refuse it from its header: say so instead.
			s.log.Error("worker answer too large", "kind", string(kind), "bytes", n)
			kind, e = msgError, newFrame(128)
			encodeError(e, wasmwiz.Errorf(wasmwiz.ETOOLARGE, "the answer of %d bytes is over the %d bytes a worker may send", n, maxAnswerFrameBytes))
		}
		// A final answer ends with the process's CPU time so far, so that
		// the pool can tell a killed run's CPU time (proc.cpuSinceAnswer).
		e.b = binary.LittleEndian.AppendUint64(e.b, uint64(cpu))
		s.cpuAtAnswer = cpu
	}
	_, err := writeFrameAfter(s.out, pre, kind, e)
	return err
}

// cacheStatser is an engine that reports its compiled-code cache.
type cacheStatser interface{ CacheStats() wasmwiz.CacheStats }

func (s *server) sendError(err error) error {
	if wasmwiz.ErrorCode(err) == wasmwiz.EINTERNAL {
		s.log.Error("worker request failed", "err", err)
	}
	e := newFrame(128)
	encodeError(e, err)
	return s.final(msgError, e)
}

// module returns the held module sha, or the one that came with the
// request; ok is false when the pool must resend it.
func (s *server) module(sha string, wasm []byte, hasWasm bool) (*heldModule, bool, error) {
	if v, found := s.modules.get(sha); found {
		return v.(*heldModule), true, nil
	}
	if !hasWasm {
		return nil, false, s.send(msgNeedModule, newFrame(0))
	}
	return &heldModule{wasm: wasm}, true, nil
}

func (s *server) run(ctx context.Context, body []byte) error {
	d := &dec{b: body}
	req, hasWasm := decodeRun(d)
	seq, live := decodeRunOutput(d)
	ctx = wasmwiz.NewContextWithOwner(ctx, decodeOwner(d))
	if err := d.done(); err != nil {
		return err
	}
	var m *heldModule
	compiledNow := false
	var compiling time.Duration // this request's compile, when the worker had to
	if v, held := s.modules.get(req.SHA256); held {
		m = v.(*heldModule)
		s.modules.add(req.SHA256, int64(len(m.wasm)), m) // most recent, as in the pool's mirror
	} else {
		if !hasWasm {
			return s.send(msgNeedModule, newFrame(0))
		}
		before, _ := s.cacheStats()
		start := time.Now()
		info, err := s.compile(ctx, req.Wasm, req.Limits)
		compiling = time.Since(start)
		if err != nil {
			return s.sendError(err)
		}

		// The inspection compiled the module, so the run will find it in the
		// cache; what the caller should hear is whether this compile was
		// served by a cache (the disk), not the run's lookup.
		if after, ok := s.cacheStats(); ok && after.Misses > before.Misses && after.DiskHits == before.DiskHits {
			compiledNow = true
		}
		// A copy: req.Wasm points into the request frame, which also holds
		// the stdin, and the module outlives the request.
		m = &heldModule{wasm: bytes.Clone(req.Wasm), info: info}
		s.modules.add(req.SHA256, int64(len(m.wasm)), m)
		// Tell the pool, once per module and worker, what the module is: it
		// answers with that if it has to kill this worker at the deadline.
		e := newFrame(len(info.SHA256) + len(info.Entry) + 16)
		encodeModuleInfo(e, info.Info())
		if err := s.final(msgStarted, e); err != nil {
			return err
		}
	}

	req.Wasm = m.wasm
	if req.Limits.Timeout > 0 {
		// The guest gets what the compile left: a compile that ended just
		// before the pool's deadline leaves it a nanosecond, a timeout.
		req.Limits.Timeout = max(req.Limits.Timeout-compiling, time.Nanosecond)
	}
	if req.Limits.MaxMemoryBytes > 0 {
		debug.SetMemoryLimit(s.baseMemoryLimit + req.Limits.MaxMemoryBytes)
	}
	s.data.phase(runDataBudget(req.Limits, len(req.Stdin)))
	s.outErr = nil
	s.region.start(seq, !live)
	req.OnMemory = s.onMemory
	var res *wasmwiz.Result
	var err error
	if st, ok := s.eng.(streamingEngine); ok {
		res, err = st.RunStreaming(ctx, req, outputWriter{s, fdStdout}, outputWriter{s, fdStderr})
	} else {
		res, err = s.eng.Run(ctx, req)
		if err == nil {
			s.writeOutput(fdStdout, res.Stdout)
			s.writeOutput(fdStderr, res.Stderr)
		}
	}
	s.data.restore()
	debug.SetMemoryLimit(s.baseMemoryLimit)
	if s.outErr != nil {
		return fmt.Errorf("worker: sending output: %w", s.outErr)
	}
	if err != nil {
		return s.sendError(err)
	}
	if compiledNow {
		res.CompileCached = false
	}
	res.CompileDuration += compiling
	cpu := processCPU()
	res.CPUTime = cpu - s.cpuAtAnswer
	e := newFrame(len(res.Trap) + 128)
	encodeResult(e, res)
	if err := s.finalAt(msgResult, e, cpu); err != nil {
		return err
	}
	if res.MemoryPeakBytes > bigRunBytes {
		debug.FreeOSMemory()
	}
	return nil
}

// compile inspects (and so compiles) a module under the compile phase's
// memory bound (memlimit.go).
func (s *server) compile(ctx context.Context, wasm []byte, limits wasmwiz.Limits) (*wasmwiz.Inspection, error) {
	budget := compileDataBudget(limits, len(wasm))
	debug.SetMemoryLimit(s.baseMemoryLimit + budget)
	s.data.phase(budget)
	defer func() {
		s.data.restore()
		debug.SetMemoryLimit(s.baseMemoryLimit)
	}()
	return s.eng.Inspect(ctx, wasm, limits)
}

func (s *server) inspect(ctx context.Context, body []byte) error {
	d := &dec{b: body}
	sha, wasm, hasWasm, limits := decodeInspect(d)
	ctx = wasmwiz.NewContextWithOwner(ctx, decodeOwner(d))
	if err := d.done(); err != nil {
		return err
	}
	m, ok, err := s.module(sha, wasm, hasWasm)
	if !ok || err != nil {
		return err
	}
	info, err := s.compile(ctx, m.wasm, limits)
	if err != nil {
		return s.sendError(err)
	}
	if m.info == nil {
		m.info = info
	}
	e := newFrame(512)
	if err := encodeInspection(e, info); err != nil {
		return s.sendError(wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "encoding the inspection"))
	}
	s.modules.add(sha, int64(len(m.wasm)), m)
	return s.final(msgInspection, e)
}
