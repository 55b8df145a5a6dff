package storetest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

var runQueueTests = []test{
	{"QueueStartFinish", testQueueStartFinish},
	{"QueuedRunKeepsItsFiles", testQueuedRunFiles},
	{"FinishedRunKeepsItsOutputFiles", testFinishedRunFiles},
	{"QueueRunEnqueuesInItsTransaction", testQueueRunEnqueueFails},
	{"QueueRunCountsActiveRuns", testQueueRunMaxActive},
	{"QueueRunRanksByTheCallersActiveRuns", testQueueRunRanks},
	{"StartedRunIsNeverStartedAgain", testStartRunOnce},
	{"CancelQueuedAndRunning", testCancelRun},
	{"FailStaleRuns", testFailStaleRuns},
	{"NULInADetailFailsNoStatement", testNULInADetail},
	{"FailStaleRunsUpToALimit", testFailStaleRunsLimit},
	{"WebhookDeliveriesAndSecrets", testWebhookDeliveries},
	{"DeleteRunsBeforeKeepsActiveRuns", testDeleteKeepsActive},
	{"WebhookAttemptOfADeletedRunIsNotKept", testWebhookAttemptOfDeletedRun},
	{"HeartbeatsAppendOutput", testHeartbeatsAppend},
	{"HeartbeatOutputKeepsTheCap", testHeartbeatOutputCap},
	{"FinishWritesOutputOnceAndDropsPieces", testFinishDropsPieces},
	{"FailedStaleRunKeepsAppendedOutput", testStaleRunKeepsOutput},
	{"RunOutputSinceReadsOnlyWhatIsNew", testRunOutputSince},
	{"FinalStateEnqueuesWebhooksInItsTransaction", testFinalWebhooks},
	{"FailedWebhookEnqueueRollsTheFinalStateBack", testFinalWebhooksFail},
}

// queued makes a queued run of the caller in ctx, with a callback URL.
func (e *env) queued(ctx context.Context, in *wasmwiz.RunInput) *wasmwiz.UsageRecord {
	e.t.Helper()
	return e.queuedTo(ctx, in, "https://example.com/hook")
}

// queuedTo makes a queued run of the caller in ctx whose result goes to
// callbackURL ("" for none).
func (e *env) queuedTo(ctx context.Context, in *wasmwiz.RunInput, callbackURL string) *wasmwiz.UsageRecord {
	e.t.Helper()
	return e.queuedWith(ctx, in, callbackURL, nil)
}

// queuedWith is queuedTo with the record changed by edit (nil: none)
// before it is queued.
func (e *env) queuedWith(ctx context.Context, in *wasmwiz.RunInput, callbackURL string, edit func(*wasmwiz.UsageRecord)) *wasmwiz.UsageRecord {
	e.t.Helper()
	at := e.clock.Now()
	r := &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(at), Tier: wasmwiz.TierFree, CreatedAt: at,
		RunDetail: wasmwiz.RunDetail{Async: true, Args: []string{"a"}, EnvNames: []string{"K"}, CallbackURL: callbackURL}}
	if edit != nil {
		edit(r)
	}
	if in == nil {
		in = &wasmwiz.RunInput{Wasm: []byte("\x00asm"), Stdin: []byte("in"), Env: map[string]string{"K": "secret"},
			Args: []string{"a", "b"}, Params: []string{"1", "-2"}}
	}
	called := false
	err := e.s.QueueRun(ctx, r, in, 100, func(ctx context.Context, tx any, _ int) error {
		if tx == nil {
			return errors.New("no transaction")
		}
		called = true
		return nil
	})
	wantOK(e.t, err, "QueueRun")
	if !called {
		e.t.Fatal("QueueRun did not call enqueue")
	}
	return r
}

