package usage

import (
	"context"
	"errors"
	"github.com/wasmwiz/wasmwiz"
	"log/slog"
	"sync"
	"time"
)

// Options configure a Writer. Zero fields take the defaults
// given beside them.
type Options struct {
	// BatchSize is the most records one CreateRuns call writes (500). A full
	// batch is written at once, without waiting for FlushInterval.
	BatchSize int
	// FlushInterval is how long a record may wait for its batch to fill (1s).
	FlushInterval time.Duration
	// MaxBuffered bounds memory: the most records held, waiting or being
	// written (100 000, about 30 MB). Past it the oldest waiting record is
	// dropped and counted.
	MaxBuffered int
	// RetryMin and RetryMax bound the exponential backoff between attempts
	// while the database fails (100ms, doubling up to 30s).
	RetryMin, RetryMax time.Duration
	// WriteTimeout bounds one CreateRuns call (10s), in place of the
	// store's call timeout (wasmwiz.WithOwnDeadline). A batch that fails
	// transiently (wasmwiz.EUNAVAILABLE, the timeout) three times in a row
	// is then written half at a time, halved again after three more, so
	// that a batch too large to commit within it does not hold every later
	// record behind it.
	WriteTimeout time.Duration
	// Probe, when set, asks cheaply whether the database answers again
	// (the store's Ping). While the writer backs off, it probes every
	// ProbeInterval (1s) and writes as soon as a probe succeeds, so that
	// records held through a long outage reach the database promptly
	// when it returns, not up to RetryMax later.
	Probe         func(ctx context.Context) error
	ProbeInterval time.Duration
	// MaxBufferedBytes bounds the stored output and detail held (64 MiB):
	// a record whose output does not fit any more is kept without it (its
	// truncation flags set, its message saying why) and counted in
	// OutputDropped; one whose detail does not fit either (args, env names,
	// params, results, trap and message: each side up to
	// wasmwiz.RecordDetailBytes, the trap and message up to 8 KiB each) is
	// kept without that too (DetailTruncated set) and counted in
	// DetailDropped. What else a record holds (ids, its module and
	// function names, at most about 1.5 KiB) is bounded by MaxBuffered.
	MaxBufferedBytes int64
	// Logger gets failures, recoveries and drops (slog.Default()).
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.MaxBuffered <= 0 {
		o.MaxBuffered = 100_000
	}
	// The batch being written counts against MaxBuffered, and a retry never
	// drops it, so there must be room for one batch.
	o.MaxBuffered = max(o.MaxBuffered, o.BatchSize)
	if o.RetryMin <= 0 {
		o.RetryMin = 100 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 30 * time.Second
	}
	o.RetryMax = max(o.RetryMax, o.RetryMin)
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = time.Second
	}
	if o.MaxBufferedBytes <= 0 {
		o.MaxBufferedBytes = 64 * wasmwiz.MiB
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Stats are a Writer's counters, for metrics and tests.
type Stats struct {
	Buffered uint64 // records held now: waiting, or in the batch being written
	Written  uint64 // records in successful CreateRuns calls, ever
	Dropped  uint64 // records lost, ever: buffer full, recorded after Close, or left when Close gave up
	Failures uint64 // failed CreateRuns calls, ever
	Batches  uint64 // successful CreateRuns calls, ever
	// OutputDropped counts records kept without their output because the
	// output held passed MaxBufferedBytes, ever.
	OutputDropped uint64
	// DetailDropped counts records kept without their detail (and
	// output) because what was held passed MaxBufferedBytes, ever.
	DetailDropped uint64
	BufferedBytes uint64 // output and detail bytes held now (heldBytes)
}

// Writer is the wasmwiz.UsageRecorder of the server: Record queues a record in
// memory and returns at once; one goroutine writes batches through
// wasmwiz.RunService.CreateRuns. While the database fails, the batch is retried with
// exponential backoff and new records keep queueing, up to MaxBuffered.
// Record gives every record its id before queueing it and CreateRuns is
// idempotent by id, so a batch retried after an unconfirmed commit is not
// counted twice. A batch refused for another reason than wasmwiz.EUNAVAILABLE is
// written again record by record, and only the records refused on their own
// are dropped. Nothing is lost silently: every dropped record is counted in
// Stats and logged.
type Writer struct {
	svc  wasmwiz.RunService
	opts Options

	mu         sync.Mutex
	queue      []*wasmwiz.UsageRecord // waiting, oldest first
	batch      []*wasmwiz.UsageRecord // being written (and retried until it is)
	closed     bool
	stats      Stats
	pending    map[string]*wasmwiz.UsageRecord // every record held, by id, for Pending
	bytes      int64                           // output and detail bytes held (heldBytes)
	dropping   bool                            // a drop was logged and no write has succeeded since
	closedDrop bool                            // a record after Close was logged

	wake      chan struct{} // a full batch is waiting
	closing   chan struct{} // closed by Close
	closeCtx  context.Context
	done      chan struct{} // closed when the writer goroutine ends
	closeOnce sync.Once
	closeErr  error
}

var _ wasmwiz.UsageRecorder = (*Writer)(nil)

// New starts a writer of usage records into svc. Close it to
// flush what it holds.
func New(svc wasmwiz.RunService, opts Options) *Writer {
	opts.setDefaults()
	w := &Writer{
		svc:     svc,
		opts:    opts,
		pending: map[string]*wasmwiz.UsageRecord{},
		wake:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	go w.loop()
	return w
}

// Record queues r for writing and never blocks on the database. It sets
// r.CreatedAt (to now) and r.ID (a new run id) when they are empty, so the
// caller can answer with the id, and queues a copy: r may be reused. When
// the buffer is full, the oldest waiting record is dropped; after Close, r
// itself is dropped. Both are counted in Stats().Dropped.
func (w *Writer) Record(r *wasmwiz.UsageRecord) {
	if r == nil {
		return
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = time.Now().UTC()
	}
	if r.ID == "" {
		r.ID = wasmwiz.NewRunID(r.CreatedAt)
	}
	c := *r

	w.mu.Lock()
	if w.closed {
		w.stats.Dropped++
		first := !w.closedDrop
		w.closedDrop = true
		w.mu.Unlock()
		if first { // once: a shutdown under load must not flood the log
			w.opts.Logger.Warn("usage records dropped: recorded after the usage writer closed", "run_id", c.ID)
		}
		return
	}
	if out := outputBytes(&c); out > 0 && w.bytes+detailBytes(&c)+out > w.opts.MaxBufferedBytes {
		c.Stdout, c.Stderr = []byte{}, []byte{}
		c.StdoutTruncated, c.StderrTruncated = true, true
		c.Message = outputNotKept
		w.stats.OutputDropped++
	}
	if det := detailBytes(&c); det > 0 && w.bytes+det > w.opts.MaxBufferedBytes {
		// Its output, if any, went above: it did not fit with less.
		c.Args, c.EnvNames, c.Params, c.Results, c.Trap = nil, nil, nil, nil, ""
		c.DetailTruncated = true
		c.Message = detailNotKept
		w.stats.DetailDropped++
	}
	var dropped *wasmwiz.UsageRecord
	if len(w.queue)+len(w.batch) >= w.opts.MaxBuffered {
		w.stats.Dropped++
		if len(w.queue) == 0 {
			// Only the batch being written fills the buffer (MaxBuffered
			// equals BatchSize): the new record is the one to go.
			dropped = &c
		} else {
			dropped = w.queue[0]
			w.queue[0] = nil
			w.queue = append(w.queue[1:], &c)
			w.forgetLocked(dropped)
			w.holdLocked(&c)
		}
	} else {
		w.queue = append(w.queue, &c)
		w.holdLocked(&c)
	}
	full := len(w.queue) >= w.opts.BatchSize
	logDrop := dropped != nil && !w.dropping
	if logDrop {
		w.dropping = true
	}
	w.mu.Unlock()

	if logDrop {
		w.opts.Logger.Error("usage buffer full: dropping the oldest records until a write succeeds",
			"max_buffered", w.opts.MaxBuffered, "first_dropped_run_id", dropped.ID)
	}
	if full {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// The messages of a record kept without part of it. They are constants:
// they hold no memory of the record's own.
const (
	outputNotKept = "output not kept: the server held too much output waiting to be written"
	detailNotKept = "output, args, env names, params, results and messages not kept: the server held too much waiting to be written"
)

// holdLocked and forgetLocked keep pending and bytes in step with the
// records held.
func (w *Writer) holdLocked(r *wasmwiz.UsageRecord) {
	w.pending[r.ID] = r
	w.bytes += heldBytes(r)
}

func (w *Writer) forgetLocked(r *wasmwiz.UsageRecord) {
	if w.pending[r.ID] == r {
		delete(w.pending, r.ID)
	}
	w.bytes -= heldBytes(r)
}

// heldBytes is what MaxBufferedBytes counts of a held record: its output
// and its detail. A held record is never changed, so it counts the same
// when it is forgotten as when it was held.
func heldBytes(r *wasmwiz.UsageRecord) int64 { return outputBytes(r) + detailBytes(r) }

func outputBytes(r *wasmwiz.UsageRecord) int64 { return int64(len(r.Stdout) + len(r.Stderr)) }

// stringHeader is what a string costs besides its bytes (a pointer and a
// length), in a slice or a struct.
const stringHeader = 16

// detailBytes estimates, cheaply, the memory of the parts of r's detail
// that a request or a guest can make long: its args, env names and params
// (wasmwiz.RecordDetailBytes together), its results (as much again), its
// trap and its message (8 KiB each): their bytes and their headers.
func detailBytes(r *wasmwiz.UsageRecord) int64 {
	n := 0
	for _, ss := range [][]string{r.Args, r.EnvNames, r.Params} {
		for _, s := range ss {
			n += stringHeader + len(s)
		}
	}
	for _, v := range r.Results {
		n += 2*stringHeader + len(v.Type) + len(v.Value)
	}
	n += len(r.Trap)
	if r.Message != outputNotKept && r.Message != detailNotKept {
		n += len(r.Message)
	}
	return int64(n)
}

// Pending returns a copy of the record with id while it waits to be
// written (queued or in the batch being written), and nil otherwise: a run
// read right after its answer is found here before the store has it.
func (w *Writer) Pending(id string) *wasmwiz.UsageRecord {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.pending[id]
	if r == nil {
		return nil
	}
	c := *r
	return &c
}

// Stats returns the writer's counters.
func (w *Writer) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.Buffered = uint64(len(w.queue) + len(w.batch))
	s.BufferedBytes = uint64(w.bytes)
	return s
}

// Close stops taking records and writes everything held, retrying with
// backoff until ctx ends. It returns nil when every record was written, and
// otherwise wasmwiz.EUNAVAILABLE naming how many were lost (they are counted as
// dropped). Later calls wait for the first to finish and return its result.
func (w *Writer) Close(ctx context.Context) error {
	w.closeOnce.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.closeCtx = ctx
		w.mu.Unlock()
		close(w.closing)
		<-w.done
		w.mu.Lock()
		lost := len(w.queue) + len(w.batch)
		w.stats.Dropped += uint64(lost)
		w.queue, w.batch = nil, nil
		clear(w.pending)
		w.bytes = 0
		w.mu.Unlock()
		if lost > 0 {
			w.closeErr = wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, ctx.Err(), "usage writer closed with %d records not written", lost)
			w.opts.Logger.Error("usage records lost at shutdown", "records", lost, "err", ctx.Err())
		}
	})
	<-w.done
	return w.closeErr
}

