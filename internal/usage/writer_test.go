package usage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/metrictest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// fakeRuns is a wasmwiz.RunService whose CreateRuns keeps records by id (idempotent,
// as the stores are) and can fail, block, or fail after committing.
type fakeRuns struct {
	wasmwiz.RunService // nil: only CreateRuns is called

	mu             sync.Mutex
	stored         map[string]wasmwiz.UsageRecord
	order          []string
	batches        [][]string
	fail           error // CreateRuns returns it (after storing, when commitThenFail)
	commitThenFail bool
	block          chan struct{} // when set, CreateRuns waits for it to close (or its ctx)
	calls          chan int      // when set, gets len(batch) at every call, before anything else
	maxBatch       int           // when set, a larger batch fails EUNAVAILABLE at its deadline, as one too large to commit in time
	unmarked       int           // calls whose context had no deadline of its own (wasmwiz.WithOwnDeadline)
}

func newFakeRuns() *fakeRuns { return &fakeRuns{stored: map[string]wasmwiz.UsageRecord{}} }

// blockedFakeRuns is a store whose CreateRuns calls wait until the test
// closes f.block, reporting its calls.
func blockedFakeRuns() *fakeRuns {
	f := newFakeRuns()
	f.block = make(chan struct{})
	f.calls = make(chan int, 100)
	return f
}

// downFakeRuns is a store whose database is down (every CreateRuns fails
// EUNAVAILABLE until the test says otherwise), reporting its calls.
func downFakeRuns() *fakeRuns {
	f := newFakeRuns()
	f.fail = wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "database is down")
	f.calls = make(chan int, 1000)
	return f
}

func (f *fakeRuns) CreateRuns(ctx context.Context, runs []*wasmwiz.UsageRecord) error {
	f.mu.Lock()
	calls, block := f.calls, f.block
	f.mu.Unlock()
	if calls != nil {
		select { // never block the writer on a test that stopped listening
		case calls <- len(runs):
		default:
		}
	}
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, ctx.Err(), "blocked")
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := wasmwiz.OwnDeadline(ctx); !ok {
		f.unmarked++
	}
	if f.maxBatch > 0 && len(runs) > f.maxBatch {
		return wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, context.DeadlineExceeded, "create runs: database unavailable, retry later")
	}
	if f.fail != nil && !f.commitThenFail {
		return f.fail
	}
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.ID)
		if _, ok := f.stored[r.ID]; !ok {
			f.stored[r.ID] = *r
			f.order = append(f.order, r.ID)
		}
	}
	f.batches = append(f.batches, ids)
	if f.fail != nil {
		return f.fail
	}
	return nil
}

func (f *fakeRuns) set(fn func(f *fakeRuns)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeRuns) storedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := append([]string(nil), f.order...)
	sort.Strings(out)
	return out
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func testRun(i int) *wasmwiz.UsageRecord {
	return &wasmwiz.UsageRecord{UserID: int64(i%3 + 1), ModuleSHA256: fmt.Sprintf("%064d", i), Tier: wasmwiz.TierFree, Status: wasmwiz.StatusOK, DurationMS: float64(i)}
}

// recordRuns records testRun(i) for each i from from up to to, in order,
// and returns them.
func recordRuns(w *Writer, from, to int) []*wasmwiz.UsageRecord {
	var runs []*wasmwiz.UsageRecord
	for i := from; i < to; i++ {
		r := testRun(i)
		w.Record(r)
		runs = append(runs, r)
	}
	return runs
}

func sortedIDs(runs []*wasmwiz.UsageRecord) []string {
	var out []string
	for _, r := range runs {
		out = append(out, r.ID)
	}
	sort.Strings(out)
	return out
}

