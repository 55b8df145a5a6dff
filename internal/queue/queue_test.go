package queue_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/queue"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

const runKind = "wasmwiz_run"

// enqueueOn returns the enqueue function of QueueRun that inserts the
// run's job with q.
func enqueueOn(q *queue.Queue) enqueueRun {
	return q.EnqueueRun
}

func TestEnqueuedRunIsHandedToTheRunner(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		r := newRunner(nil)
		q := s.startQueue(t, queue.Options{Workers: 2, Runner: r})
		_, ctx := s.user(t, "u@example.com")
		run := s.mustQueueRun(t, ctx, "", enqueueOn(q))
		if got := testenv.Recv(t, r.started, "the run's job"); got != run.ID {
			t.Fatalf("the runner was given %q, want the run %q", got, run.ID)
		}
		testenv.WaitFor(t, "River to complete the run's job", func() bool {
			return slices.Equal(s.states(t, runKind), []string{"completed"})
		})
	})
}

// One run worker takes the runs by their rank in their owner's runs queued
// or running: a user who queued several runs holds it for the first one
// only, and another user's first run, queued after them all, goes next.
// Each rank is River's priority of the job, the ranks past River's last
// sharing it.
func TestRunsAreTakenByRank(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		release := testenv.NewGate(t)
		r := newRunner(release)
		q := s.startQueue(t, queue.Options{Workers: 1, Runner: r})
		t.Cleanup(release.Open) // before the queue's Stop, which waits for the run
		_, a := s.user(t, "many@example.com")
		_, b := s.user(t, "one@example.com")
		var many []string
		for range 5 {
			many = append(many, s.mustQueueRun(t, a, "", enqueueOn(q)).ID)
			if len(many) == 1 {
				if got := testenv.Recv(t, r.started, "the first run"); got != many[0] {
					t.Fatalf("the runner was given %q, want the first run %q", got, many[0])
				}
			}
		}
		one := s.mustQueueRun(t, b, "", enqueueOn(q)).ID
		release.Open()
		want := append([]string{one}, many[1:]...)
		for i, id := range want {
			if got := testenv.Recv(t, r.started, "the next run"); got != id {
				t.Fatalf("run %d after the first was %q, want %q (the other user's run %q, then the first user's %v)",
					i+1, got, id, one, many[1:])
			}
		}
		var priorities []int
		for _, j := range s.jobs(t, runKind) {
			priorities = append(priorities, j.Priority)
		}
		if want := []int{1, 2, 3, 4, 4, 1}; !slices.Equal(priorities, want) {
			t.Fatalf("the jobs' priorities are %v, want %v", priorities, want)
		}
	})
}

// A run's job is inserted in the store's transaction: when the store rolls
// it back, no job is left behind, and the next run's job is the only one
// the runner is given.
func TestRolledBackEnqueueLeavesNoJob(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		r := newRunner(nil)
		q := s.startQueue(t, queue.Options{Workers: 2, Runner: r})
		_, ctx := s.user(t, "u@example.com")
		failed := errors.New("the store failed after the job was inserted")
		_, err := s.queueRun(ctx, "", func(ctx context.Context, tx any, id string, rank int) error {
			if err := q.EnqueueRun(ctx, tx, id, rank); err != nil {
				return err
			}
			return failed
		})
		if !errors.Is(err, failed) {
			t.Fatalf("QueueRun whose transaction fails after the insert: %v, want %v", err, failed)
		}
		if states := s.states(t, runKind); len(states) != 0 {
			t.Fatalf("a rolled back transaction left jobs in the states %v", states)
		}
		run := s.mustQueueRun(t, ctx, "", enqueueOn(q))
		if got := testenv.Recv(t, r.started, "the committed run's job"); got != run.ID {
			t.Fatalf("the runner was given %q, want the committed run %q", got, run.ID)
		}
		if states := s.states(t, runKind); len(states) != 1 {
			t.Fatalf("jobs in the states %v, want only the committed run's", states)
		}
	})
}

