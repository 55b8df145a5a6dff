package wasmwiz_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/mock"
	"github.com/wasmwiz/wasmwiz/internal/sqlite/sqlitetest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// heartbeatCounter is a real store whose heartbeats are counted: the bytes
// of output of those the store took, and how many of those carried any.
// With lose, two heartbeats of every three fail: the first before it
// reaches the store, the second after the store took it (its answer lost).
type heartbeatCounter struct {
	wasmwiz.RunStore
	lose bool

	mu        sync.Mutex
	calls     int
	sentBytes int
	withData  int
}

func (c *heartbeatCounter) HeartbeatRun(ctx context.Context, id string, stdout, stderr wasmwiz.OutputTail) (bool, error) {
	c.mu.Lock()
	c.calls++
	n := c.calls
	c.mu.Unlock()
	if c.lose && n%3 == 1 {
		return false, errors.New("connection reset before the store")
	}
	cancel, err := c.RunStore.HeartbeatRun(ctx, id, stdout, stderr)
	if err == nil {
		c.mu.Lock()
		c.sentBytes += len(stdout.Data) + len(stderr.Data)
		if len(stdout.Data)+len(stderr.Data) > 0 {
			c.withData++
		}
		c.mu.Unlock()
	}
	if c.lose && n%3 == 2 && err == nil {
		return false, errors.New("connection reset after the store took it")
	}
	return cancel, err
}

func (c *heartbeatCounter) counts() (sentBytes, withData int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sentBytes, c.withData
}

