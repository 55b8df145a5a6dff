// Package queue is WasmWiz's durable queue of background work, on River:
// the runs of "async": true requests and the deliveries of their webhooks.
// It runs on the store's own database, so that no new service is needed:
// River's PostgreSQL driver (riverpgxv5) in production, its SQLite driver
// (riversqlite, on the SQLite store's one write connection) on the embedded
// default. A run's job is inserted in the store's transaction that stores
// the run (wasmwiz.RunQueue.EnqueueRun), so a run and its job exist
// together or not at all; any replica with a free worker takes the job,
// each user's first outstanding run before anyone's second
// (Queue.EnqueueRun).
// Likewise a webhook's job is inserted in the store's transaction that
// makes its run final (wasmwiz.RunQueue.EnqueueWebhooks), so a run never
// ends without its webhook.
//
// River retries a job whose attempt fails. A run job fails only before its
// guest starts (the store was unavailable): once the run is marked running
// (in a transaction of its own, wasmwiz.RunQueueService.StartRun), a retry
// finds it started and leaves it instead of running the guest again.
// A run's wall time is bounded by its limits, not by River's job timeout,
// which is off for run jobs (so River never rescues them); the heartbeat
// sweeper of the executor fails the runs of a replica that died. A webhook
// job has a timeout, so River rescues one left running by a replica that
// died (rescueAfter) and delivers it again.
package queue

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"github.com/wasmwiz/wasmwiz"
)

// Queue names.
const (
	QueueRuns     = "runs"
	QueueWebhooks = "webhooks"
)

// RunArgs is the job of one background run.
type RunArgs struct {
	RunID string `json:"run_id"`
}

// Kind implements river.JobArgs.
func (RunArgs) Kind() string { return "wasmwiz_run" }

// WebhookArgs is the delivery of one run's record to its callback URL.
type WebhookArgs struct {
	RunID string `json:"run_id"`
	// UserID is the run's owner, whose deliveries a replica makes one at
	// a time (0, in a job queued before jobs carried it: not bounded).
	UserID int64 `json:"user_id,omitempty"`
}

// Kind implements river.JobArgs.
func (WebhookArgs) Kind() string { return "wasmwiz_webhook" }

// Runner runs a queued run: wasmwiz.Executor.RunQueued; and, when its
// job's last attempt could not start it, fails it
// (wasmwiz.Executor.AbandonQueued), since River then discards the job and
// nothing would ever start or end the run.
type Runner interface {
	RunQueued(ctx context.Context, id string) error
	AbandonQueued(ctx context.Context, id string, cause error) error
}

// Options configure a Queue.
type Options struct {
	// Runner runs the run jobs; set it before Start (the executor is built
	// after the queue it uses).
	Runner Runner
	// Webhooks delivers the webhook jobs; nil leaves them queued.
	Webhooks *Webhooks
	// Runs counts the runs not yet ended, for the metrics (nil: not
	// counted).
	Runs wasmwiz.RunQueueService
	// Workers is how many background runs this replica runs at once; 0
	// runs none (the replica still admits runs, which others run).
	Workers int
	// WebhookWorkers is how many deliveries run at once (4).
	WebhookWorkers int
	// WebhookAttempts is how often a delivery is tried before it is given
	// up (6; River's backoff between attempts grows as attempt⁴ seconds).
	WebhookAttempts int
	// PollInterval is how often an idle replica looks for jobs: 200ms on
	// SQLite, which only polls; 1s (River's default) on PostgreSQL, where
	// an insert is also announced by NOTIFY when its transaction commits,
	// so that a replica with a free worker takes the job then and polling
	// is only the fallback (docs/PERFORMANCE.md, "The idle queue").
	PollInterval time.Duration
	// Logger gets River's and the queue's messages (slog.Default()).
	Logger *slog.Logger
}

// The default poll intervals.
const (
	pollIntervalSQLite   = 200 * time.Millisecond
	pollIntervalPostgres = river.FetchPollIntervalDefault
)

