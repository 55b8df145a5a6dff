package queue_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/postgres/pgtest"
	"github.com/wasmwiz/wasmwiz/internal/queue"
	"github.com/wasmwiz/wasmwiz/internal/sqlite"
	"github.com/wasmwiz/wasmwiz/internal/sqlite/sqlitetest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// store is a migrated store, River's tables included, with the queue
// opened on it the way cmd/wasmwiz opens it.
type store struct {
	wasmwiz.RunStore
	users wasmwiz.UserService
	// open makes a queue on the store (not started).
	open func(opts queue.Options) (*queue.Queue, error)
	// listJobs lists River's jobs of kind, oldest first.
	listJobs func(ctx context.Context, kind string) ([]job, error)
	// inTx calls fn with a transaction of the store's own type, which it
	// commits unless fn fails.
	inTx func(ctx context.Context, fn func(tx any) error) error
	// foreignTx is a transaction of the other store's type.
	foreignTx any
}

// job is a row of River's jobs.
type job struct {
	State       string
	Args        []byte
	MaxAttempts int
	Priority    int
}

// storeKind names a store and opens a fresh one of its kind.
type storeKind struct {
	name string
	open func(t *testing.T) *store
}

// stores are the two stores the queue runs on.
var stores = []storeKind{{"SQLite", openSQLite}, {"PostgreSQL", openPostgres}}

// forEachStore runs f as a subtest for each store, in parallel.
func forEachStore(t *testing.T, f func(t *testing.T, s *store)) {
	t.Helper()
	for _, k := range stores {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			f(t, k.open(t))
		})
	}
}

// openSQLite returns a migrated SQLite store in a temporary directory.
func openSQLite(t *testing.T) *store {
	t.Helper()
	ctx := context.Background()
	db := sqlitetest.Open(t)
	// Unbounded by the store's call timeout, as serve migrates: a loaded
	// machine (the race detector, the suite around) took River's migration
	// 007 past it.
	if err := queue.MigrateSQLite(sqlite.WithoutCallTimeout(ctx), db.QueueDB()); err != nil {
		t.Fatal(err)
	}
	return &store{
		RunStore: db, users: db,
		open: func(opts queue.Options) (*queue.Queue, error) { return queue.OpenSQLite(db.QueueDB(), opts) },
		listJobs: func(ctx context.Context, kind string) ([]job, error) {
			rows, err := db.QueueDB().QueryContext(ctx, `SELECT state, json(args), max_attempts, priority FROM river_job WHERE kind = ? ORDER BY id`, kind)
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			var jobs []job
			for rows.Next() {
				var j job
				if err := rows.Scan(&j.State, &j.Args, &j.MaxAttempts, &j.Priority); err != nil {
					return nil, err
				}
				jobs = append(jobs, j)
			}
			return jobs, rows.Err()
		},
		inTx: func(ctx context.Context, fn func(tx any) error) error {
			tx, err := db.QueueDB().BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			if err := fn(tx); err != nil {
				_ = tx.Rollback()
				return err
			}
			return tx.Commit()
		},
		foreignTx: (*pgxpool.Tx)(nil),
	}
}

// openPostgres returns a migrated PostgreSQL store in a schema of its own
// (WASMWIZ_TEST_POSTGRES_URL; skipped without it).
func openPostgres(t *testing.T) *store {
	t.Helper()
	db := pgtest.Open(t)
	if err := queue.MigratePostgres(context.Background(), db.Pool()); err != nil {
		t.Fatal(err)
	}
	return &store{
		RunStore: db, users: db,
		open: func(opts queue.Options) (*queue.Queue, error) { return queue.OpenPostgres(db.Pool(), opts) },
		listJobs: func(ctx context.Context, kind string) ([]job, error) {
			rows, _ := db.Pool().Query(ctx, `SELECT state::text, args, max_attempts, priority::int FROM river_job WHERE kind = $1 ORDER BY id`, kind)
			return pgx.CollectRows(rows, pgx.RowToStructByPos[job])
		},
		inTx: func(ctx context.Context, fn func(tx any) error) error {
			return pgx.BeginFunc(ctx, db.Pool(), func(tx pgx.Tx) error { return fn(tx) })
		},
		foreignTx: (*sql.Tx)(nil),
	}
}