func TestUsageWriterFlushesOnClose(t *testing.T) {
	t.Parallel()
	f := newFakeRuns()
	w := New(f, Options{BatchSize: 1000, FlushInterval: time.Hour, Logger: quiet})
	runs := recordRuns(w, 0, 10)
	if st := w.Stats(); st.Buffered != 10 || st.Written != 0 {
		t.Fatalf("before Close: %+v, want 10 buffered and none written (no full batch, no interval yet)", st)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got, want := fmt.Sprint(f.storedIDs()), fmt.Sprint(sortedIDs(runs)); got != want {
		t.Fatalf("stored %v, want %v", got, want)
	}
	if st := w.Stats(); st != (Stats{Written: 10, Batches: 1}) {
		t.Fatalf("after Close: %+v", st)
	}
}

func TestUsageWriterRecordSetsIDAndTime(t *testing.T) {
	t.Parallel()
	f := newFakeRuns()
	w := New(f, Options{Logger: quiet})
	r := testRun(1)
	before := time.Now()
	w.Record(r)
	if !wasmwiz.ValidRunID(r.ID) || r.CreatedAt.Before(before.Add(-time.Second)) || r.CreatedAt.IsZero() {
		t.Fatalf("Record left id %q created %v", r.ID, r.CreatedAt)
	}
	given := &wasmwiz.UsageRecord{ID: "run_given", CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	w.Record(given)
	// The writer keeps a copy: changing the caller's record changes nothing.
	r.Status = wasmwiz.StatusTrap
	w.Record(nil)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if got := f.stored[r.ID]; got.Status != wasmwiz.StatusOK {
		t.Fatalf("stored status %q: the writer shares the caller's record", got.Status)
	}
	if got := f.stored["run_given"]; !got.CreatedAt.Equal(given.CreatedAt) {
		t.Fatalf("a given id and time were replaced: %+v", got)
	}
	if len(f.stored) != 2 {
		t.Fatalf("stored %d records, want 2 (nil is ignored)", len(f.stored))
	}
}

func TestUsageWriterBatches(t *testing.T) {
	t.Parallel()
	f := newFakeRuns()
	f.calls = make(chan int, 100)
	w := New(f, Options{BatchSize: 10, FlushInterval: time.Hour, Logger: quiet})
	for i := range 10 {
		w.Record(testRun(i))
	}
	// A full batch is written without waiting for the interval or Close.
	if n := testenv.Recv(t, f.calls, "the first batch"); n != 10 {
		t.Fatalf("first batch has %d records, want 10", n)
	}
	for i := 10; i < 35; i++ {
		w.Record(testRun(i))
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(f.storedIDs()); got != 35 {
		t.Fatalf("stored %d records, want 35", got)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.batches {
		if len(b) > 10 {
			t.Fatalf("a batch of %d records, over BatchSize 10", len(b))
		}
	}
}

// TestUsageWriterFillsBatchesUnderSteadyLoad: records that come while a
// batch is being written wait to fill the next one (or for the interval);
// they are not written at once as a small batch of their own, which under a
// steady stream would write every few records in a transaction of their own.
func TestUsageWriterFillsBatchesUnderSteadyLoad(t *testing.T) {
	t.Parallel()
	f := blockedFakeRuns()
	w := New(f, Options{BatchSize: 10, FlushInterval: time.Hour, Logger: quiet})
	var runs []*wasmwiz.UsageRecord
	record := func(from, to int) { runs = append(runs, recordRuns(w, from, to)...) }
	record(0, 10)
	if n := testenv.Recv(t, f.calls, "the first batch"); n != 10 {
		t.Fatalf("first batch has %d records, want 10", n)
	}
	record(10, 13) // while the first batch is being written
	close(f.block)
	testenv.WaitFor(t, "the first batch to be written", func() bool { return w.Stats().Written >= 10 })
	record(13, 20)
	if n := testenv.Recv(t, f.calls, "the second batch"); n != 10 {
		t.Fatalf("second batch has %d records, want the 10 that filled it", n)
	}
	closeAndCheck(t, w, f, runs, 20, 0)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.batches) != 2 {
		t.Fatalf("%d batches, want 2 full ones: %v", len(f.batches), f.batches)
	}
}

func TestUsageWriterFlushInterval(t *testing.T) {
	t.Parallel()
	f := newFakeRuns()
	f.calls = make(chan int, 10)
	w := New(f, Options{BatchSize: 1000, FlushInterval: time.Millisecond, Logger: quiet})
	defer w.Close(context.Background())
	w.Record(testRun(1))
	// Without a full batch and without Close, the interval writes it.
	if n := testenv.Recv(t, f.calls, "the interval flush"); n != 1 {
		t.Fatalf("interval flush wrote %d records, want 1", n)
	}
}

// TestUsageWriterKeepsRecordsWhileTheDatabaseIsDown: failures are retried,
// records keep coming, and all are written once the database answers.
func TestUsageWriterKeepsRecordsWhileTheDatabaseIsDown(t *testing.T) {
	t.Parallel()
	f := downFakeRuns()
	w := New(f, Options{BatchSize: 5, FlushInterval: time.Millisecond,
		RetryMin: time.Microsecond, RetryMax: time.Millisecond, Logger: quiet})
	runs := recordRuns(w, 0, 12)
	for range 3 { // three failed attempts at least
		testenv.Recv(t, f.calls, "a failed attempt")
	}
	runs = append(runs, recordRuns(w, 12, 20)...) // records keep coming while it is down
	st := w.Stats()
	if st.Written != 0 || st.Buffered != 20 || st.Dropped != 0 || st.Failures < 2 {
		t.Fatalf("while down: %+v, want 20 buffered, none written or dropped, failures counted", st)
	}
	f.set(func(f *fakeRuns) { f.fail = nil })
	closeAndCheck(t, w, f, runs, 20, 0)
}

// TestUsageWriterRetryCountsNothingTwice: a batch that committed but whose
// answer was lost is retried with the same ids (all of them, or after
// failures in a row a part of them: the writer splits a batch that keeps
// failing), never with new ones.
func TestUsageWriterRetryCountsNothingTwice(t *testing.T) {
	t.Parallel()
	f := newFakeRuns()
	f.fail, f.commitThenFail = wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "connection reset after commit"), true
	f.calls = make(chan int, 100)
	w := New(f, Options{BatchSize: 4, FlushInterval: time.Hour,
		RetryMin: time.Microsecond, RetryMax: time.Microsecond, Logger: quiet})
	for i := range 4 {
		w.Record(testRun(i))
	}
	testenv.Recv(t, f.calls, "the first attempt")
	testenv.Recv(t, f.calls, "the retry")
	f.set(func(f *fakeRuns) { f.fail = nil })
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.stored) != 4 || len(f.batches) < 2 {
		t.Fatalf("stored %d records in %d calls, want 4 records in 2 or more calls", len(f.stored), len(f.batches))
	}
	first := map[string]bool{}
	for _, id := range f.batches[0] {
		first[fmt.Sprint(id)] = true
	}
	for _, b := range f.batches[1:] {
		for _, id := range b {
			if !first[fmt.Sprint(id)] {
				t.Fatalf("a retry sent other ids: %v then %v", f.batches[0], b)
			}
		}
	}
}

// TestUsageWriterBoundsMemory: with the database stuck, Record never blocks
// and drops the oldest waiting records past MaxBuffered, never the batch
// being written.
func TestUsageWriterBoundsMemory(t *testing.T) {
	t.Parallel()
	f := blockedFakeRuns()
	w := New(f, Options{BatchSize: 2, MaxBuffered: 5, FlushInterval: time.Hour, Logger: quiet})
	runs := recordRuns(w, 0, 2)
	if n := testenv.Recv(t, f.calls, "the first batch"); n != 2 { // the writer is now stuck inside CreateRuns
		t.Fatalf("first batch of %d, want 2", n)
	}
	runs = append(runs, recordRuns(w, 2, 10)...) // would block here if Record waited for the database
	if st := w.Stats(); st.Buffered != 5 || st.Dropped != 5 {
		t.Fatalf("stuck: %+v, want 5 buffered (the bound) and 5 dropped", st)
	}
	// The writer's metrics export the same figures.
	wantMetrics := map[string]float64{"wasmwiz_usage_records_buffered": 5, "wasmwiz_usage_records_dropped_total": 5,
		"wasmwiz_usage_records_written_total": 0}
	if got := metrictest.Values(t, w.Metrics()...); !maps.Equal(got, wantMetrics) {
		t.Fatalf("metrics %v, want %v", got, wantMetrics)
	}
	close(f.block)
	// Kept: the batch in flight (0, 1) and the newest three (7, 8, 9).
	closeAndCheck(t, w, f, []*wasmwiz.UsageRecord{runs[0], runs[1], runs[7], runs[8], runs[9]}, 5, 5)
}

func TestUsageWriterBoundEqualToBatch(t *testing.T) {
	t.Parallel()
	f := blockedFakeRuns()
	w := New(f, Options{BatchSize: 2, MaxBuffered: 1, FlushInterval: time.Hour, Logger: quiet})
	w.Record(testRun(0))
	w.Record(testRun(1))
	testenv.Recv(t, f.calls, "the first batch")
	w.Record(testRun(2)) // nothing waiting to drop: the new record goes
	if st := w.Stats(); st.Buffered != 2 || st.Dropped != 1 {
		t.Fatalf("%+v, want 2 buffered (MaxBuffered raised to BatchSize) and 1 dropped", st)
	}
	close(f.block)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestUsageWriterCloseGivesUp: with the database down for good, Close
// retries until its context ends, then reports and counts what it lost.
func TestUsageWriterCloseGivesUp(t *testing.T) {
	t.Parallel()
	f := downFakeRuns()
	w := New(f, Options{BatchSize: 100, FlushInterval: time.Hour,
		RetryMin: time.Microsecond, RetryMax: time.Millisecond, Logger: quiet})
	for i := range 3 {
		w.Record(testRun(i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for range 3 { // let Close try a few times, then give up
			<-f.calls
		}
		cancel()
	}()
	err := w.Close(ctx)
	if wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE || !errors.Is(err, context.Canceled) {
		t.Fatalf("Close with the database down: %v, want wasmwiz.EUNAVAILABLE wrapping the context's end", err)
	}
	if st := w.Stats(); st.Dropped != 3 || st.Buffered != 0 || st.Written != 0 || st.Failures < 3 {
		t.Fatalf("after giving up: %+v, want 3 dropped", st)
	}
	// Later records are dropped and counted, and Close answers the same.
	w.Record(testRun(9))
	if st := w.Stats(); st.Dropped != 4 {
		t.Fatalf("a record after Close: dropped %d, want 4", st.Dropped)
	}
	if err2 := w.Close(context.Background()); err2 != err {
		t.Fatalf("second Close: %v, want the first's %v", err2, err)
	}
}

func TestUsageWriterConcurrentRecords(t *testing.T) {
	t.Parallel()
	f := newFakeRuns()
	w := New(f, Options{BatchSize: 64, FlushInterval: time.Millisecond, Logger: quiet})
	const goroutines, each = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				w.Record(testRun(g*each + i))
				if i%100 == 0 {
					_ = w.Stats()
				}
			}
		}()
	}
	testenv.Wait(t, "the recording goroutines", wg.Wait)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(f.storedIDs()); got != goroutines*each {
		t.Fatalf("stored %d records, want %d", got, goroutines*each)
	}
	if st := w.Stats(); st.Written != goroutines*each || st.Dropped != 0 {
		t.Fatalf("%+v", st)
	}
}

func TestNextBackoff(t *testing.T) {
	t.Parallel()
	lo, hi := 100*time.Millisecond, 30*time.Second
	tests := []struct {
		name      string
		cur, want time.Duration
	}{
		{"first failure", 0, lo},
		{"doubles", lo, 2 * lo},
		{"doubles again", 2 * lo, 4 * lo},
		{"reaches the cap", 20 * time.Second, hi},
		{"stays at the cap", hi, hi},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := nextBackoff(tt.cur, lo, hi); got != tt.want {
				t.Fatalf("nextBackoff(%v) = %v, want %v", tt.cur, got, tt.want)
			}
		})
	}
}