// rescueAfter is how long a job may stay running before River takes it
// for stuck (its replica died) and works it again: a webhook delivery is
// then tried again within minutes. River rescues only jobs whose timeout
// has passed too: a webhook job's (webhookJobTimeout), never a run job's
// (none). A run job worked again for another reason (a retry) finds its
// run started and leaves it (Runner.RunQueued): to its replica if that is
// alive, else to the stale-run sweeper.
const rescueAfter = 10 * time.Minute

// webhookJobTimeout bounds a webhook job: its store reads and writes and
// one delivery attempt, which its own timeout bounds (WebhookOptions,
// 10s). Far past what a job takes, and below rescueAfter, so that River
// rescues a job left running by a replica that died.
const webhookJobTimeout = rescueAfter / 2

// fetchCooldown is the shortest time between two fetches of one queue by
// one replica: an announced insert waits at most this for its fetch.
const fetchCooldown = 50 * time.Millisecond

// setDefaults fills in the zero options; poll is the store's default poll
// interval.
func (o *Options) setDefaults(poll time.Duration) {
	o.Workers = max(o.Workers, 0)
	if o.WebhookWorkers <= 0 {
		o.WebhookWorkers = 4
	}
	if o.WebhookAttempts <= 0 {
		o.WebhookAttempts = 6
	}
	if o.PollInterval <= 0 {
		o.PollInterval = poll
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// client is the part of a river.Client the queue uses, whatever its
// transaction type.
type client interface {
	insertTx(ctx context.Context, tx any, args river.JobArgs, opts *river.InsertOpts) error
	insertManyTx(ctx context.Context, tx any, params []river.InsertManyParams) error
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	StopAndCancel(ctx context.Context) error
	JobList(ctx context.Context, params *river.JobListParams) (*river.JobListResult, error)
	JobDelete(ctx context.Context, id int64) (*rivertype.JobRow, error)
}

type riverClient[TTx any] struct{ *river.Client[TTx] }

func (c riverClient[TTx]) insertTx(ctx context.Context, tx any, args river.JobArgs, opts *river.InsertOpts) error {
	t, err := storeTx[TTx](tx)
	if err != nil {
		return err
	}
	_, err = c.InsertTx(ctx, t, args, opts)
	return err
}

func (c riverClient[TTx]) insertManyTx(ctx context.Context, tx any, params []river.InsertManyParams) error {
	t, err := storeTx[TTx](tx)
	if err != nil {
		return err
	}
	_, err = c.InsertManyTx(ctx, t, params)
	return err
}

// storeTx is tx as the store's transaction type, which River's driver
// takes.
func storeTx[TTx any](tx any) (TTx, error) {
	t, ok := tx.(TTx)
	if !ok {
		return t, wasmwiz.Errorf(wasmwiz.EINTERNAL, "queue: a transaction of type %T, not the store's", tx)
	}
	return t, nil
}

// Queue is the durable queue. It implements wasmwiz.RunQueue.
type Queue struct {
	opts         Options
	client       client
	startLatency prometheus.Histogram
}

var _ wasmwiz.RunQueue = (*Queue)(nil)

// config returns River's configuration, with workers that work for q.
func (q *Queue) config() *river.Config {
	opts := &q.opts
	workers := river.NewWorkers()
	river.AddWorker(workers, &runWorker{q: q})
	river.AddWorker(workers, &webhookWorker{q: q})
	cooldown := min(fetchCooldown, opts.PollInterval)
	queues := map[string]river.QueueConfig{QueueWebhooks: {MaxWorkers: opts.WebhookWorkers, FetchCooldown: cooldown}}
	if opts.Workers > 0 {
		queues[QueueRuns] = river.QueueConfig{MaxWorkers: opts.Workers, FetchCooldown: cooldown}
	}
	return &river.Config{
		Workers: workers,
		Queues:  queues,
		// The client's cooldown is also how long River stays silent about
		// inserts into a queue after announcing one; a job inserted then,
		// and committed after the fetch the announcement caused, would
		// wait for the next poll. At River's minimum (1ms) the inserts of
		// a burst are announced too; the queues keep their own cooldown
		// between fetches (an announcement during it brings a fetch at
		// its end).
		FetchCooldown:        river.FetchCooldownMin,
		FetchPollInterval:    opts.PollInterval,
		RescueStuckJobsAfter: rescueAfter,
		JobTimeout:           -1, // each worker says its own: none for runs, webhookJobTimeout for webhooks
		Logger:               opts.Logger,
		// A job River finished is kept a day for inspection (River's
		// default), a discarded one (a webhook given up) a week.
		DiscardedJobRetentionPeriod: 7 * 24 * time.Hour,
	}
}

// OpenPostgres makes the queue on the PostgreSQL store's pool: River's
// tables live beside the store's, in the pool's search_path.
func OpenPostgres(pool *pgxpool.Pool, opts Options) (*Queue, error) {
	opts.setDefaults(pollIntervalPostgres)
	q := &Queue{opts: opts, startLatency: newStartLatency()}
	c, err := river.NewClient(riverpgxv5.New(pool), q.config())
	if err != nil {
		return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "queue: %v", err)
	}
	q.client = riverClient[pgx.Tx]{c}
	return q, nil
}

// OpenSQLite makes the queue on the SQLite store's write pool (one
// connection: River's statements queue behind the store's writes like any
// other write). It polls: SQLite has no notifications.
func OpenSQLite(db *sql.DB, opts Options) (*Queue, error) {
	opts.setDefaults(pollIntervalSQLite)
	q := &Queue{opts: opts, startLatency: newStartLatency()}
	cfg := q.config()
	cfg.PollOnly = true
	c, err := river.NewClient(riversqlite.New(db), cfg)
	if err != nil {
		return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "queue: %v", err)
	}
	q.client = riverClient[*sql.Tx]{c}
	return q, nil
}