func testQueueStartFinish(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	r := e.queued(ctx, nil)
	got, err := e.s.FindRunByID(ctx, r.ID)
	wantOK(t, err, "FindRunByID of a queued run")
	if got.State != wasmwiz.RunQueued || got.UserID != u.ID || !got.Async || got.CallbackURL == "" {
		t.Fatalf("queued run read back as %+v", got)
	}
	e.clock.Add(time.Second)
	started, in, err := e.s.StartRun(e.anon, r.ID)
	wantOK(t, err, "StartRun")
	if started.State != wasmwiz.RunRunning || started.StartedAt == nil || !started.StartedAt.Equal(e.clock.Now()) {
		t.Fatalf("StartRun returned %+v", started)
	}
	if string(in.Wasm) != "\x00asm" || string(in.Stdin) != "in" || in.Env["K"] != "secret" || in.Files != nil ||
		!slices.Equal(in.Args, []string{"a", "b"}) || !slices.Equal(in.Params, []string{"1", "-2"}) {
		t.Fatalf("StartRun input %+v", in)
	}
	cancel, err := e.s.HeartbeatRun(e.anon, r.ID, wasmwiz.OutputTail{Data: []byte("par")}, wasmwiz.OutputTail{})
	wantOK(t, err, "HeartbeatRun")
	if cancel {
		t.Fatal("HeartbeatRun asks to cancel a run nobody cancelled")
	}
	got, _ = e.s.FindRunByID(ctx, r.ID)
	if string(got.Stdout) != "par" || got.State != wasmwiz.RunRunning {
		t.Fatalf("a heartbeat keeps the output so far: %q %s", got.Stdout, got.State)
	}

	e.clock.Add(time.Second)
	fin := *started
	fin.State, fin.Status, fin.ExitCode, fin.DurationMS = wasmwiz.RunDone, wasmwiz.StatusOK, 0, 1.5
	fin.Stdout, fin.Stderr = []byte("partial and more"), []byte("e")
	fin.CPUMS = 1.25
	ok, err := e.s.FinishRun(e.anon, &fin, nil)
	wantOK(t, err, "FinishRun")
	if !ok {
		t.Fatal("FinishRun of a running run changed nothing")
	}
	got, err = e.s.FindRunByID(ctx, r.ID)
	wantOK(t, err, "FindRunByID of a finished run")
	if got.State != wasmwiz.RunDone || got.Status != wasmwiz.StatusOK || string(got.Stdout) != "partial and more" ||
		got.CPUMS != 1.25 || got.FinishedAt == nil || !got.FinishedAt.Equal(e.clock.Now()) || got.StartedAt == nil {
		t.Fatalf("finished run read back as %+v", got)
	}
	if got.Files != nil {
		t.Fatalf("a run that asked for no files read back with files %+v", got.Files)
	}
	again := fin
	again.State, again.Message = wasmwiz.RunFailed, "late"
	ok, err = e.s.FinishRun(e.anon, &again, nil)
	wantOK(t, err, "FinishRun of a final run")
	if ok {
		t.Fatal("FinishRun changed a run already final")
	}
	_, _, err = e.s.StartRun(e.anon, r.ID)
	WantCode(t, err, wasmwiz.ECONFLICT, "StartRun of a finished run")
	_, _, err = e.s.StartRun(e.anon, wasmwiz.NewRunID(e.clock.Now()))
	WantCode(t, err, wasmwiz.ENOTFOUND, "StartRun of no run")
}

func testQueueRunEnqueueFails(t *testing.T, e *env) {
	_, ctx := e.user("u@example.com", wasmwiz.TierFree)
	r := &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(e.clock.Now()), Tier: wasmwiz.TierFree}
	err := e.s.QueueRun(ctx, r, &wasmwiz.RunInput{}, 10, func(context.Context, any, int) error {
		return wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "queue down")
	})
	WantCode(t, err, wasmwiz.EUNAVAILABLE, "QueueRun whose enqueue fails")
	_, err = e.s.FindRunByID(ctx, r.ID)
	WantCode(t, err, wasmwiz.ENOTFOUND, "a run whose enqueue failed")
	err = e.s.QueueRun(e.anon, r, &wasmwiz.RunInput{}, 10, func(context.Context, any, int) error { return nil })
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "QueueRun without a caller")
}

