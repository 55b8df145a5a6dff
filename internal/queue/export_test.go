package queue

import (
	"context"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// OptionsOf returns q's options, defaults applied.
func OptionsOf(q *Queue) Options { return q.opts }

// RiverConfigOf returns the configuration q gives River.
func RiverConfigOf(q *Queue) *river.Config { return q.config() }

// Begin, End and the clock of Webhooks' turns (webhook.go), for the tests.
func (w *Webhooks) Begin(user, job int64) (time.Duration, bool) { return w.begin(user, job) }
func (w *Webhooks) End(user int64)                              { w.end(user) }
func (w *Webhooks) SetNow(now func() time.Time)                 { w.now = now }

// UsersTracked is how many users Webhooks keeps turns for.
func (w *Webhooks) UsersTracked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.users)
}

// WorkRun works a run job of id on its attempt of maxAttempts, as River
// would.
func WorkRun(ctx context.Context, q *Queue, id string, attempt, maxAttempts int) error {
	job := &river.Job[RunArgs]{JobRow: &rivertype.JobRow{Attempt: attempt, MaxAttempts: maxAttempts}, Args: RunArgs{RunID: id}}
	return (&runWorker{q: q}).Work(ctx, job)
}

// EnqueueRunOnce inserts, in tx, the job of run id as EnqueueRun does, but
// with a single attempt: River gives it up after its first failure.
func EnqueueRunOnce(ctx context.Context, q *Queue, tx any, id string) error {
	return q.client.insertTx(ctx, tx, RunArgs{RunID: id}, &river.InsertOpts{Queue: QueueRuns, MaxAttempts: 1})
}