// SetRunner sets the runner of run jobs; call it before Start.
func (q *Queue) SetRunner(r Runner) { q.opts.Runner = r }

// EnqueueRun implements wasmwiz.RunQueue: the run's rank is its job's
// priority (runPriority). River fetches a queue's jobs by priority, then
// by the time they were scheduled, on both drivers, so its workers take
// every user's first outstanding run before anyone's second, and within a
// rank the oldest first. A retried job keeps its priority (River keeps
// it, scheduling the retry after its backoff).
func (q *Queue) EnqueueRun(ctx context.Context, tx any, id string, rank int) error {
	err := q.client.insertTx(ctx, tx, RunArgs{RunID: id},
		&river.InsertOpts{Queue: QueueRuns, MaxAttempts: 5, Priority: runPriority(rank)})
	return queueError(err, "enqueue run")
}

// lastPriority is River's last job priority: it takes 1 (first) to 4.
const lastPriority = 4

// runPriority is the River priority of a run job of rank: rank 0 is
// River's first priority, rank 1 its second, and so on; the ranks from
// lastPriority-1 on share its last.
func runPriority(rank int) int { return min(max(rank, 0), lastPriority-1) + 1 }

// EnqueueWebhooks implements wasmwiz.RunQueue: the jobs of the hooks, one
// insert in the store's transaction tx.
func (q *Queue) EnqueueWebhooks(ctx context.Context, tx any, hooks []wasmwiz.Webhook) error {
	opts := &river.InsertOpts{Queue: QueueWebhooks, MaxAttempts: q.opts.WebhookAttempts}
	params := make([]river.InsertManyParams, len(hooks))
	for i, h := range hooks {
		params[i] = river.InsertManyParams{Args: WebhookArgs{RunID: h.RunID, UserID: h.UserID}, InsertOpts: opts}
	}
	return queueError(q.client.insertManyTx(ctx, tx, params), "enqueue webhooks")
}

// Start starts working jobs.
func (q *Queue) Start(ctx context.Context) error {
	return queueError(q.client.Start(ctx), "start queue")
}