// loop is the writer goroutine: it writes a batch when one is full, when
// FlushInterval passes, and at Close, until Close's context ends.
func (w *Writer) loop() {
	defer close(w.done)
	ticker := time.NewTicker(w.opts.FlushInterval)
	defer ticker.Stop()
	closing := false
	for {
		if !closing {
			select {
			case <-w.wake:
			case <-ticker.C:
			case <-w.closing:
				closing = true
			}
		}
		if !w.flush(closing) {
			return // Close's context ended
		}
		if closing {
			return
		}
		select {
		case <-w.closing:
			closing = true
		default:
		}
	}
}

// flush writes, in batches, the records waiting when it is called and then
// every batch that fills meanwhile (all records, when closing). It returns
// false when Close's context ended first.
func (w *Writer) flush(closing bool) bool {
	backoff := time.Duration(0)
	// due is how many records the flush writes before it may return: those
	// waiting when it began. Records that come while it writes wait for the
	// next interval unless they fill a batch; were they written as they
	// come, a steady stream would keep the loop writing batches of the few
	// records that came during the last write (about 20 at 4 000 runs/s),
	// each with its own transaction, and never fill one.
	w.mu.Lock()
	due := len(w.batch) + len(w.queue)
	w.mu.Unlock()
	// span is how many records of the held batch one call writes, and fails
	// how many calls in a row failed transiently at that span: a batch too
	// large to commit within WriteTimeout (a slow disk, a database under
	// load) would fail whole at every retry and hold every later record
	// behind it, so after splitAfter such failures half of it is written
	// at a time. In an outage that only makes the held batch's calls
	// smaller until it is written; the next batch is whole again.
	span, fails := 0, 0
	for {
		w.mu.Lock()
		if len(w.batch) == 0 {
			span, fails = 0, 0
			n := min(len(w.queue), w.opts.BatchSize)
			if n == 0 || (due <= 0 && !closing && n < w.opts.BatchSize) {
				w.mu.Unlock()
				return true
			}
			w.batch = make([]*wasmwiz.UsageRecord, n)
			copy(w.batch, w.queue)
			clear(w.queue[:n])
			w.queue = w.queue[n:]
		}
		batch := w.batch
		w.mu.Unlock()
		chunk := batch
		if span > 0 && span < len(batch) {
			chunk = batch[:span]
		}

		parent := context.Background()
		if closing {
			parent = w.closeCtx
		}
		written, refused, rest, err := w.write(parent, chunk)
		// What is still to write: rest, which ends chunk, and what
		// follows chunk in the batch.
		left := batch[len(chunk)-len(rest):]

		w.mu.Lock()
		due -= written + refused
		w.stats.Written += uint64(written)
		w.stats.Dropped += uint64(refused)
		if written > 0 {
			w.stats.Batches++
			w.dropping = false
		}
		if err == nil && len(left) > 0 {
			// A part of a split batch: the next part at once.
			for _, r := range chunk {
				w.forgetLocked(r)
			}
			w.batch = left
			w.mu.Unlock()
			fails = 0
			continue
		}
		if err == nil {
			for _, r := range w.batch {
				w.forgetLocked(r)
			}
			w.batch = nil
			w.mu.Unlock()
			if backoff > 0 {
				w.opts.Logger.Info("usage records are being written again")
				// What came while the database was away has waited
				// long enough: it is written now too.
				w.mu.Lock()
				due = len(w.queue)
				w.mu.Unlock()
			}
			backoff = 0
			continue
		}
		for _, r := range batch[:len(batch)-len(left)] {
			w.forgetLocked(r) // written or refused: not held any more
		}
		w.batch = left
		w.stats.Failures++
		w.mu.Unlock()
		if fails++; fails >= splitAfter && len(rest) > 1 {
			span, fails = len(rest)/2, 0
		}

		backoff = nextBackoff(backoff, w.opts.RetryMin, w.opts.RetryMax)
		w.opts.Logger.Warn("usage records not written; retrying", "records", len(batch),
			"retry_in", backoff, "code", wasmwiz.ErrorCode(err), "err", err)
		if !w.sleep(backoff, &closing) {
			return false
		}
	}
}