func testQueueRunMaxActive(t *testing.T, e *env) {
	_, ctx := e.user("u@example.com", wasmwiz.TierFree)
	_, other := e.user("o@example.com", wasmwiz.TierFree)
	enqueue := func(context.Context, any, int) error { return nil }
	first := &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(e.clock.Now()), Tier: wasmwiz.TierFree}
	wantOK(t, e.s.QueueRun(ctx, first, &wasmwiz.RunInput{}, 2, enqueue), "first")
	wantOK(t, e.s.QueueRun(ctx, &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(e.clock.Now()), Tier: wasmwiz.TierFree}, &wasmwiz.RunInput{}, 2, enqueue), "second")
	err := e.s.QueueRun(ctx, &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(e.clock.Now()), Tier: wasmwiz.TierFree}, &wasmwiz.RunInput{}, 2, enqueue)
	WantCode(t, err, wasmwiz.ERATELIMIT, "third of two allowed")
	// Another tenant is not counted against this one.
	wantOK(t, e.s.QueueRun(other, &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(e.clock.Now()), Tier: wasmwiz.TierFree}, &wasmwiz.RunInput{}, 2, enqueue), "other tenant")
	// A run that ends frees its place.
	_, err = e.s.CancelRun(ctx, first.ID, nil)
	wantOK(t, err, "CancelRun")
	wantOK(t, e.s.QueueRun(ctx, &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(e.clock.Now()), Tier: wasmwiz.TierFree}, &wasmwiz.RunInput{}, 2, enqueue), "after one ended")
}

// QueueRun gives enqueue the run's rank: how many other runs of its caller
// are queued or running, whatever other callers have; a run that ended no
// longer counts.
func testQueueRunRanks(t *testing.T, e *env) {
	_, ctx := e.user("u@example.com", wasmwiz.TierFree)
	_, other := e.user("o@example.com", wasmwiz.TierFree)
	queue := func(ctx context.Context, what string) (*wasmwiz.UsageRecord, int) {
		t.Helper()
		r := &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(e.clock.Now()), Tier: wasmwiz.TierFree}
		rank := -1
		wantOK(t, e.s.QueueRun(ctx, r, &wasmwiz.RunInput{}, 10, func(_ context.Context, _ any, k int) error {
			rank = k
			return nil
		}), what)
		return r, rank
	}
	var runs []*wasmwiz.UsageRecord
	for i := range 3 {
		r, rank := queue(ctx, "a run of the first user")
		if rank != i {
			t.Fatalf("the first user's run %d has rank %d, want %d", i, rank, i)
		}
		runs = append(runs, r)
	}
	if _, rank := queue(other, "the other user's first run"); rank != 0 {
		t.Fatalf("another user's first run has rank %d while the first has 3 runs queued, want 0", rank)
	}
	// A running run counts as a queued one does.
	started, _, err := e.s.StartRun(e.anon, runs[0].ID)
	wantOK(t, err, "StartRun")
	if _, rank := queue(ctx, "a run while one runs"); rank != 3 {
		t.Fatalf("a run queued behind 3 queued or running has rank %d, want 3", rank)
	}
	// One finished and one cancelled: 2 of the 4 are left.
	fin := *started
	fin.State, fin.Status = wasmwiz.RunDone, wasmwiz.StatusOK
	ok, err := e.s.FinishRun(e.anon, &fin, nil)
	if err != nil || !ok {
		t.Fatalf("FinishRun: %v %v", ok, err)
	}
	_, err = e.s.CancelRun(ctx, runs[1].ID, nil)
	wantOK(t, err, "CancelRun")
	if _, rank := queue(ctx, "a run after two ended"); rank != 2 {
		t.Fatalf("a run queued after 2 of 4 ended has rank %d, want 2", rank)
	}
}