// refusingRuns refuses, as a store would with wasmwiz.EINVALID, every batch that
// holds a record of tier "poison".
type refusingRuns struct{ *fakeRuns }

func (f refusingRuns) CreateRuns(ctx context.Context, runs []*wasmwiz.UsageRecord) error {
	for _, r := range runs {
		if r.Tier == "poison" {
			return wasmwiz.Errorf(wasmwiz.EINVALID, "record %s refused", r.ID)
		}
	}
	return f.fakeRuns.CreateRuns(ctx, runs)
}

// TestUsageWriterDropsOnlyARefusedRecord: one record the store refuses
// must not block the others behind it forever.
func TestUsageWriterDropsOnlyARefusedRecord(t *testing.T) {
	t.Parallel()
	f := newFakeRuns()
	w := New(refusingRuns{f}, Options{BatchSize: 4, FlushInterval: time.Hour,
		RetryMin: time.Microsecond, RetryMax: time.Microsecond, Logger: quiet})
	var good []*wasmwiz.UsageRecord
	for i := range 10 {
		r := testRun(i)
		if i == 5 {
			r.Tier = "poison"
		} else {
			good = append(good, r)
		}
		w.Record(r)
	}
	closeAndCheck(t, w, f, good, 9, 1) // every record but the refused one
}