// TestAsyncHeartbeatsCarryOnlyNewOutput: a background run whose guest
// writes many small pieces, each reaching the store before the next is
// written, on a real store. Its heartbeats carry each byte once, not the
// whole output at every heartbeat (the database's work is proportional to
// the output); while it runs its record holds exactly what was written;
// heartbeats that fail, before or after the store took them, lose and
// repeat nothing; the followed output and the final record are byte-exact.
func TestAsyncHeartbeatsCarryOnlyNewOutput(t *testing.T) {
	for _, tc := range []struct {
		name string
		lose bool
	}{{"EachByteOnce", false}, {"LostHeartbeats", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := sqlitetest.Open(t)
			u, uctx := sqlitetest.User(t, db, "slow@example.com")
			rec := sqlitetest.QueuedRun(t, uctx, db)

			// The guest writes a piece when the test says, and ends when
			// the test closes steps.
			type step struct {
				stderr bool
				p      []byte
			}
			steps, written := make(chan step), make(chan struct{})
			var wantOut, wantErr []byte
			eng := &mock.Engine{RunFn: func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
				// The engine hears whose run it is, as for a run in the foreground.
				if owner := wasmwiz.OwnerFromContext(ctx); owner != wasmwiz.RateKey(u, "") {
					t.Errorf("the background run's owner is %q, want %q", owner, wasmwiz.RateKey(u, ""))
				}
				var out, errOut []byte
				for {
					select {
					case <-ctx.Done():
						return nil, ctx.Err()
					case s, ok := <-steps:
						if !ok {
							return &wasmwiz.Result{Status: wasmwiz.StatusOK, Stdout: out, Stderr: errOut}, nil
						}
						req.OnOutput(s.stderr, s.p)
						if s.stderr {
							errOut = append(errOut, s.p...)
						} else {
							out = append(out, s.p...)
						}
						written <- struct{}{}
					}
				}
			}}
			runs := &heartbeatCounter{RunStore: db, lose: tc.lose}
			hub := wasmwiz.NewEventHub()
			events, unsubscribe := hub.Subscribe(rec.ID)
			defer unsubscribe()
			ex := &wasmwiz.Executor{Engine: eng, Tiers: db, Runs: runs, Events: hub, HeartbeatInterval: 20 * time.Millisecond}
			runCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- ex.RunQueued(runCtx, rec.ID) }()

			const pieces = 40
			for i := range pieces {
				s := step{stderr: i%4 == 3, p: fmt.Appendf(nil, "piece %d\x00\xff\n", i)}
				if s.stderr {
					wantErr = append(wantErr, s.p...)
				} else {
					wantOut = append(wantOut, s.p...)
				}
				select {
				case steps <- s:
				case <-time.After(testenv.Patience):
					t.Fatal("gave up waiting for the guest to take a piece")
				}
				testenv.Recv(t, written, "the guest to write a piece")
				var got *wasmwiz.UsageRecord
				testenv.WaitFor(t, "the store to hold piece "+fmt.Sprint(i), func() bool {
					var err error
					got, err = db.FindRunByID(uctx, rec.ID)
					if err != nil {
						t.Fatalf("FindRunByID: %v", err)
					}
					return len(got.Stdout) >= len(wantOut) && len(got.Stderr) >= len(wantErr)
				})
				if !bytes.Equal(got.Stdout, wantOut) || !bytes.Equal(got.Stderr, wantErr) || got.State != wasmwiz.RunRunning {
					t.Fatalf("after piece %d the running run holds %q / %q (%s), want %q / %q",
						i, got.Stdout, got.Stderr, got.State, wantOut, wantErr)
				}
			}
			close(steps)
			if err := testenv.Recv(t, done, "the run to end"); err != nil {
				t.Fatalf("RunQueued: %v", err)
			}

			final, err := db.FindRunByID(uctx, rec.ID)
			if err != nil {
				t.Fatal(err)
			}
			if final.State != wasmwiz.RunDone || !bytes.Equal(final.Stdout, wantOut) || !bytes.Equal(final.Stderr, wantErr) {
				t.Fatalf("final record %s %q / %q, want done %q / %q", final.State, final.Stdout, final.Stderr, wantOut, wantErr)
			}
			var followed [2][]byte
			for ev := testenv.Recv(t, events, "an event"); ev.Kind != wasmwiz.EventResult; ev = testenv.Recv(t, events, "an event") {
				i := 0
				switch ev.Kind {
				case wasmwiz.EventStderr:
					i = 1
				case wasmwiz.EventStdout:
				default:
					continue
				}
				if ev.Offset != int64(len(followed[i])) {
					t.Fatalf("%s event at offset %d after %d bytes", ev.Kind, ev.Offset, len(followed[i]))
				}
				followed[i] = append(followed[i], ev.Data...)
			}
			if !bytes.Equal(followed[0], wantOut) || !bytes.Equal(followed[1], wantErr) {
				t.Fatalf("followed %q / %q, want %q / %q", followed[0], followed[1], wantOut, wantErr)
			}

			sent, withData := runs.counts()
			if withData < pieces {
				t.Fatalf("%d heartbeats the store took carried output, want at least one per piece (%d)", withData, pieces)
			}
			if total := len(wantOut) + len(wantErr); !tc.lose && sent != total {
				t.Fatalf("the heartbeats the store took carried %d bytes of output for %d bytes written in %d pieces: want each byte once",
					sent, total, pieces)
			}
		})
	}
}