func testStartRunOnce(t *testing.T, e *env) {
	_, ctx := e.user("u@example.com", wasmwiz.TierFree)
	r := e.queued(ctx, nil)
	// Many replicas (or River retries) try to start it at once: one wins.
	const n = 8
	won := Racing(t, n, "concurrent StartRun calls", wasmwiz.ECONFLICT, func(int) error {
		_, _, err := e.s.StartRun(e.anon, r.ID)
		return err
	})
	if won != 1 {
		t.Fatalf("%d StartRun calls started one run", won)
	}
	got, _, err := e.s.StartRun(e.anon, r.ID)
	WantCode(t, err, wasmwiz.ECONFLICT, "StartRun of a running run")
	if got == nil || got.State != wasmwiz.RunRunning {
		t.Fatalf("StartRun's conflict carries the run as it is: %+v", got)
	}
}

func testCancelRun(t *testing.T, e *env) {
	_, ctx := e.user("u@example.com", wasmwiz.TierFree)
	_, other := e.user("o@example.com", wasmwiz.TierFree)
	q := e.queued(ctx, nil)
	_, err := e.s.CancelRun(other, q.ID, nil)
	WantCode(t, err, wasmwiz.ENOTFOUND, "CancelRun of another tenant's run")
	got, err := e.s.CancelRun(ctx, q.ID, nil)
	wantOK(t, err, "CancelRun of a queued run")
	if got.State != wasmwiz.RunCancelled || got.FinishedAt == nil || got.Message == "" {
		t.Fatalf("cancelled queued run: %+v", got)
	}
	_, _, err = e.s.StartRun(e.anon, q.ID)
	WantCode(t, err, wasmwiz.ECONFLICT, "StartRun of a cancelled run")
	_, err = e.s.CancelRun(ctx, q.ID, nil)
	WantCode(t, err, wasmwiz.ECONFLICT, "CancelRun of a cancelled run")

	r := e.queued(ctx, nil)
	_, _, err = e.s.StartRun(e.anon, r.ID)
	wantOK(t, err, "StartRun")
	got, err = e.s.CancelRun(ctx, r.ID, nil)
	wantOK(t, err, "CancelRun of a running run")
	if got.State != wasmwiz.RunRunning {
		t.Fatalf("a running run stays running until its replica stops it, got %s", got.State)
	}
	cancel, err := e.s.HeartbeatRun(e.anon, r.ID, wasmwiz.OutputTail{}, wasmwiz.OutputTail{})
	wantOK(t, err, "HeartbeatRun")
	if !cancel {
		t.Fatal("HeartbeatRun does not pass on the cancel")
	}
	fin := *got
	fin.State, fin.Message = wasmwiz.RunCancelled, "cancelled while running"
	ok, err := e.s.FinishRun(e.anon, &fin, nil)
	if err != nil || !ok {
		t.Fatalf("FinishRun cancelled: %v %v", ok, err)
	}
}