// EnqueueRun and EnqueueWebhooks insert only in a transaction of the
// store's own type.
func TestEnqueueRefusesAnotherTransaction(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		q := s.newQueue(t, queue.Options{Workers: 1, Runner: newRunner(nil)})
		enqueues := map[string]func(tx any) error{
			"EnqueueRun": func(tx any) error { return q.EnqueueRun(context.Background(), tx, wasmwiz.NewRunID(time.Now()), 0) },
			"EnqueueWebhooks": func(tx any) error {
				return q.EnqueueWebhooks(context.Background(), tx, []wasmwiz.Webhook{{RunID: wasmwiz.NewRunID(time.Now()), UserID: 1}})
			},
		}
		for _, tc := range []struct {
			name string
			tx   any
		}{
			{"nil", nil},
			{"not a transaction", "BEGIN"},
			{"the other store's", s.foreignTx},
		} {
			for name, enqueue := range enqueues {
				t.Run(name+"/"+tc.name, func(t *testing.T) {
					err := enqueue(tc.tx)
					wantCode(t, err, wasmwiz.EINTERNAL, name+" with a transaction that is not the store's")
					if !contains(err.Error(), "not the store's") {
						t.Errorf("error %q does not say the transaction is not the store's", err)
					}
				})
			}
		}
		if states := s.states(t, runKind); len(states) != 0 {
			t.Fatalf("refused transactions left jobs in the states %v", states)
		}
		if jobs := s.jobs(t, webhookKind); len(jobs) != 0 {
			t.Fatalf("refused transactions left webhook jobs %+v", jobs)
		}
	})
}

// A run's final state and its webhook's job are committed together: the
// store's calls that make runs final insert, with the queue, the webhook
// jobs of exactly the runs they made final that have a callback URL, with
// each run's owner and the delivery's attempts.
func TestFinalRunsWebhookJobsCommitWithThem(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		q := s.newQueue(t, queue.Options{WebhookAttempts: 3})
		u, ctx := s.user(t, "final@example.com")
		start := func(r *wasmwiz.UsageRecord) *wasmwiz.UsageRecord {
			t.Helper()
			started, _, err := s.StartRun(ctx, r.ID)
			if err != nil {
				t.Fatalf("StartRun: %v", err)
			}
			return started
		}
		const hook = "https://example.com/hook"
		var want []wasmwiz.Webhook
		for _, callback := range []string{hook, ""} {
			fin := start(s.mustQueueRun(t, ctx, callback, noJob))
			fin.State, fin.Status = wasmwiz.RunDone, wasmwiz.StatusOK
			if ok, err := s.FinishRun(ctx, fin, q.EnqueueWebhooks); err != nil || !ok {
				t.Fatalf("FinishRun: %v %v", ok, err)
			}
			if callback != "" {
				want = append(want, wasmwiz.Webhook{RunID: fin.ID, UserID: u.ID})
			}
			if got := s.webhookJobs(t, 3); !slices.Equal(got, want) {
				t.Fatalf("after FinishRun of a run with callback %q: webhook jobs %+v, want %+v", callback, got, want)
			}
		}
		cancelled := s.mustQueueRun(t, ctx, hook, noJob)
		if _, err := s.CancelRun(ctx, cancelled.ID, q.EnqueueWebhooks); err != nil {
			t.Fatalf("CancelRun: %v", err)
		}
		want = append(want, wasmwiz.Webhook{RunID: cancelled.ID, UserID: u.ID})
		if got := s.webhookJobs(t, 3); !slices.Equal(got, want) {
			t.Fatalf("after CancelRun: webhook jobs %+v, want %+v", got, want)
		}
		stale := []*wasmwiz.UsageRecord{start(s.mustQueueRun(t, ctx, hook, noJob)), start(s.mustQueueRun(t, ctx, hook, noJob)),
			start(s.mustQueueRun(t, ctx, "", noJob))}
		failed, err := s.FailStaleRuns(ctx, time.Now().Add(time.Minute), "its replica stopped", 100, q.EnqueueWebhooks)
		if err != nil || len(failed) != 3 {
			t.Fatalf("FailStaleRuns: %+v %v, want 3 runs failed", failed, err)
		}
		got := s.webhookJobs(t, 3)
		if len(got) != len(want)+2 || !slices.Equal(got[:len(want)], want) ||
			!slices.ContainsFunc(got, func(h wasmwiz.Webhook) bool { return h == wasmwiz.Webhook{RunID: stale[0].ID, UserID: u.ID} }) ||
			!slices.ContainsFunc(got, func(h wasmwiz.Webhook) bool { return h == wasmwiz.Webhook{RunID: stale[1].ID, UserID: u.ID} }) {
			t.Fatalf("after FailStaleRuns: webhook jobs %+v, want %+v and those of %s and %s", got, want, stale[0].ID, stale[1].ID)
		}
	})
}