// TestOutputTail: what a store appends of a heartbeat's tail, and how a
// follower joins pieces into the stream past its offset.
func TestOutputTail(t *testing.T) {
	t.Parallel()
	after := []struct {
		name        string
		tail        wasmwiz.OutputTail
		held, limit int64
		want        string
	}{
		{"all new", wasmwiz.OutputTail{Offset: 3, Data: []byte("def")}, 3, -1, "def"},
		{"sent again", wasmwiz.OutputTail{Offset: 3, Data: []byte("def")}, 6, -1, ""},
		{"overlaps", wasmwiz.OutputTail{Offset: 3, Data: []byte("defgh")}, 6, -1, "gh"},
		{"cut at the limit", wasmwiz.OutputTail{Offset: 3, Data: []byte("defgh")}, 3, 5, "de"},
		{"at the limit", wasmwiz.OutputTail{Offset: 5, Data: []byte("fgh")}, 5, 5, ""},
		{"past what is held", wasmwiz.OutputTail{Offset: 9, Data: []byte("j")}, 5, -1, ""},
	}
	for _, tc := range after {
		got, err := tc.tail.After(tc.held, tc.limit)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: After = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := (wasmwiz.OutputTail{Offset: -1, Data: []byte("x")}).After(0, -1); wasmwiz.ErrorCode(err) != wasmwiz.EINVALID {
		t.Errorf("After from a negative offset: %v, want EINVALID", err)
	}

	tail := wasmwiz.OutputTail{Offset: 4}
	for _, p := range []struct {
		off  int64
		data string
	}{{0, "abc"}, {3, "defg"}, {7, "hi"}, {7, "hi"}, {8, "ijk"}, {20, "gap"}} {
		tail.Join(p.off, []byte(p.data))
	}
	if tail.Offset != 4 || string(tail.Data) != "efghijk" {
		t.Fatalf("joined %d %q, want 4 %q", tail.Offset, tail.Data, "efghijk")
	}
	empty := wasmwiz.OutputTail{Offset: 2}
	empty.Join(5, []byte("fg"))
	if empty.Offset != 5 || string(empty.Data) != "fg" {
		t.Fatalf("a piece past an empty tail's offset: %d %q", empty.Offset, empty.Data)
	}
}

// finishFlaky is a real store whose FinishRun answers EUNAVAILABLE to its
// first fail calls: before reaching the store, or with commit after the
// store wrote the record (the answer lost). It counts the calls whose
// context was not marked by WithOwnDeadline with a deadline.
type finishFlaky struct {
	wasmwiz.RunStore
	fail   int
	commit bool

	mu              sync.Mutex
	calls, unmarked int
}

func (f *finishFlaky) FinishRun(ctx context.Context, rec *wasmwiz.UsageRecord, webhooks wasmwiz.EnqueueWebhooks) (bool, error) {
	f.mu.Lock()
	f.calls++
	n := f.calls
	if _, ok := wasmwiz.OwnDeadline(ctx); !ok {
		f.unmarked++
	}
	f.mu.Unlock()
	if n <= f.fail {
		if f.commit {
			if _, err := f.RunStore.FinishRun(ctx, rec, webhooks); err != nil {
				return false, err
			}
		}
		return false, wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "database unavailable, retry later")
	}
	return f.RunStore.FinishRun(ctx, rec, webhooks)
}

// TestAsyncFinishOutlastsTheStoreUnavailable: a background run whose final
// record meets a store answering EUNAVAILABLE a few times is still
// finished, with its result and exit code, and its webhook enqueued once,
// also when the answer of a write that committed was lost; a store that
// stays unavailable leaves the run running (for the sweeper), with no
// webhook, and RunQueued returns. Every write of the final record has its
// own deadline, not the store's call timeout.
func TestAsyncFinishOutlastsTheStoreUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fail   int
		commit bool
		want   wasmwiz.RunState
		hooks  int64
	}{
		{"TwoFailures", 2, false, wasmwiz.RunDone, 1},
		{"AnswerLost", 1, true, wasmwiz.RunDone, 1},
		{"Unavailable", 1000, false, wasmwiz.RunRunning, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := sqlitetest.Open(t)
			u, uctx := sqlitetest.User(t, db, "finish@example.com")
			rec := &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(time.Now()), Tier: u.Tier, CreatedAt: time.Now(),
				RunDetail: wasmwiz.RunDetail{Async: true, CallbackURL: "https://hooks.example.com/run"}}
			if err := db.QueueRun(uctx, rec, &wasmwiz.RunInput{Wasm: []byte("\x00asm")}, 10,
				func(context.Context, any, int) error { return nil }); err != nil {
				t.Fatal(err)
			}
			eng := &mock.Engine{RunFn: func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
				return &wasmwiz.Result{Status: wasmwiz.StatusOK, ExitCode: 7, Stdout: []byte("the result")}, nil
			}}
			runs := &finishFlaky{RunStore: db, fail: tc.fail, commit: tc.commit}
			queue := &mock.RunQueue{}
			ex := &wasmwiz.Executor{Engine: eng, Tiers: db, Runs: runs, Queue: queue, HeartbeatInterval: time.Hour}
			done := make(chan error, 1)
			go func() { done <- ex.RunQueued(ctx, rec.ID) }()
			if err := testenv.Recv(t, done, "the run to end"); err != nil {
				t.Fatalf("RunQueued: %v", err)
			}

			got, err := db.FindRunByID(uctx, rec.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != tc.want {
				t.Fatalf("the run is %s, want %s", got.State, tc.want)
			}
			if tc.want == wasmwiz.RunDone && (got.ExitCode != 7 || string(got.Stdout) != "the result") {
				t.Fatalf("the finished run has exit code %d and stdout %q, want 7 and %q", got.ExitCode, got.Stdout, "the result")
			}
			if n := queue.Webhooks.Load(); n != tc.hooks {
				t.Fatalf("%d webhooks enqueued, want %d", n, tc.hooks)
			}
			runs.mu.Lock()
			defer runs.mu.Unlock()
			if runs.calls < 2 || runs.unmarked != 0 {
				t.Fatalf("FinishRun called %d times, %d of them without a deadline of their own; want tried again, each with its own deadline",
					runs.calls, runs.unmarked)
			}
		})
	}
}