// write writes batch. When the store refuses it for a reason other than
// being unavailable (wasmwiz.EINVALID for a record it cannot take, or wasmwiz.EINTERNAL),
// retrying the batch as it is would block every later record behind one bad
// record, so the batch is written again one record at a time and the
// records refused on their own are dropped, counted and logged. It returns
// how many records were written and refused, and on a transient failure
// (wasmwiz.EUNAVAILABLE, or the context ending) the records still to write.
func (w *Writer) write(parent context.Context, batch []*wasmwiz.UsageRecord) (written, refused int, rest []*wasmwiz.UsageRecord, err error) {
	create := func(runs []*wasmwiz.UsageRecord) error {
		// WriteTimeout bounds the call, not the store's call timeout
		// (WASMWIZ_DATABASE_TIMEOUT), which is shorter by default: a large
		// batch may take longer than a request should.
		ctx, cancel := context.WithTimeout(wasmwiz.WithOwnDeadline(parent), w.opts.WriteTimeout)
		defer cancel()
		return w.svc.CreateRuns(ctx, runs)
	}
	if err = create(batch); err == nil {
		return len(batch), 0, nil, nil
	}
	if transient(err) {
		return 0, 0, batch, err
	}
	for i, r := range batch {
		err := create(batch[i : i+1])
		switch {
		case err == nil:
			written++
		case transient(err):
			return written, refused, batch[i:], err
		default:
			refused++
			w.opts.Logger.Error("usage record refused by the store; dropped", "run_id", r.ID,
				"code", wasmwiz.ErrorCode(err), "err", err)
		}
	}
	return written, refused, nil, nil
}