// A webhook job whose insert fails, or whose transaction fails after it,
// leaves neither the job nor the run's final state: the run is still
// running, for a later try that commits both.
func TestFailedWebhookInsertLeavesTheRunNotFinal(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		q := s.newQueue(t, queue.Options{})
		_, ctx := s.user(t, "unfinished@example.com")
		run := s.mustQueueRun(t, ctx, "https://example.com/hook", noJob)
		fin, _, err := s.StartRun(ctx, run.ID)
		if err != nil {
			t.Fatalf("StartRun: %v", err)
		}
		fin.State, fin.Status = wasmwiz.RunDone, wasmwiz.StatusOK
		failed := errors.New("the store failed after the webhook's job was inserted")
		ended, end := context.WithCancel(context.Background())
		end()
		for _, tc := range []struct {
			name    string
			enqueue wasmwiz.EnqueueWebhooks
			want    func(error) bool
		}{
			{"InsertFails", func(ctx context.Context, tx any, hooks []wasmwiz.Webhook) error {
				return q.EnqueueWebhooks(ended, tx, hooks) // the queue's insert fails: its context ended
			}, func(err error) bool { return wasmwiz.ErrorCode(err) == wasmwiz.EUNAVAILABLE }},
			{"FailsAfterTheInsert", func(ctx context.Context, tx any, hooks []wasmwiz.Webhook) error {
				if err := q.EnqueueWebhooks(ctx, tx, hooks); err != nil {
					return err
				}
				return failed
			}, func(err error) bool { return errors.Is(err, failed) }},
		} {
			ok, err := s.FinishRun(ctx, fin, tc.enqueue)
			if ok || !tc.want(err) {
				t.Fatalf("%s: FinishRun: %v %v, want it failed", tc.name, ok, err)
			}
			if got, err := s.FindRunByID(ctx, run.ID); err != nil || got.State != wasmwiz.RunRunning {
				t.Fatalf("%s: the run after FinishRun failed: %+v %v, want running", tc.name, got, err)
			}
			if jobs := s.jobs(t, webhookKind); len(jobs) != 0 {
				t.Fatalf("%s: webhook jobs %+v left behind", tc.name, jobs)
			}
		}
		if ok, err := s.FinishRun(ctx, fin, q.EnqueueWebhooks); err != nil || !ok {
			t.Fatalf("FinishRun again: %v %v", ok, err)
		}
		if got := s.webhookJobs(t, 6); !slices.Equal(got, []wasmwiz.Webhook{{RunID: run.ID, UserID: fin.UserID}}) {
			t.Fatalf("webhook jobs %+v after the run was finished", got)
		}
	})
}

func TestOptionsDefaults(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		// SQLite only polls; PostgreSQL announces every insert, so its
		// polling is a fallback and can be River's own.
		wantPoll := map[string]time.Duration{"SQLite": 200 * time.Millisecond, "PostgreSQL": time.Second}[storeName(t)]
		for _, tc := range []struct {
			name string
			in   queue.Options
			want queue.Options
		}{
			{"zero", queue.Options{},
				queue.Options{WebhookWorkers: 4, WebhookAttempts: 6, PollInterval: wantPoll}},
			{"negative", queue.Options{Workers: -1, WebhookWorkers: -1, WebhookAttempts: -1, PollInterval: -1},
				queue.Options{WebhookWorkers: 4, WebhookAttempts: 6, PollInterval: wantPoll}},
			{"set", queue.Options{Workers: 3, WebhookWorkers: 2, WebhookAttempts: 9, PollInterval: 10 * time.Millisecond},
				queue.Options{Workers: 3, WebhookWorkers: 2, WebhookAttempts: 9, PollInterval: 10 * time.Millisecond}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				q := s.newQueue(t, tc.in)
				got := queue.OptionsOf(q)
				if got.Logger == nil {
					t.Error("no default Logger")
				}
				got.Logger = nil
				if got != tc.want {
					t.Errorf("options %+v, want %+v", got, tc.want)
				}
				cfg := queue.RiverConfigOf(q)
				if cfg.FetchPollInterval != tc.want.PollInterval {
					t.Errorf("River polls every %v, want the PollInterval %v", cfg.FetchPollInterval, tc.want.PollInterval)
				}
				// A webhook delivery whose replica died is tried again
				// within minutes; a run job worked again leaves its run
				// (TestRunJobWorkedAgainLeavesItsRun).
				if cfg.RescueStuckJobsAfter <= 0 || cfg.RescueStuckJobsAfter > 15*time.Minute {
					t.Errorf("River rescues jobs after %v, want within 15 minutes", cfg.RescueStuckJobsAfter)
				}
				runs, ok := cfg.Queues[queue.QueueRuns]
				if ok != (tc.want.Workers > 0) || runs.MaxWorkers != tc.want.Workers {
					t.Errorf("runs queue %+v (configured %v) for %d workers", runs, ok, tc.want.Workers)
				}
				if hooks := cfg.Queues[queue.QueueWebhooks]; hooks.MaxWorkers != tc.want.WebhookWorkers {
					t.Errorf("webhooks queue %+v, want %d workers", hooks, tc.want.WebhookWorkers)
				}
			})
		}
	})
}