// Stop stops taking jobs and waits for the running ones until ctx ends;
// then it cancels them (their runs are failed, never run again).
func (q *Queue) Stop(ctx context.Context) error {
	err := q.client.Stop(ctx)
	if err != nil && ctx.Err() != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err = q.client.StopAndCancel(cctx)
	}
	return queueError(err, "stop queue")
}

func queueError(err error, what string) error {
	if err == nil || wasmwiz.HasCode(err) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, err, "%s: %v", what, err)
	}
	return wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, err, "%s: the queue is unavailable: %v", what, err)
}

// MigratePostgres applies River's migrations on the pool's schema, each in
// a transaction of its own (one of them adds an enum value that a later
// statement uses, which PostgreSQL allows only after a commit), under a
// session advisory lock held on one connection, so that replicas starting
// together migrate once.
func MigratePostgres(ctx context.Context, pool *pgxpool.Pool) error {
	m, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		return wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "queue migrations: %v", err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return migrateError(err)
	}
	defer conn.Release()
	const key = `hashtext('wasmwiz.river.' || current_schema())`
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(`+key+`)`); err != nil {
		return migrateError(err)
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(`+key+`)`) }()
	_, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	return migrateError(err)
}

// MigrateSQLite applies River's migrations, each in a write transaction
// of its own (SQLite's write lock serialises them with every other
// writer).
func MigrateSQLite(ctx context.Context, db *sql.DB) error {
	m, err := rivermigrate.New(riversqlite.New(db), nil)
	if err != nil {
		return wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "queue migrations: %v", err)
	}
	_, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	return migrateError(err)
}

func migrateError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, err, "queue migrations: %v", err)
	}
	return wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "queue migrations failed: %v", err)
}

// runWorker works run jobs.
type runWorker struct {
	river.WorkerDefaults[RunArgs]
	q *Queue
}

// Timeout implements river.Worker: a run's own limits bound it. River
// never rescues a job without a timeout: a run job left running by a
// replica that died stays so, its run failed by the stale-run sweeper.
func (w *runWorker) Timeout(*river.Job[RunArgs]) time.Duration { return -1 }

// Work implements river.Worker.
func (w *runWorker) Work(ctx context.Context, job *river.Job[RunArgs]) error {
	if w.q.opts.Runner == nil {
		return river.JobSnooze(time.Second)
	}
	if job.Attempt == 1 {
		w.q.startLatency.Observe(time.Since(job.CreatedAt).Seconds())
	}
	err := w.q.opts.Runner.RunQueued(ctx, job.Args.RunID)
	if err != nil && job.Attempt >= job.MaxAttempts {
		if aerr := w.q.opts.Runner.AbandonQueued(ctx, job.Args.RunID, err); aerr != nil {
			return errors.Join(err, aerr)
		}
		return nil // the run is failed: nothing left to try
	}
	return err
}

// webhookWorker works webhook jobs.
type webhookWorker struct {
	river.WorkerDefaults[WebhookArgs]
	q *Queue
}

// Timeout implements river.Worker (webhookJobTimeout): with a timeout,
// River rescues a delivery left running by a replica that died.
func (w *webhookWorker) Timeout(*river.Job[WebhookArgs]) time.Duration { return webhookJobTimeout }

// Work implements river.Worker: one delivery attempt; an error makes River
// try again later, until the job's attempts are spent. While another
// delivery of the same user is in flight on this replica, the job is
// snoozed until its turn instead (Webhooks.begin), which spends no attempt.
func (w *webhookWorker) Work(ctx context.Context, job *river.Job[WebhookArgs]) error {
	hooks := w.q.opts.Webhooks
	if hooks == nil {
		return river.JobSnooze(time.Minute)
	}
	wait, ok := hooks.begin(job.Args.UserID, job.ID)
	if !ok {
		return river.JobSnooze(wait)
	}
	defer hooks.end(job.Args.UserID)
	return hooks.Deliver(ctx, job.Args.RunID, job.Attempt, job.Attempt >= job.MaxAttempts)
}