// TestAbandonQueuedSaysWhenTheRunIsNotFailed: AbandonQueued fails a queued
// run whose job gave up, and says so when the store could not write it:
// the run is still queued then, and nothing else would ever end it, so the
// queue must keep what it needs to try again (queue.FailAbandonedRuns).
func TestAbandonQueuedSaysWhenTheRunIsNotFailed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := sqlitetest.Open(t)
	u, uctx := sqlitetest.User(t, db, "abandon@example.com")
	rec := &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(time.Now()), Tier: u.Tier, CreatedAt: time.Now(),
		RunDetail: wasmwiz.RunDetail{Async: true}}
	if err := db.QueueRun(uctx, rec, &wasmwiz.RunInput{Wasm: []byte("\x00asm")}, 10,
		func(context.Context, any, int) error { return nil }); err != nil {
		t.Fatal(err)
	}
	runs := &finishFlaky{RunStore: db, fail: 1000}
	ex := &wasmwiz.Executor{Engine: &mock.Engine{}, Tiers: db, Runs: runs, Queue: &mock.RunQueue{}}
	cause := errors.New("the store was unavailable at every attempt")
	err := ex.AbandonQueued(ctx, rec.ID, cause)
	if wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Fatalf("AbandonQueued with the store unavailable: %v, want EUNAVAILABLE", err)
	}
	if got, err := db.FindRunByID(uctx, rec.ID); err != nil || got.State != wasmwiz.RunQueued {
		t.Fatalf("the run after a failed abandon: %+v, %v; want queued", got, err)
	}
	runs.fail = 0
	if err := ex.AbandonQueued(ctx, rec.ID, cause); err != nil {
		t.Fatalf("AbandonQueued with the store back: %v", err)
	}
	if got, err := db.FindRunByID(uctx, rec.ID); err != nil || got.State != wasmwiz.RunFailed {
		t.Fatalf("the run after the abandon: %+v, %v; want failed", got, err)
	}
}

// downQueue is a queue whose webhook inserts fail while down is set, as a
// queue that cannot take a job does (EUNAVAILABLE); it counts the webhooks
// it took, and the tries.
type downQueue struct {
	mock.RunQueue
	down  atomic.Bool
	tries atomic.Int64
}

func (q *downQueue) EnqueueWebhooks(ctx context.Context, tx any, hooks []wasmwiz.Webhook) error {
	q.tries.Add(1)
	if q.down.Load() {
		return wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "enqueue webhooks: the queue is unavailable")
	}
	return q.RunQueue.EnqueueWebhooks(ctx, tx, hooks)
}