// storeName is the name of the store subtest t runs in.
func storeName(t *testing.T) string {
	for _, k := range stores {
		if contains(t.Name(), "/"+k.name) {
			return k.name
		}
	}
	t.Fatalf("test %s runs on no store", t.Name())
	return ""
}

// Stop lets a running job end before it returns.
func TestStopWaitsForTheRunningJob(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		release := testenv.NewGate(t)
		r := newRunner(release)
		// River logs (at debug level) when a stop begins.
		stopping := newLogWatch("Stopping producers")
		q := s.newQueue(t, queue.Options{Workers: 1, Runner: r, Logger: slog.New(stopping)})
		run := s.startWithRunningJob(t, q, r)

		stopped := make(chan error, 1)
		go func() {
			sctx, cancel := context.WithTimeout(context.Background(), testenv.Patience)
			defer cancel()
			stopped <- q.Stop(sctx)
		}()
		testenv.Recv(t, stopping.seen, "the stop to begin")
		select {
		case err := <-stopped:
			t.Fatalf("Stop returned (%v) while a job ran", err)
		case end := <-r.ended:
			t.Fatalf("the running job ended (%+v) when the stop began", end)
		default:
		}
		release.Open()
		if end := endedBeforeStop(t, r, stopped); end.id != run.ID || end.err != nil {
			t.Fatalf("the running job ended as %+v, want %s uncancelled", end, run.ID)
		}
	})
}

// Stop whose context ends while a job runs cancels the job's context and
// returns once the job has ended.
func TestStopCancelsTheRunningJobWhenItsContextEnds(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		r := newRunner(testenv.NewGate(t)) // never opened before the test ends
		q := s.newQueue(t, queue.Options{Workers: 1, Runner: r})
		run := s.startWithRunningJob(t, q, r)

		sctx, cancel := context.WithCancel(context.Background())
		cancel()
		stopped := make(chan error, 1)
		go func() { stopped <- q.Stop(sctx) }()
		if end := endedBeforeStop(t, r, stopped); end.id != run.ID || !errors.Is(end.err, context.Canceled) {
			t.Fatalf("the running job ended as %+v, want %s cancelled", end, run.ID)
		}
	})
}

// startWithRunningJob starts q, whose runner is r, without stopping it when
// the test ends (the test stops it), queues a run on it and returns the run
// once r has begun its job.
func (s *store) startWithRunningJob(t *testing.T, q *queue.Queue, r *runner) *wasmwiz.UsageRecord {
	t.Helper()
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, ctx := s.user(t, "u@example.com")
	run := s.mustQueueRun(t, ctx, "", enqueueOn(q))
	testenv.Recv(t, r.started, "the run's job")
	return run
}

// endedBeforeStop waits for Stop's answer on stopped, which must be nil,
// and returns how r's job ended, which it must have by then.
func endedBeforeStop(t *testing.T, r *runner, stopped <-chan error) runEnd {
	t.Helper()
	if err := testenv.Recv(t, stopped, "Stop"); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case end := <-r.ended:
		return end
	default:
		t.Fatal("Stop returned before the running job ended")
		return runEnd{}
	}
}

// A replica with no workers admits runs that another replica runs.
func TestNoWorkersAdmitsRunsForOthers(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		idle, busy := newRunner(nil), newRunner(nil)
		admits := s.startQueue(t, queue.Options{Workers: 0, Runner: idle})
		s.startQueue(t, queue.Options{Workers: 1, Runner: busy})
		_, ctx := s.user(t, "u@example.com")
		run := s.mustQueueRun(t, ctx, "", enqueueOn(admits))
		if got := testenv.Recv(t, busy.started, "the run's job on the replica with a worker"); got != run.ID {
			t.Fatalf("the worker was given %q, want %q", got, run.ID)
		}
		if len(idle.started) != 0 {
			t.Fatal("a replica with no workers ran a job")
		}
	})
}