// splitAfter is how many transient failures in a row of the same records
// make the writer write half as many at a time (flush).
const splitAfter = 3

// transient reports whether a failed write may succeed when retried as is.
func transient(err error) bool {
	return wasmwiz.ErrorCode(err) == wasmwiz.EUNAVAILABLE || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// sleep waits d, or less when Close is called meanwhile (a shutdown should
// not wait out a long backoff before its first attempt) or when a probe
// finds the database answering again. It returns false when Close's
// context ends.
func (w *Writer) sleep(d time.Duration, closing *bool) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	var probe <-chan time.Time
	if w.opts.Probe != nil && d > w.opts.ProbeInterval {
		tick := time.NewTicker(w.opts.ProbeInterval)
		defer tick.Stop()
		probe = tick.C
	}
	for {
		done, ok := w.wait(t.C, probe, closing)
		if done {
			return ok
		}
		ctx, cancel := context.WithTimeout(context.Background(), w.opts.ProbeInterval)
		err := w.opts.Probe(ctx)
		cancel()
		if err == nil {
			return true // the database answers: write now
		}
	}
}

// wait waits for the backoff timer, a probe tick, Close, or Close's context
// ending; done is false for a probe tick.
func (w *Writer) wait(timer, probe <-chan time.Time, closing *bool) (done, ok bool) {
	if *closing {
		select {
		case <-timer:
			return true, true
		case <-probe:
			return false, true
		case <-w.closeCtx.Done():
			return true, false
		}
	}
	select {
	case <-timer:
		return true, true
	case <-probe:
		return false, true
	case <-w.closing:
		*closing = true
		return true, w.closeCtx.Err() == nil
	}
}

// nextBackoff doubles cur within [lo, hi].
func nextBackoff(cur, lo, hi time.Duration) time.Duration {
	if cur < lo {
		return lo
	}
	if cur > hi/2 {
		return hi
	}
	return cur * 2
}