// user creates a user and returns the context of a call it makes.
func (s *store) user(t *testing.T, email string) (*wasmwiz.User, context.Context) {
	t.Helper()
	u := &wasmwiz.User{Email: email, Tier: wasmwiz.TierFree}
	if err := s.users.CreateUser(wasmwiz.SystemContext(context.Background()), u); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	// Bounded, so that a call that would wait for ever (a write waiting
	// for SQLite's one write connection, held by its own transaction)
	// fails the test instead.
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Patience)
	t.Cleanup(cancel)
	return u, wasmwiz.NewContextWithUser(ctx, u)
}

// enqueueRun is what inserts a run's job in the store's transaction: a
// queue's EnqueueRun, or a test's.
type enqueueRun func(ctx context.Context, tx any, id string, rank int) error

// queueRun stores a queued run of the caller in ctx, with callback as its
// webhook, calling enqueue in the store's transaction with the rank the
// store gives it, and returns the run and QueueRun's error.
func (s *store) queueRun(ctx context.Context, callback string, enqueue enqueueRun) (*wasmwiz.UsageRecord, error) {
	now := time.Now()
	r := &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(now), Tier: wasmwiz.TierFree, CreatedAt: now,
		RunDetail: wasmwiz.RunDetail{Async: true, Args: []string{"hello"}, CallbackURL: callback}}
	in := &wasmwiz.RunInput{Wasm: []byte("\x00asm"), Stdin: []byte("in")}
	err := s.QueueRun(ctx, r, in, 100, func(ctx context.Context, tx any, rank int) error { return enqueue(ctx, tx, r.ID, rank) })
	return r, err
}

// mustQueueRun is queueRun that fails t on an error.
func (s *store) mustQueueRun(t *testing.T, ctx context.Context, callback string, enqueue enqueueRun) *wasmwiz.UsageRecord {
	t.Helper()
	r, err := s.queueRun(ctx, callback, enqueue)
	if err != nil {
		t.Fatalf("QueueRun: %v", err)
	}
	return r
}

// noJob stores a run without a job.
func noJob(context.Context, any, string, int) error { return nil }

// newQueue opens a queue on the store, not started.
func (s *store) newQueue(t *testing.T, opts queue.Options) *queue.Queue {
	t.Helper()
	q, err := s.open(opts)
	if err != nil {
		t.Fatalf("opening the queue: %v", err)
	}
	return q
}

// startQueue opens a queue on the store and starts it; it is stopped when
// the test ends.
func (s *store) startQueue(t *testing.T, opts queue.Options) *queue.Queue {
	t.Helper()
	q := s.newQueue(t, opts)
	start(t, q)
	return q
}

// start starts q; it is stopped when the test ends.
func start(t *testing.T, q *queue.Queue) {
	t.Helper()
	if err := q.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testenv.Patience)
		defer cancel()
		if err := q.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
}

// runner is a Runner that hands each run it is given to the test and then
// waits for release (nil: returns at once) or its context to end.
type runner struct {
	started chan string
	release *testenv.Gate
	ended   chan runEnd
}

// runEnd is how a run the runner was given ended.
type runEnd struct {
	id  string
	err error // the context's error when it was cancelled
}

func newRunner(release *testenv.Gate) *runner {
	return &runner{started: make(chan string, 16), release: release, ended: make(chan runEnd, 16)}
}

// RunQueued implements queue.Runner.
func (r *runner) RunQueued(ctx context.Context, id string) error {
	r.started <- id
	var err error
	if r.release != nil {
		err = r.release.Wait(ctx)
	}
	r.ended <- runEnd{id: id, err: err}
	return err
}

// AbandonQueued implements queue.Runner: the runs given up are not this
// runner's to end.
func (r *runner) AbandonQueued(ctx context.Context, id string, cause error) error { return nil }