func testFailStaleRuns(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	stale, live, waiting := e.queued(ctx, nil), e.queued(ctx, nil), e.queued(ctx, nil)
	silent := e.queuedTo(ctx, nil, "") // stale too, with no callback
	for _, r := range []*wasmwiz.UsageRecord{stale, live, silent} {
		_, _, err := e.s.StartRun(e.anon, r.ID)
		wantOK(t, err, "StartRun")
	}
	e.clock.Add(time.Minute)
	_, err := e.s.HeartbeatRun(e.anon, live.ID, wasmwiz.OutputTail{}, wasmwiz.OutputTail{})
	wantOK(t, err, "HeartbeatRun")
	failed, err := e.s.FailStaleRuns(e.anon, e.clock.Now().Add(-30*time.Second), "its replica stopped", 100, nil)
	wantOK(t, err, "FailStaleRuns")
	// Each comes with whose it was and where its result goes, for the
	// sweeper to release its slot and deliver its webhook.
	slices.SortFunc(failed, func(a, b wasmwiz.StaleRun) int { return strings.Compare(a.ID, b.ID) })
	want := []wasmwiz.StaleRun{{ID: stale.ID, UserID: u.ID, CallbackURL: stale.CallbackURL}, {ID: silent.ID, UserID: u.ID}}
	slices.SortFunc(want, func(a, b wasmwiz.StaleRun) int { return strings.Compare(a.ID, b.ID) })
	if !slices.Equal(failed, want) {
		t.Fatalf("FailStaleRuns failed %+v, want %+v", failed, want)
	}
	for id, want := range map[string]wasmwiz.RunState{stale.ID: wasmwiz.RunFailed, silent.ID: wasmwiz.RunFailed, live.ID: wasmwiz.RunRunning, waiting.ID: wasmwiz.RunQueued} {
		got, err := e.s.FindRunByID(ctx, id)
		wantOK(t, err, "FindRunByID")
		if got.State != want {
			t.Fatalf("run %s is %s, want %s", id, got.State, want)
		}
		if want == wasmwiz.RunFailed && got.Message != "its replica stopped" {
			t.Fatalf("failed run's message %q", got.Message)
		}
	}
	cancel, err := e.s.HeartbeatRun(e.anon, stale.ID, wasmwiz.OutputTail{}, wasmwiz.OutputTail{})
	wantOK(t, err, "HeartbeatRun of a failed run")
	if !cancel {
		t.Fatal("a replica that comes back to a failed run is not told to stop")
	}
	counts, oldest, err := e.s.CountRuns(e.anon)
	wantOK(t, err, "CountRuns")
	if counts[wasmwiz.RunQueued] != 1 || counts[wasmwiz.RunRunning] != 1 || oldest[wasmwiz.RunQueued].IsZero() {
		t.Fatalf("CountRuns %v %v", counts, oldest)
	}
}

// testNULInADetail: a run whose detail holds a NUL character (which the
// executor refuses in what it stores, but a row written before may hold)
// is swept and cancelled like any other, and does not fail the sweep of
// another tenant's runs: PostgreSQL's jsonb refuses the escape of a NUL.
func testNULInADetail(t *testing.T, e *env) {
	victim, victimCtx := e.user("victim@example.com", wasmwiz.TierFree)
	other, otherCtx := e.user("other@example.com", wasmwiz.TierFree)
	withNUL := func(r *wasmwiz.UsageRecord) {
		r.Function, r.Params, r.Args = "f\x00g", []string{"1\x00"}, []string{"a\x00"}
	}
	stale := e.queuedWith(victimCtx, nil, "https://example.com/hook", nil)
	poisoned := e.queuedWith(otherCtx, nil, "https://example.com/other", withNUL)
	waiting := e.queuedWith(otherCtx, nil, "", withNUL)
	for _, r := range []*wasmwiz.UsageRecord{stale, poisoned} {
		_, _, err := e.s.StartRun(e.anon, r.ID)
		wantOK(t, err, "StartRun")
	}
	e.clock.Add(time.Minute)
	failed, err := e.s.FailStaleRuns(e.anon, e.clock.Now().Add(-30*time.Second), "its replica stopped", 100, nil)
	wantOK(t, err, "FailStaleRuns beside a detail with a NUL")
	slices.SortFunc(failed, func(a, b wasmwiz.StaleRun) int { return strings.Compare(a.ID, b.ID) })
	want := []wasmwiz.StaleRun{{ID: stale.ID, UserID: victim.ID, CallbackURL: stale.CallbackURL},
		{ID: poisoned.ID, UserID: other.ID, CallbackURL: poisoned.CallbackURL}}
	slices.SortFunc(want, func(a, b wasmwiz.StaleRun) int { return strings.Compare(a.ID, b.ID) })
	if !slices.Equal(failed, want) {
		t.Fatalf("FailStaleRuns failed %+v, want %+v", failed, want)
	}
	got, err := e.s.FindRunByID(otherCtx, poisoned.ID)
	wantOK(t, err, "FindRunByID")
	if got.State != wasmwiz.RunFailed || got.Message != "its replica stopped" || !strings.HasPrefix(got.Function, "f") {
		t.Fatalf("the swept run with a NUL: %s %q %q", got.State, got.Message, got.Function)
	}
	cancelled, err := e.s.CancelRun(otherCtx, waiting.ID, nil)
	wantOK(t, err, "CancelRun of a queued run with a NUL in its detail")
	if cancelled.State != wasmwiz.RunCancelled {
		t.Fatalf("cancelled run is %s", cancelled.State)
	}
}

