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

// webhookCalls is an EnqueueWebhooks that keeps the webhooks of each call
// and, for each, the run's state as read outside the store's transaction
// during the call (the state committed before it), then fails with err.
type webhookCalls struct {
	e     *env
	err   error
	calls [][]wasmwiz.Webhook
	seen  map[string]wasmwiz.RunState
}

func (e *env) webhookCalls(err error) *webhookCalls {
	return &webhookCalls{e: e, err: err, seen: map[string]wasmwiz.RunState{}}
}

func (w *webhookCalls) enqueue(ctx context.Context, tx any, hooks []wasmwiz.Webhook) error {
	if tx == nil {
		return errors.New("no transaction")
	}
	w.calls = append(w.calls, slices.Clone(hooks))
	for _, h := range hooks {
		got, err := w.e.s.FindRunByID(w.e.sys, h.RunID)
		if err != nil {
			return err
		}
		w.seen[h.RunID] = got.State
	}
	return w.err
}

// want fails t unless the calls so far were one with hooks (in any order),
// or none when hooks is empty, each of whose runs was seen, outside the
// transaction, in the state it had before (before[run]).
func (w *webhookCalls) want(t *testing.T, what string, before map[string]wasmwiz.RunState, hooks ...wasmwiz.Webhook) {
	t.Helper()
	if len(hooks) == 0 {
		if len(w.calls) != 0 {
			t.Fatalf("%s: enqueued webhooks %+v, want none (not called)", what, w.calls)
		}
		return
	}
	byRun := func(a, b wasmwiz.Webhook) int { return strings.Compare(a.RunID, b.RunID) }
	slices.SortFunc(hooks, byRun)
	if len(w.calls) != 1 {
		t.Fatalf("%s: enqueue called %d times (%+v), want once with %+v", what, len(w.calls), w.calls, hooks)
	}
	got := slices.SortedFunc(slices.Values(w.calls[0]), byRun)
	if !slices.Equal(got, hooks) {
		t.Fatalf("%s: enqueued %+v, want %+v", what, got, hooks)
	}
	for _, h := range hooks {
		if w.seen[h.RunID] != before[h.RunID] {
			t.Fatalf("%s: run %s read %s outside the transaction as its webhook was enqueued, want %s (not committed yet)",
				what, h.RunID, w.seen[h.RunID], before[h.RunID])
		}
	}
}

// wantState fails t unless run id is in state.
func (e *env) wantState(id string, state wasmwiz.RunState, what string) {
	e.t.Helper()
	got, err := e.s.FindRunByID(e.sys, id)
	wantOK(e.t, err, what)
	if got.State != state {
		e.t.Fatalf("%s: run %s is %s, want %s", what, id, got.State, state)
	}
}