// TestAsyncRunNeverEndsWithoutItsWebhook: a background run's final record
// and its webhook are committed together. While the queue cannot take the
// webhook, the run is not finished (finish tries again, then leaves it
// running), and the stale-run sweeper, once the queue is back, fails it with
// its webhook: the run never ends without one. A run without a callback
// URL does not touch the queue.
func TestAsyncRunNeverEndsWithoutItsWebhook(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := sqlitetest.Open(t)
	_, uctx := sqlitetest.User(t, db, "hooked@example.com")
	queued := func(callback string) *wasmwiz.UsageRecord {
		t.Helper()
		rec := &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(time.Now()), Tier: wasmwiz.TierFree, CreatedAt: time.Now(),
			RunDetail: wasmwiz.RunDetail{Async: true, CallbackURL: callback}}
		if err := db.QueueRun(uctx, rec, &wasmwiz.RunInput{Wasm: []byte("\x00asm")}, 10,
			func(context.Context, any, int) error { return nil }); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	state := func(id string) wasmwiz.RunState {
		t.Helper()
		got, err := db.FindRunByID(uctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return got.State
	}
	eng := &mock.Engine{RunFn: func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		return &wasmwiz.Result{Status: wasmwiz.StatusOK}, nil
	}}
	queue := &downQueue{}
	queue.down.Store(true)
	ex := &wasmwiz.Executor{Engine: eng, Tiers: db, Runs: db, Queue: queue, HeartbeatInterval: time.Hour}

	rec := queued("https://hooks.example.com/run")
	if err := ex.RunQueued(ctx, rec.ID); err != nil {
		t.Fatalf("RunQueued: %v", err)
	}
	if got := state(rec.ID); got != wasmwiz.RunRunning || queue.Webhooks.Load() != 0 || queue.tries.Load() < 2 {
		t.Fatalf("with the queue down the run is %s with %d webhooks after %d tries; want running, none, tried again",
			got, queue.Webhooks.Load(), queue.tries.Load())
	}
	silent, tries := queued(""), queue.tries.Load()
	if err := ex.RunQueued(ctx, silent.ID); err != nil {
		t.Fatalf("RunQueued: %v", err)
	}
	if got := state(silent.ID); got != wasmwiz.RunDone || queue.tries.Load() != tries {
		t.Fatalf("a run without a callback URL is %s after %d tries of the queue; want done without the queue",
			got, queue.tries.Load()-tries)
	}

	// The sweep, while the queue is down, fails nothing; once it is back,
	// the run is failed with its webhook.
	ex.Now = func() time.Time { return time.Now().Add(time.Hour) }
	if n, err := ex.FailStaleRuns(ctx, 30*time.Second); wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE || n != 0 {
		t.Fatalf("a sweep with the queue down: %d, %v; want none failed, EUNAVAILABLE", n, err)
	}
	if got := state(rec.ID); got != wasmwiz.RunRunning {
		t.Fatalf("after a sweep with the queue down the run is %s, want running", got)
	}
	queue.down.Store(false)
	if n, err := ex.FailStaleRuns(ctx, 30*time.Second); err != nil || n != 1 {
		t.Fatalf("a sweep: %d, %v; want the run failed", n, err)
	}
	if got := state(rec.ID); got != wasmwiz.RunFailed || queue.Webhooks.Load() != 1 {
		t.Fatalf("after the sweep the run is %s with %d webhooks, want failed with 1", got, queue.Webhooks.Load())
	}
}

// staleBound is a store whose sweeps of more than max stale runs at once
// fail as a call past the store's timeout does (EUNAVAILABLE): a batch
// with too much output to move in time. With err set, every sweep fails
// with it. It records the limit of each call.
type staleBound struct {
	wasmwiz.RunStore
	max    int
	err    error
	limits []int
}

func (s *staleBound) FailStaleRuns(ctx context.Context, before time.Time, message string, limit int, webhooks wasmwiz.EnqueueWebhooks) ([]wasmwiz.StaleRun, error) {
	s.limits = append(s.limits, limit)
	if s.err != nil {
		return nil, s.err
	}
	if limit > s.max {
		return nil, wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "fail stale runs: database unavailable, retry later")
	}
	return s.RunStore.FailStaleRuns(ctx, before, message, limit, webhooks)
}

// resultEvents counts the result events published for each run.
type resultEvents struct {
	mu      sync.Mutex
	results map[string]int
}

func (r *resultEvents) Publish(ev wasmwiz.RunEvent) {
	if ev.Kind == wasmwiz.EventResult {
		r.mu.Lock()
		r.results[ev.RunID]++
		r.mu.Unlock()
	}
}

func (r *resultEvents) Subscribe(string) (<-chan wasmwiz.RunEvent, func()) { return nil, func() {} }