// testFailStaleRunsLimit: a call fails at most its limit of stale runs,
// each with the output its heartbeats appended; the next calls fail the
// rest, each run once, until one comes back short, and a live run is left
// running.
func testFailStaleRunsLimit(t *testing.T, e *env) {
	_, ctx := e.user("u@example.com", wasmwiz.TierFree)
	stale := map[string]bool{}
	for range 5 {
		r := e.running(ctx)
		e.beat(r.ID, 0, "out "+r.ID, 0, "")
		stale[r.ID] = true
	}
	e.clock.Add(time.Minute)
	live := e.running(ctx)
	before := e.clock.Now().Add(-30 * time.Second)
	_, err := e.s.FailStaleRuns(e.anon, before, "its replica stopped", 0, nil)
	WantCode(t, err, wasmwiz.EINVALID, "FailStaleRuns with a limit of 0")

	failed := map[string]bool{}
	for i, want := range []int{2, 2, 1} {
		got, err := e.s.FailStaleRuns(e.anon, before, "its replica stopped", 2, nil)
		wantOK(t, err, "FailStaleRuns")
		if len(got) != want {
			t.Fatalf("call %d failed %d runs (%+v), want %d", i+1, len(got), got, want)
		}
		for _, r := range got {
			if !stale[r.ID] || failed[r.ID] {
				t.Fatalf("call %d failed %s: not stale, or failed before", i+1, r.ID)
			}
			failed[r.ID] = true
		}
		running := 0
		for id := range stale {
			got, err := e.s.FindRunByID(ctx, id)
			wantOK(t, err, "FindRunByID")
			if got.State == wasmwiz.RunRunning {
				running++
			}
		}
		if left := len(stale) - len(failed); running != left {
			t.Fatalf("after call %d, %d stale runs are running, want %d", i+1, running, left)
		}
	}
	for id := range stale {
		if got := e.wantOutput(ctx, id, "out "+id, "", "a run failed in a batch"); got.State != wasmwiz.RunFailed {
			t.Fatalf("run %s is %s, want failed", id, got.State)
		}
		if n := e.pieces(id); n != 0 {
			t.Fatalf("FailStaleRuns left %d output pieces of %s", n, id)
		}
	}
	got, err := e.s.FindRunByID(ctx, live.ID)
	wantOK(t, err, "FindRunByID")
	if got.State != wasmwiz.RunRunning {
		t.Fatalf("the live run is %s, want running", got.State)
	}
}