// testFinalWebhooks: FinishRun, CancelRun and FailStaleRuns enqueue the
// webhooks of exactly the runs they make final that have a callback URL,
// in the transaction that makes them final (the run is not final yet for
// a reader outside it), once per call, with the run's owner; a run without
// one, a run already final and a running run marked for cancel enqueue
// nothing.
func testFinalWebhooks(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	_, admin := e.admin("a@example.com")
	start := func(r *wasmwiz.UsageRecord) *wasmwiz.UsageRecord {
		t.Helper()
		started, _, err := e.s.StartRun(e.anon, r.ID)
		wantOK(t, err, "StartRun")
		return started
	}
	finish := func(r *wasmwiz.UsageRecord, w *webhookCalls) bool {
		t.Helper()
		fin := *r
		fin.State, fin.Status = wasmwiz.RunDone, wasmwiz.StatusOK
		ok, err := e.s.FinishRun(e.anon, &fin, w.enqueue)
		wantOK(t, err, "FinishRun")
		return ok
	}
	running := func(rs ...*wasmwiz.UsageRecord) map[string]wasmwiz.RunState {
		m := map[string]wasmwiz.RunState{}
		for _, r := range rs {
			m[r.ID] = wasmwiz.RunRunning
		}
		return m
	}

	hooked := start(e.queued(ctx, nil))
	w := e.webhookCalls(nil)
	if !finish(hooked, w) {
		t.Fatal("FinishRun of a running run changed nothing")
	}
	w.want(t, "FinishRun", running(hooked), wasmwiz.Webhook{RunID: hooked.ID, UserID: u.ID})
	e.wantState(hooked.ID, wasmwiz.RunDone, "after FinishRun")
	w = e.webhookCalls(nil)
	if finish(hooked, w) {
		t.Fatal("FinishRun changed a run already final")
	}
	w.want(t, "FinishRun of a final run", nil)
	silent := start(e.queuedTo(ctx, nil, ""))
	w = e.webhookCalls(nil)
	finish(silent, w)
	w.want(t, "FinishRun of a run without a callback URL", nil)

	// Cancelled by an admin: the webhook is the owner's.
	queued := e.queued(ctx, nil)
	w = e.webhookCalls(nil)
	_, err := e.s.CancelRun(admin, queued.ID, w.enqueue)
	wantOK(t, err, "CancelRun of a queued run")
	w.want(t, "CancelRun of a queued run", map[string]wasmwiz.RunState{queued.ID: wasmwiz.RunQueued},
		wasmwiz.Webhook{RunID: queued.ID, UserID: u.ID})
	e.wantState(queued.ID, wasmwiz.RunCancelled, "after CancelRun")
	silent = e.queuedTo(ctx, nil, "")
	w = e.webhookCalls(nil)
	_, err = e.s.CancelRun(ctx, silent.ID, w.enqueue)
	wantOK(t, err, "CancelRun of a queued run without a callback URL")
	w.want(t, "CancelRun of a queued run without a callback URL", nil)
	marked := start(e.queued(ctx, nil))
	w = e.webhookCalls(nil)
	_, err = e.s.CancelRun(ctx, marked.ID, w.enqueue)
	wantOK(t, err, "CancelRun of a running run")
	w.want(t, "CancelRun of a running run (marked, not final)", nil)
	// The sweep below fails marked too (its replica sent no heartbeat).

	stale1, stale2 := start(e.queued(ctx, nil)), start(e.queued(ctx, nil))
	silentStale := start(e.queuedTo(ctx, nil, ""))
	e.clock.Add(time.Minute)
	live := start(e.queued(ctx, nil))
	w = e.webhookCalls(nil)
	failed, err := e.s.FailStaleRuns(e.anon, e.clock.Now().Add(-30*time.Second), "its replica stopped", 100, w.enqueue)
	wantOK(t, err, "FailStaleRuns")
	if len(failed) != 4 {
		t.Fatalf("FailStaleRuns failed %+v, want 4 runs", failed)
	}
	w.want(t, "FailStaleRuns", running(marked, stale1, stale2),
		wasmwiz.Webhook{RunID: marked.ID, UserID: u.ID}, wasmwiz.Webhook{RunID: stale1.ID, UserID: u.ID},
		wasmwiz.Webhook{RunID: stale2.ID, UserID: u.ID})
	for _, r := range []*wasmwiz.UsageRecord{marked, stale1, stale2, silentStale} {
		e.wantState(r.ID, wasmwiz.RunFailed, "after FailStaleRuns")
	}
	e.wantState(live.ID, wasmwiz.RunRunning, "a live run after FailStaleRuns")
	w = e.webhookCalls(nil)
	failed, err = e.s.FailStaleRuns(e.anon, e.clock.Now().Add(-30*time.Second), "its replica stopped", 100, w.enqueue)
	wantOK(t, err, "FailStaleRuns with none stale")
	if len(failed) != 0 {
		t.Fatalf("FailStaleRuns failed %+v again", failed)
	}
	w.want(t, "FailStaleRuns with none stale", nil)
}

