package queue_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/queue"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// downRuns is a run store that can neither start nor finish a run while
// down is set, as a database that stays unavailable.
type downRuns struct {
	wasmwiz.RunStore
	down atomic.Bool
}

func (d *downRuns) StartRun(ctx context.Context, id string) (*wasmwiz.UsageRecord, *wasmwiz.RunInput, error) {
	if d.down.Load() {
		return nil, nil, wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "database unavailable")
	}
	return d.RunStore.StartRun(ctx, id)
}

func (d *downRuns) FinishRun(ctx context.Context, r *wasmwiz.UsageRecord, webhooks wasmwiz.EnqueueWebhooks) (bool, error) {
	if d.down.Load() {
		return false, wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "database unavailable")
	}
	return d.RunStore.FinishRun(ctx, r, webhooks)
}

// TestAbandonedRunsAreFailed: on each store, a run whose job River gave up
// (its last attempt could neither start the run nor fail it: the store was
// unavailable through it) stays queued, holding a place of its owner's
// max_concurrent, with nothing left to end it. FailAbandonedRuns fails it
// once the store answers, with its webhook, and deletes the job; while the
// store is still unavailable, it keeps the job for the next call.
func TestAbandonedRunsAreFailed(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		u, ctx := s.user(t, "abandoned@example.com")
		runs := &downRuns{RunStore: s.RunStore}
		runs.down.Store(true)
		q := s.newQueue(t, queue.Options{Workers: 1})
		q.SetRunner(&wasmwiz.Executor{Runs: runs, Queue: q})
		rec := s.mustQueueRun(t, ctx, "https://example.com/hook", func(ctx context.Context, tx any, id string, _ int) error {
			return queue.EnqueueRunOnce(ctx, q, tx, id)
		})
		start(t, q)
		testenv.WaitFor(t, "River to give the run's job up", func() bool {
			return slices.Equal(s.states(t, runKind), []string{"discarded"})
		})
		if got, err := s.FindRunByID(ctx, rec.ID); err != nil || got.State != wasmwiz.RunQueued {
			t.Fatalf("the run of the job given up: %+v, %v; want still queued", got, err)
		}

		n, err := q.FailAbandonedRuns(ctx)
		if n != 0 || wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
			t.Fatalf("FailAbandonedRuns with the store unavailable = %d, %v; want 0, EUNAVAILABLE", n, err)
		}
		if states := s.states(t, runKind); !slices.Equal(states, []string{"discarded"}) {
			t.Fatalf("the job after a call that could not fail its run: %v, want kept", states)
		}

		runs.down.Store(false)
		if n, err := q.FailAbandonedRuns(ctx); n != 1 || err != nil {
			t.Fatalf("FailAbandonedRuns with the store back = %d, %v; want 1, nil", n, err)
		}
		got, err := s.FindRunByID(ctx, rec.ID)
		if err != nil || got.State != wasmwiz.RunFailed || !contains(got.Message, "could not be started") {
			t.Fatalf("the run after FailAbandonedRuns: %+v, %v; want failed, saying why", got, err)
		}
		if states := s.states(t, runKind); len(states) != 0 {
			t.Fatalf("run jobs left: %v, want the one given up deleted", states)
		}
		if got := s.webhookJobs(t, 6); !slices.Equal(got, []wasmwiz.Webhook{{RunID: rec.ID, UserID: u.ID}}) {
			t.Fatalf("webhook jobs %+v, want the failed run's", got)
		}
		if n, err := q.FailAbandonedRuns(ctx); n != 0 || err != nil {
			t.Fatalf("FailAbandonedRuns again = %d, %v; want 0, nil", n, err)
		}
	})
}