func testWebhookDeliveries(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	r := e.queued(ctx, nil)
	for i, code := range []int{500, 204} {
		d := &wasmwiz.WebhookDelivery{RunID: r.ID, Attempt: i + 1, At: e.clock.Add(time.Second), StatusCode: code, DurationMS: 2.5}
		if code == 500 {
			d.Error = "answered 500"
		}
		wantOK(t, e.s.AddWebhookDelivery(e.anon, d), "AddWebhookDelivery")
		wantOK(t, e.s.AddWebhookDelivery(e.anon, d), "AddWebhookDelivery again (a retried write)")
	}
	got, err := e.s.FindRunByID(ctx, r.ID)
	wantOK(t, err, "FindRunByID")
	if len(got.Deliveries) != 2 || got.Deliveries[0].StatusCode != 500 || got.Deliveries[1].Attempt != 2 ||
		!got.Deliveries[1].At.Equal(e.clock.Now()) {
		t.Fatalf("deliveries %+v", got.Deliveries)
	}

	_, err = e.s.WebhookSecret(e.anon, u.ID)
	WantCode(t, err, wasmwiz.ENOTFOUND, "WebhookSecret before any")
	s1, err := e.s.RotateWebhookSecret(ctx)
	wantOK(t, err, "RotateWebhookSecret")
	s2, err := e.s.RotateWebhookSecret(ctx)
	wantOK(t, err, "RotateWebhookSecret again")
	if s1 == s2 || len(s2) < 32 {
		t.Fatalf("secrets %q %q", s1, s2)
	}
	got2, err := e.s.WebhookSecret(e.anon, u.ID)
	wantOK(t, err, "WebhookSecret")
	if got2 != s2 {
		t.Fatal("WebhookSecret is not the latest secret")
	}
	_, err = e.s.RotateWebhookSecret(e.anon)
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "RotateWebhookSecret without a caller")
}

func testDeleteKeepsActive(t *testing.T, e *env) {
	_, ctx := e.user("u@example.com", wasmwiz.TierFree)
	active := e.queued(ctx, nil)
	done := e.queued(ctx, nil)
	_, err := e.s.CancelRun(ctx, done.ID, nil)
	wantOK(t, err, "CancelRun")
	wantOK(t, e.s.AddWebhookDelivery(e.anon, &wasmwiz.WebhookDelivery{RunID: done.ID, Attempt: 1, At: e.clock.Now()}), "AddWebhookDelivery")
	e.clock.Add(time.Hour)
	n, err := e.s.DeleteRunsBefore(e.anon, e.clock.Now(), "", 100)
	wantOK(t, err, "DeleteRunsBefore")
	if n != 1 {
		t.Fatalf("DeleteRunsBefore deleted %d runs, want the one that ended", n)
	}
	_, err = e.s.FindRunByID(ctx, done.ID)
	WantCode(t, err, wasmwiz.ENOTFOUND, "a deleted run")
	_, _, err = e.s.StartRun(e.anon, active.ID)
	wantOK(t, err, "StartRun of a queued run older than the retention (its input is kept)")
	// The deleted run's attempts went with it.
	wantNoAttemptsOf(ctx, t, e, done)
}

// wantNoAttemptsOf fails t unless a record written again under the id of
// r, a deleted run, has no webhook attempts.
func wantNoAttemptsOf(ctx context.Context, t *testing.T, e *env, r *wasmwiz.UsageRecord) {
	t.Helper()
	e.runs(&wasmwiz.UsageRecord{ID: r.ID, UserID: r.UserID, Tier: wasmwiz.TierFree, CreatedAt: e.clock.Now()})
	got, err := e.s.FindRunByID(ctx, r.ID)
	wantOK(t, err, "FindRunByID")
	if len(got.Deliveries) != 0 {
		t.Fatalf("webhook attempts outlived their run: %+v", got.Deliveries)
	}
}

// testWebhookAttemptOfDeletedRun: an attempt recorded after its run was
// deleted (its webhook was being delivered while retention ran) is refused
// ENOTFOUND and leaves no row behind, as an attempt of a run that never was.
func testWebhookAttemptOfDeletedRun(t *testing.T, e *env) {
	_, ctx := e.user("u@example.com", wasmwiz.TierFree)
	r := e.queued(ctx, nil)
	_, err := e.s.CancelRun(ctx, r.ID, nil)
	wantOK(t, err, "CancelRun")
	e.clock.Add(time.Hour)
	n, err := e.s.DeleteRunsBefore(e.anon, e.clock.Now(), "", 100)
	if err != nil || n != 1 {
		t.Fatalf("DeleteRunsBefore: %d runs, %v; want the one", n, err)
	}
	for _, id := range []string{r.ID, wasmwiz.NewRunID(e.clock.Now())} {
		err = e.s.AddWebhookDelivery(e.anon, &wasmwiz.WebhookDelivery{RunID: id, Attempt: 2, At: e.clock.Now(), StatusCode: 500})
		WantCode(t, err, wasmwiz.ENOTFOUND, "AddWebhookDelivery of a run that is gone")
	}
	wantNoAttemptsOf(ctx, t, e, r)
}