// testFinalWebhooksFail: when enqueueing the webhooks fails, the store call
// fails with its error and its transaction rolls back: the runs are not
// final (and a later call makes them so, with their webhooks).
func testFinalWebhooksFail(t *testing.T, e *env) {
	_, ctx := e.user("u@example.com", wasmwiz.TierFree)
	down := wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "the queue is unavailable")

	r, _, err := e.s.StartRun(e.anon, e.queued(ctx, nil).ID)
	wantOK(t, err, "StartRun")
	_, err = e.s.HeartbeatRun(e.anon, r.ID, wasmwiz.OutputTail{Data: []byte("so far")}, wasmwiz.OutputTail{})
	wantOK(t, err, "HeartbeatRun")
	fin := *r
	fin.State, fin.Status, fin.Stdout = wasmwiz.RunDone, wasmwiz.StatusOK, []byte("so far and the end")
	ok, err := e.s.FinishRun(e.anon, &fin, e.webhookCalls(down).enqueue)
	WantCode(t, err, wasmwiz.EUNAVAILABLE, "FinishRun whose webhook could not be enqueued")
	if ok {
		t.Fatal("FinishRun rolled back says it finished the run")
	}
	e.wantState(r.ID, wasmwiz.RunRunning, "after a FinishRun rolled back")
	if got, _ := e.s.FindRunByID(e.sys, r.ID); string(got.Stdout) != "so far" {
		t.Fatalf("after a FinishRun rolled back the run's output is %q, want its heartbeat's %q", got.Stdout, "so far")
	}
	w := e.webhookCalls(nil)
	ok, err = e.s.FinishRun(e.anon, &fin, w.enqueue)
	if err != nil || !ok {
		t.Fatalf("FinishRun again: %v %v", ok, err)
	}
	if len(w.calls) != 1 {
		t.Fatalf("FinishRun again enqueued %+v, want the webhook", w.calls)
	}

	q := e.queued(ctx, nil)
	_, err = e.s.CancelRun(ctx, q.ID, e.webhookCalls(down).enqueue)
	WantCode(t, err, wasmwiz.EUNAVAILABLE, "CancelRun whose webhook could not be enqueued")
	e.wantState(q.ID, wasmwiz.RunQueued, "after a CancelRun rolled back")
	if _, in, err := e.s.StartRun(e.anon, q.ID); err != nil || in == nil {
		t.Fatalf("StartRun after a CancelRun rolled back: %v, input %v (want kept)", err, in)
	}

	e.clock.Add(time.Minute)
	silent := e.queuedTo(ctx, nil, "")
	_, _, err = e.s.StartRun(e.anon, silent.ID)
	wantOK(t, err, "StartRun")
	e.clock.Add(time.Minute)
	failed, err := e.s.FailStaleRuns(e.anon, e.clock.Now().Add(-30*time.Second), "its replica stopped", 100, e.webhookCalls(down).enqueue)
	WantCode(t, err, wasmwiz.EUNAVAILABLE, "FailStaleRuns whose webhooks could not be enqueued")
	if len(failed) != 0 {
		t.Fatalf("FailStaleRuns rolled back returned %+v", failed)
	}
	// Neither the run with a callback URL nor the one without was failed.
	e.wantState(q.ID, wasmwiz.RunRunning, "after FailStaleRuns rolled back")
	e.wantState(silent.ID, wasmwiz.RunRunning, "after FailStaleRuns rolled back")
	w = e.webhookCalls(nil)
	failed, err = e.s.FailStaleRuns(e.anon, e.clock.Now().Add(-30*time.Second), "its replica stopped", 100, w.enqueue)
	wantOK(t, err, "FailStaleRuns again")
	if len(failed) != 2 || len(w.calls) != 1 || len(w.calls[0]) != 1 || w.calls[0][0].RunID != q.ID {
		t.Fatalf("FailStaleRuns again failed %+v and enqueued %+v, want both failed and q's webhook", failed, w.calls)
	}
}