// TestUsageWriterWritesWhenTheDatabaseIsBack: during a backoff far longer
// than any test, the writer probes the database and writes the records it
// holds as soon as a probe succeeds, not when the backoff ends.
func TestUsageWriterWritesWhenTheDatabaseIsBack(t *testing.T) {
	t.Parallel()
	f := downFakeRuns()
	var mu sync.Mutex
	up, probes := false, 0
	w := New(f, Options{BatchSize: 5, FlushInterval: time.Millisecond,
		RetryMin: time.Hour, RetryMax: time.Hour, Logger: quiet,
		ProbeInterval: 5 * time.Millisecond,
		Probe: func(ctx context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			probes++
			if !up {
				return errors.New("still down")
			}
			return nil
		}})
	defer w.Close(context.Background())
	for i := range 7 {
		w.Record(testRun(i))
	}
	testenv.Recv(t, f.calls, "the first attempt") // it failed; the next is an hour away
	waitProbes := func(n int) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			p := probes
			mu.Unlock()
			if p >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the writer probed %d times, want %d", p, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitProbes(3)
	if st := w.Stats(); st.Written != 0 || st.Buffered != 7 {
		t.Fatalf("while down: %+v", st)
	}
	f.set(func(f *fakeRuns) { f.fail = nil })
	mu.Lock()
	up = true
	mu.Unlock()
	testenv.WaitFor(t, "the 7 records to be written once the database answers", func() bool { return w.Stats().Written == 7 })
}