// TestStaleRunSweepShrinksABatchTooLargeToFinish: when a batch of stale
// runs cannot be failed within the store's call timeout, the sweeper tries
// a smaller one at once, so that one sweep fails every stale run (each
// with its result published, its background slot given back and its
// webhook enqueued, once) instead of failing at every sweep and leaving
// them running for good; the next sweep starts from the size that worked,
// a batch of the least size that still fails ends the sweep, and so does
// any other error.
func TestStaleRunSweepShrinksABatchTooLargeToFinish(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := sqlitetest.Open(t)
	_, uctx := sqlitetest.User(t, db, "stale@example.com")
	const runs = 150
	stale := map[string]bool{}
	for range runs {
		rec := &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(time.Now()), Tier: wasmwiz.TierFree, CreatedAt: time.Now(),
			RunDetail: wasmwiz.RunDetail{Async: true, CallbackURL: "https://hooks.example.com/run"}}
		if err := db.QueueRun(uctx, rec, &wasmwiz.RunInput{Wasm: []byte("\x00asm")}, runs,
			func(context.Context, any, int) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if _, _, err := db.StartRun(ctx, rec.ID); err != nil {
			t.Fatal(err)
		}
		stale[rec.ID] = true
	}
	var releaseMu sync.Mutex
	released := map[string]int{}
	limiter := &mock.RateLimiter{ReleaseSlotFn: func(ctx context.Context, key, set, holder string) error {
		releaseMu.Lock()
		defer releaseMu.Unlock()
		if set == wasmwiz.BackgroundSlots {
			released[holder]++
		}
		return nil
	}}
	bound := &staleBound{RunStore: db, max: 40}
	events := &resultEvents{results: map[string]int{}}
	queue := &mock.RunQueue{}
	// An hour on, every run's heartbeat is stale.
	ex := &wasmwiz.Executor{Runs: bound, Queue: queue, Events: events, Limiter: limiter,
		Now: func() time.Time { return time.Now().Add(time.Hour) }}

	n, err := ex.FailStaleRuns(ctx, 30*time.Second)
	if err != nil || n != runs {
		t.Fatalf("one sweep failed %d runs, %v; want all %d (limits %v)", n, err, runs, bound.limits)
	}
	// 100 fails; 25 fails a whole batch, doubling the next, until one over
	// 40 fails and shrinks it again.
	if want := []int{100, 25, 50, 12}; !slices.Equal(bound.limits[:len(want)], want) {
		t.Fatalf("limits %v, want %v first", bound.limits, want)
	}
	if least := slices.Min(bound.limits); least < 10 {
		t.Fatalf("a batch of %d runs, under the least of 10 (limits %v)", least, bound.limits)
	}
	for id := range stale {
		rec, err := db.FindRunByID(uctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if rec.State != wasmwiz.RunFailed {
			t.Fatalf("run %s is %s after the sweep, want failed", id, rec.State)
		}
		if events.results[id] != 1 || released[id] != 1 {
			t.Fatalf("run %s: %d results published, slot released %d times; want 1 and 1", id, events.results[id], released[id])
		}
	}
	if len(events.results) != runs || len(released) != runs {
		t.Fatalf("results published for %d runs and slots released for %d, want %d", len(events.results), len(released), runs)
	}
	if hooks := queue.Webhooks.Load(); hooks != runs {
		t.Fatalf("%d webhooks enqueued, want %d", hooks, runs)
	}

	// The next sweep starts from the size that worked, not from 100.
	bound.limits, bound.max = nil, 1000
	if n, err := ex.FailStaleRuns(ctx, 30*time.Second); err != nil || n != 0 {
		t.Fatalf("the next sweep: %d, %v; want nothing to do", n, err)
	}
	if len(bound.limits) != 1 || bound.limits[0] > 40 {
		t.Fatalf("the next sweep's limits %v, want one batch of at most 40", bound.limits)
	}

	// A batch of the least size that still does not finish ends the sweep.
	bound.limits, bound.max = nil, 5
	if _, err := ex.FailStaleRuns(ctx, 30*time.Second); wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Fatalf("with no batch finishing: %v, want EUNAVAILABLE", err)
	}
	if last := bound.limits[len(bound.limits)-1]; last != 10 {
		t.Fatalf("limits %v, want the last of 10", bound.limits)
	}

	// Any other error ends the sweep at once, for the next interval.
	bound.limits, bound.err = nil, errors.New("connection reset")
	if _, err := ex.FailStaleRuns(ctx, 30*time.Second); err == nil || len(bound.limits) != 1 {
		t.Fatalf("a sweep meeting another error: %v after limits %v; want the error after one call", err, bound.limits)
	}
}