// On PostgreSQL a replica learns of an insert by NOTIFY, so a run starts
// long before the next poll: here there is none within the test. Each run
// is enqueued as soon as the one before started (runs admitted in a
// burst), which River would leave to the next poll were inserts that close
// together not each announced (docs/PERFORMANCE.md, "The idle queue").
func TestIdlePostgresQueueStartsNotifiedRuns(t *testing.T) {
	t.Parallel()
	s := openPostgres(t)
	r := newRunner(nil)
	q := s.startQueue(t, queue.Options{Workers: 2, Runner: r, PollInterval: time.Hour})
	_, ctx := s.user(t, "u@example.com")
	for i := range 3 {
		run := s.mustQueueRun(t, ctx, "", enqueueOn(q))
		// Recv's patience (a minute) is far shorter than the poll interval.
		if got := testenv.Recv(t, r.started, "a run started without a poll"); got != run.ID {
			t.Fatalf("run %d: the runner was given %q, want %q", i, got, run.ID)
		}
	}
}

// TestRunJobWorkedAgainLeavesItsRun: on each store, a run job worked
// again while its run runs (River rescued it, its replica alive or not)
// leaves the run as it is: its replica finishes it, or the stale-run
// sweeper fails it once its heartbeats stop. So River may rescue jobs soon
// (a webhook delivery whose replica died is tried again within minutes),
// however long a run may be.
func TestRunJobWorkedAgainLeavesItsRun(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		_, ctx := s.user(t, "rescued@example.com")
		rec := s.mustQueueRun(t, ctx, "https://example.com/hook", noJob)
		if _, _, err := s.StartRun(ctx, rec.ID); err != nil { // its replica took it
			t.Fatal(err)
		}
		q := s.newQueue(t, queue.Options{})
		q.SetRunner(&wasmwiz.Executor{Runs: s.RunStore, Queue: q})
		if err := queue.WorkRun(ctx, q, rec.ID, 2, 5); err != nil {
			t.Fatalf("the job worked again: %v, want done", err)
		}
		if got, err := s.FindRunByID(ctx, rec.ID); err != nil || got.State != wasmwiz.RunRunning {
			t.Fatalf("the run after its job was worked again: %+v, %v; want still running", got, err)
		}
		if hooks := s.webhookJobs(t, 6); len(hooks) != 0 {
			t.Fatalf("webhook jobs %+v, want none: the run has not ended", hooks)
		}
	})
}

// unstartable is a run store whose StartRun finds the database unavailable.
type unstartable struct{ wasmwiz.RunStore }

func (unstartable) StartRun(context.Context, string) (*wasmwiz.UsageRecord, *wasmwiz.RunInput, error) {
	return nil, nil, wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "database unavailable")
}

// TestRunJobsLastAttemptFailsTheRun: on each store, a run job that could
// not start its run (StartRun unavailable) leaves the run queued to be
// tried again, until its last attempt, after which River discards the job:
// then the run is failed, its followers told and its webhook queued, so
// that it does not stay queued for good, holding a place of its owner's
// max_concurrent.
func TestRunJobsLastAttemptFailsTheRun(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		u, ctx := s.user(t, "stuck@example.com")
		rec := s.mustQueueRun(t, ctx, "https://example.com/hook", noJob)
		q := s.newQueue(t, queue.Options{})
		ex := &wasmwiz.Executor{Runs: unstartable{s.RunStore}, Queue: q}
		q.SetRunner(ex)
		err := queue.WorkRun(ctx, q, rec.ID, 4, 5)
		wantCode(t, err, wasmwiz.EUNAVAILABLE, "an attempt before the last")
		if got, err := s.FindRunByID(ctx, rec.ID); err != nil || got.State != wasmwiz.RunQueued {
			t.Fatalf("after an attempt before the last: %+v, %v, want queued", got, err)
		}
		if err := queue.WorkRun(ctx, q, rec.ID, 5, 5); err != nil {
			t.Fatalf("the last attempt: %v, want the run failed and the job done", err)
		}
		got, err := s.FindRunByID(ctx, rec.ID)
		if err != nil || got.State != wasmwiz.RunFailed || !contains(got.Message, "could not be started") {
			t.Fatalf("after the last attempt: %+v, %v, want failed", got, err)
		}
		if got := s.webhookJobs(t, 6); !slices.Equal(got, []wasmwiz.Webhook{{RunID: rec.ID, UserID: u.ID}}) {
			t.Fatalf("webhook jobs %+v, want the failed run's", got)
		}
	})
}