// closeAndCheck closes w and fails t unless the store holds exactly want,
// and w counts written and dropped records so, with none left buffered.
func closeAndCheck(t *testing.T, w *Writer, f *fakeRuns, want []*wasmwiz.UsageRecord, written, dropped uint64) {
	t.Helper()
	if err := w.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got, want := fmt.Sprint(f.storedIDs()), fmt.Sprint(sortedIDs(want)); got != want {
		t.Fatalf("stored %v, want %v", got, want)
	}
	if st := w.Stats(); st.Written != written || st.Dropped != dropped || st.Buffered != 0 {
		t.Fatalf("after Close: %+v, want %d written, %d dropped, none buffered", st, written, dropped)
	}
}

// TestUsageWriterPendingAndOutputBudget: a record is found by id while it
// waits, not after it is written; output past MaxBufferedBytes is not held,
// but its record is.
func TestUsageWriterPendingAndOutputBudget(t *testing.T) {
	t.Parallel()
	f := newFakeRuns()
	f.block = make(chan struct{})
	w := New(f, Options{BatchSize: 1000, FlushInterval: time.Hour, MaxBufferedBytes: 10, Logger: quiet})
	a, b := testRun(1), testRun(2)
	a.Stdout = []byte("123456")
	b.Stdout = []byte("abcdef")
	w.Record(a)
	w.Record(b)
	got := w.Pending(a.ID)
	if got == nil || string(got.Stdout) != "123456" {
		t.Fatalf("Pending(a) = %+v", got)
	}
	got = w.Pending(b.ID)
	if got == nil || len(got.Stdout) != 0 || !got.StdoutTruncated || got.Message == "" {
		t.Fatalf("Pending(b), over the output budget: %+v", got)
	}
	if st := w.Stats(); st.OutputDropped != 1 || st.BufferedBytes != 6 {
		t.Fatalf("stats %+v, want one output dropped and 6 bytes held", st)
	}
	if w.Pending("run_nothing") != nil {
		t.Fatal("Pending of an unknown id")
	}
	close(f.block)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w.Pending(a.ID) != nil {
		t.Fatal("a written record is still pending")
	}
	if st := w.Stats(); st.BufferedBytes != 0 {
		t.Fatalf("bytes held after the write: %d", st.BufferedBytes)
	}
}

// largeDetail returns testRun(i) with a detail as large as a record keeps:
// args and env names of RecordDetailBytes, results of as much again, an
// 8 KiB trap and an 8 KiB message; detailText is the bytes of its strings.
func largeDetail(i int) (r *wasmwiz.UsageRecord, detailText int) {
	r = testRun(i)
	for range 6 {
		r.Args = append(r.Args, strings.Repeat("a", 1000))
	}
	r.EnvNames = []string{strings.Repeat("E", 1000), strings.Repeat("F", 1000)}
	for range 8 {
		r.Results = append(r.Results, wasmwiz.RunValue{Type: "i64", Value: strings.Repeat("9", 1000)})
	}
	r.Trap = strings.Repeat("t", 8<<10)
	r.Message = strings.Repeat("m", 8<<10)
	return r, 8*1000 + 8*1003 + 2*(8<<10)
}