// testQueuedRunFiles: the files a background run takes in (regular files of
// any bytes, directories, links, the mount) come back from StartRun as they
// were queued.
func testQueuedRunFiles(t *testing.T, e *env) {
	_, ctx := e.user("u@example.com", wasmwiz.TierFree)
	files := &wasmwiz.RunFiles{Mount: "/work", Entries: []wasmwiz.FileEntry{
		{Path: "data/in.bin", Kind: wasmwiz.FileRegular, Data: []byte("\x00\xff\n binary")},
		{Path: "empty", Kind: wasmwiz.FileRegular, Data: []byte{}},
		{Path: "out", Kind: wasmwiz.FileDir},
		{Path: "data/link", Kind: wasmwiz.FileSymlink, Target: "in.bin"},
	}, Outputs: []string{"out/", "*.csv"}}
	r := e.queued(ctx, &wasmwiz.RunInput{Wasm: []byte("\x00asm"), Files: files})
	_, in, err := e.s.StartRun(e.anon, r.ID)
	wantOK(t, err, "StartRun")
	if in.Files == nil || in.Files.Mount != files.Mount || len(in.Files.Entries) != len(files.Entries) ||
		strings.Join(in.Files.Outputs, " ") != "out/ *.csv" {
		t.Fatalf("StartRun files %+v, want %+v", in.Files, files)
	}
	for i, want := range files.Entries {
		got := in.Files.Entries[i]
		if got.Path != want.Path || got.Kind != want.Kind || string(got.Data) != string(want.Data) || got.Target != want.Target {
			t.Errorf("entry %d: %+v, want %+v", i, got, want)
		}
	}
}

// testFinishedRunFiles: the output files of a background run are kept with
// its final record, content and omitted ones alike, read with the run by
// id (as its webhook sends it) but not in lists.
func testFinishedRunFiles(t *testing.T, e *env) {
	_, ctx := e.user("u@example.com", wasmwiz.TierFree)
	r := e.queued(ctx, nil)
	started, _, err := e.s.StartRun(e.anon, r.ID)
	wantOK(t, err, "StartRun")
	fin := *started
	fin.State, fin.Status = wasmwiz.RunDone, wasmwiz.StatusOK
	fin.Files = []wasmwiz.OutputFile{
		{Path: "out/a.bin", Size: 3, SHA256: "ab", Data: []byte("\x00\xff\n")},
		{Path: "out/empty", Size: 0, SHA256: "e3", Data: []byte{}},
		{Path: "out/big", Size: 1 << 20, SHA256: "cd", Omitted: true},
	}
	ok, err := e.s.FinishRun(e.anon, &fin, nil)
	if err != nil || !ok {
		t.Fatalf("FinishRun: %v, %v", ok, err)
	}
	got, err := e.s.FindRunByID(ctx, r.ID)
	wantOK(t, err, "FindRunByID")
	if len(got.Files) != len(fin.Files) {
		t.Fatalf("files read back: %+v, want %+v", got.Files, fin.Files)
	}
	for i, want := range fin.Files {
		f := got.Files[i]
		if f.Path != want.Path || f.Size != want.Size || f.SHA256 != want.SHA256 || f.Omitted != want.Omitted ||
			string(f.Data) != string(want.Data) || (f.Data == nil) != want.Omitted {
			t.Errorf("file %d: %+v, want %+v", i, f, want)
		}
	}
	runs, _, err := e.s.FindRuns(ctx, wasmwiz.RunFilter{})
	wantOK(t, err, "FindRuns")
	for _, l := range runs {
		if l.Files != nil {
			t.Errorf("a list carries run %s's files", l.ID)
		}
	}
}