// states returns the states of River's jobs of kind, oldest first.
func (s *store) states(t *testing.T, kind string) []string {
	t.Helper()
	var states []string
	for _, j := range s.jobs(t, kind) {
		states = append(states, j.State)
	}
	return states
}

// jobs returns River's jobs of kind, oldest first.
func (s *store) jobs(t *testing.T, kind string) []job {
	t.Helper()
	jobs, err := s.listJobs(context.Background(), kind)
	if err != nil {
		t.Fatalf("reading River's jobs: %v", err)
	}
	return jobs
}

// webhookJobs returns the runs and owners of River's webhook jobs, oldest
// first, and fails t unless each has maxAttempts.
func (s *store) webhookJobs(t *testing.T, maxAttempts int) []wasmwiz.Webhook {
	t.Helper()
	var hooks []wasmwiz.Webhook
	for _, j := range s.jobs(t, webhookKind) {
		var args queue.WebhookArgs
		if err := json.Unmarshal(j.Args, &args); err != nil {
			t.Fatalf("a webhook job's args %s: %v", j.Args, err)
		}
		if j.MaxAttempts != maxAttempts {
			t.Fatalf("the webhook job of run %s has %d attempts, want %d", args.RunID, j.MaxAttempts, maxAttempts)
		}
		hooks = append(hooks, wasmwiz.Webhook{RunID: args.RunID, UserID: args.UserID})
	}
	return hooks
}

// enqueueWebhook inserts run's webhook job with q in a transaction of the
// store's own.
func (s *store) enqueueWebhook(t *testing.T, q *queue.Queue, run *wasmwiz.UsageRecord) {
	t.Helper()
	err := s.inTx(context.Background(), func(tx any) error {
		return q.EnqueueWebhooks(context.Background(), tx, []wasmwiz.Webhook{{RunID: run.ID, UserID: run.UserID}})
	})
	if err != nil {
		t.Fatalf("EnqueueWebhooks: %v", err)
	}
}

// takenLongAgo marks River's jobs of kind as taken an hour ago by a
// replica that never finished them (it died).
func (s *store) takenLongAgo(t *testing.T, kind string) {
	t.Helper()
	ctx := context.Background()
	err := s.inTx(ctx, func(tx any) error {
		var err error
		switch tx := tx.(type) {
		case pgx.Tx:
			_, err = tx.Exec(ctx, `UPDATE river_job SET state = 'running', attempt = attempt + 1,
				attempted_at = now() - interval '1 hour' WHERE kind = $1`, kind)
		case *sql.Tx:
			_, err = tx.ExecContext(ctx, `UPDATE river_job SET state = 'running', attempt = attempt + 1,
				attempted_at = datetime('now', '-1 hour', 'subsec') WHERE kind = ?`, kind)
		default:
			err = fmt.Errorf("a transaction of type %T", tx)
		}
		return err
	})
	if err != nil {
		t.Fatalf("marking the %s jobs taken long ago: %v", kind, err)
	}
}

// logWatch is a slog.Handler that closes seen at the first message
// containing substr.
type logWatch struct {
	substr string
	seen   chan struct{}
	once   *sync.Once
}

func newLogWatch(substr string) *logWatch {
	return &logWatch{substr: substr, seen: make(chan struct{}), once: new(sync.Once)}
}

func (h *logWatch) Enabled(context.Context, slog.Level) bool { return true }

func (h *logWatch) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.substr) {
		h.once.Do(func() { close(h.seen) })
	}
	return nil
}

func (h *logWatch) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logWatch) WithGroup(string) slog.Handler      { return h }

// wantCode fails t unless err carries code.
func wantCode(t *testing.T, err error, code, what string) {
	t.Helper()
	if got := wasmwiz.ErrorCode(err); got != code {
		t.Fatalf("%s: error %v (code %q), want code %s", what, err, got, code)
	}
}

// contains reports whether s contains every one of subs.
func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