// TestUsageWriterDetailBudget: while the database does not answer, records
// whose details are large (about 33 KiB of args, env names, results, trap
// and message each) are held within MaxBufferedBytes as their output is. A
// record whose output does not fit beside its detail is kept without its
// output; one whose detail does not fit either is kept without that too,
// and says so; a thousand of them hold no more than the bound, and every
// record is written when the database answers.
func TestUsageWriterDetailBudget(t *testing.T) {
	t.Parallel()
	const bound = 64 << 10
	f := newFakeRuns()
	f.block = make(chan struct{})
	w := New(f, Options{BatchSize: 10_000, MaxBuffered: 10_000, FlushInterval: time.Hour, MaxBufferedBytes: bound, Logger: quiet})

	first, text := largeDetail(0)
	w.Record(first)
	if st := w.Stats(); st.BufferedBytes < uint64(text) || st.BufferedBytes > bound || st.DetailDropped != 0 {
		t.Fatalf("one record of %d bytes of detail text: %+v, want it held and counted", text, st)
	}

	// 16 KiB of output beside 16 KiB of args: the output does not fit with
	// what is held, the args do.
	mid := testRun(1)
	mid.Args = []string{strings.Repeat("b", 16<<10)}
	mid.Stdout = bytes.Repeat([]byte("o"), 16<<10)
	w.Record(mid)
	got := w.Pending(mid.ID)
	if got == nil || len(got.Stdout) != 0 || !got.StdoutTruncated || len(got.Args) != 1 || got.DetailTruncated {
		t.Fatalf("Pending(mid), its output over the budget beside its args: %+v", got)
	}

	var last *wasmwiz.UsageRecord
	for i := range 1000 {
		last, _ = largeDetail(i + 2)
		last.Stdout = []byte("out")
		w.Record(last)
		if st := w.Stats(); st.BufferedBytes > bound {
			t.Fatalf("after %d records of large detail: %d bytes held, over the bound of %d", i+1, st.BufferedBytes, bound)
		}
	}
	st := w.Stats()
	if st.Buffered != 1002 || st.Dropped != 0 || st.DetailDropped != 1000 || st.OutputDropped != 1001 {
		t.Fatalf("stats %+v, want 1002 records held, 1000 kept without detail, 1001 without output", st)
	}
	got = w.Pending(last.ID)
	if got == nil || got.Args != nil || got.EnvNames != nil || got.Results != nil || got.Trap != "" || len(got.Stdout) != 0 ||
		!got.DetailTruncated || !got.StdoutTruncated || !strings.Contains(got.Message, "not kept") {
		t.Fatalf("Pending(last), its detail over the budget: %+v", got)
	}
	if got := w.Pending(first.ID); got == nil || len(got.Args) != 6 || got.Trap != first.Trap || got.Message != first.Message {
		t.Fatalf("Pending(first), held whole: %+v", got)
	}

	close(f.block)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.Written != 1002 || st.BufferedBytes != 0 {
		t.Fatalf("after the write: %+v, want 1002 written and nothing held", st)
	}
	f.mu.Lock()
	stored := f.stored[first.ID]
	f.mu.Unlock()
	if len(stored.Args) != 6 || len(stored.Results) != 8 {
		t.Fatalf("the first record stored without its detail: %+v", stored)
	}
}

// TestUsageWriterSplitsABatchTooLargeToCommit: a store that cannot commit
// a batch of more than 7 records in time (EUNAVAILABLE at the deadline
// every time) still gets every record, in smaller calls, and no record is
// dropped; the records that come after the batch are written too. Every
// call has the writer's own deadline, not the store's call timeout.
func TestUsageWriterSplitsABatchTooLargeToCommit(t *testing.T) {
	t.Parallel()
	f := newFakeRuns()
	f.maxBatch = 7
	w := New(f, Options{BatchSize: 40, FlushInterval: time.Millisecond,
		RetryMin: time.Microsecond, RetryMax: time.Millisecond, Logger: quiet})
	runs := recordRuns(w, 0, 100)
	testenv.WaitFor(t, "every record to be written", func() bool { return w.Stats().Written == 100 })
	closeAndCheck(t, w, f, runs, 100, 0)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.batches {
		if len(b) > f.maxBatch {
			t.Fatalf("a batch of %d records was stored, over the store's %d", len(b), f.maxBatch)
		}
	}
	if f.unmarked != 0 {
		t.Fatalf("%d CreateRuns calls without a deadline of their own", f.unmarked)
	}
}
