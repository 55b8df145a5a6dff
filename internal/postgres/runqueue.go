// Alike on purpose: internal/sqlite/runqueue.go is this file for SQLite (one schema
// and contract, another driver and SQL dialect); a change here belongs there too.

package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/wasmwiz/wasmwiz"
)

var _ wasmwiz.RunQueueService = (*DB)(nil)

// QueueRun stores r as queued with its input and calls enqueue with the
// pgx.Tx and the run's rank (the caller's active runs counted before the
// insert) before committing. A transaction-scoped advisory lock per user
// makes the count of the caller's active runs and the insert one step, so
// two admissions at once cannot both take the last place, nor one rank.
func (db *DB) QueueRun(ctx context.Context, r *wasmwiz.UsageRecord, in *wasmwiz.RunInput, maxActive int,
	enqueue func(ctx context.Context, tx any, rank int) error) error {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return err
	}
	if r == nil || r.ID == "" || in == nil {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "a queued run needs an id and an input")
	}
	r.UserID, r.State = caller.ID, wasmwiz.RunQueued
	if r.CreatedAt.IsZero() {
		r.CreatedAt = db.now()
	}
	env, err := json.Marshal(in.Env)
	if err != nil {
		return wasmwiz.WrapError(wasmwiz.EINVALID, err, "env")
	}
	files, err := wasmwiz.EncodeRunFiles(in.Files) // nil: SQL NULL, no files
	if err != nil {
		return wasmwiz.WrapError(wasmwiz.EINVALID, err, "files")
	}
	call, err := in.EncodeCall() // nil: SQL NULL, no args or params
	if err != nil {
		return wasmwiz.WrapError(wasmwiz.EINVALID, err, "args")
	}
	row, err := runRow(r)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('wasmwiz.queue.' || current_schema()), $1::int)`,
			int32(caller.ID)); err != nil {
			return err
		}
		var active int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM runs WHERE state IN ('queued', 'running') AND user_id = $1`,
			caller.ID).Scan(&active); err != nil {
			return err
		}
		if active >= maxActive {
			return wasmwiz.RetryLater(wasmwiz.ERATELIMIT, time.Second, "too many runs queued or running: your tier allows %d at a time", maxActive)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO runs (`+runColumns+runOutputColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)`, row...); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO run_inputs (run_id, wasm, stdin, env, files, call_args) VALUES ($1, $2, $3, $4, $5, $6)`,
			r.ID, nonNil(in.Wasm), nonNil(in.Stdin), string(env), files, call); err != nil {
			return err
		}
		return enqueue(ctx, tx, active)
	})
	return dbError(err, "queue run")
}

// StartRun moves a queued run to running and returns it with its input.
func (db *DB) StartRun(ctx context.Context, id string) (*wasmwiz.UsageRecord, *wasmwiz.RunInput, error) {
	var r *wasmwiz.UsageRecord
	var in *wasmwiz.RunInput
	now := db.now()
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var err error
		r, err = scanRun(tx.QueryRow(ctx, `SELECT `+runColumns+runLiveOutputColumns+` FROM runs WHERE id = $1 FOR UPDATE`, id), true)
		if errors.Is(err, pgx.ErrNoRows) {
			return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "run %q not found", id)
		}
		if err != nil {
			return err
		}
		if r.State != wasmwiz.RunQueued {
			return wasmwiz.Errorf(wasmwiz.ECONFLICT, "run %s is %s, not queued", id, r.State)
		}
		in = &wasmwiz.RunInput{}
		var env string
		var files []byte
		var call []byte
		if err := tx.QueryRow(ctx, `SELECT wasm, stdin, env, files, call_args FROM run_inputs WHERE run_id = $1`, id).
			Scan(&in.Wasm, &in.Stdin, &env, &files, &call); err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(env), &in.Env); err != nil {
			return err
		}
		if in.Files, err = wasmwiz.DecodeRunFiles(files); err != nil {
			return err
		}
		if err := in.DecodeCall(call); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE runs SET state = 'running', started_at = $1, heartbeat_at = $1 WHERE id = $2`, now, id)
		r.State, r.StartedAt = wasmwiz.RunRunning, &now
		return err
	})
	if err != nil && wasmwiz.ErrorCode(err) == wasmwiz.ECONFLICT {
		return r, nil, err
	}
	if err != nil {
		return nil, nil, dbError(err, "start run")
	}
	return r, in, nil
}

// HeartbeatRun notes the replica running id is alive and appends the
// output its run added: one statement when it added none.
func (db *DB) HeartbeatRun(ctx context.Context, id string, stdout, stderr wasmwiz.OutputTail) (bool, error) {
	var cancel bool
	var limit *int64 // the run's tier's max_stored_output_bytes
	var user int64   // the run's user, whose stored output its pieces count to
	heartbeat := func(q querier) error {
		return q.QueryRow(ctx, `UPDATE runs SET heartbeat_at = $1 WHERE id = $2 AND state = 'running'
			RETURNING cancel_requested, (SELECT max_stored_output_bytes FROM tiers WHERE name = runs.tier), user_id`,
			db.now(), id).Scan(&cancel, &limit, &user)
	}
	var err error
	if len(stdout.Data) == 0 && len(stderr.Data) == 0 {
		err = heartbeat(db.pool)
	} else {
		err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
			if err := heartbeat(tx); err != nil {
				return err
			}
			keep := int64(-1) // a tier gone since: no cap but the executor's
			if limit != nil {
				keep = *limit
			}
			return appendOutput(ctx, tx, id, user, [2]wasmwiz.OutputTail{stdout, stderr}, keep)
		})
	}
	if errors.Is(err, pgx.ErrNoRows) {
		// Not running any more (failed by the sweeper, or cancelled): stop.
		return true, nil
	}
	return cancel, dbError(err, "heartbeat run")
}

// FinishRun writes the final record of a queued or running run, with its
// webhook's job.
func (db *DB) FinishRun(ctx context.Context, r *wasmwiz.UsageRecord, webhooks wasmwiz.EnqueueWebhooks) (bool, error) {
	if !r.State.Final() {
		return false, wasmwiz.Errorf(wasmwiz.EINVALID, "FinishRun needs a final state, not %q", r.State)
	}
	var buf [512]byte // on the stack: most details fit
	detail, err := r.RunDetail.AppendJSON(buf[:0])
	if err != nil {
		return false, wasmwiz.WrapError(wasmwiz.EINVALID, err, "run %s: detail", r.ID)
	}
	if r.FinishedAt == nil {
		now := db.now()
		r.FinishedAt = &now
	}
	files, err := wasmwiz.EncodeOutputFiles(r.Files) // nil: SQL NULL, no files
	if err != nil {
		return false, wasmwiz.WrapError(wasmwiz.EINVALID, err, "run %s: files", r.ID)
	}
	var done bool
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var user int64
		err := tx.QueryRow(ctx, `UPDATE runs SET state = $1, status = $2, exit_code = $3, duration_ms = $4,
				memory_peak_bytes = $5, output_bytes = $6, error_code = $7,
				module_sha256 = CASE WHEN $8 = '' THEN module_sha256 ELSE $8 END,
				started_at = coalesce(started_at, $9), finished_at = $10, detail = $11, stdout = $12, stderr = $13,
				compile_ms = $15, files = $16
			WHERE id = $14 AND state IN ('queued', 'running') RETURNING user_id`,
			string(r.State), string(r.Status), int32(r.ExitCode), r.DurationMS, r.MemoryPeakBytes, r.OutputBytes, r.ErrorCode,
			r.ModuleSHA256, r.StartedAt, r.FinishedAt, string(detail), nonNil(r.Stdout), nonNil(r.Stderr), r.ID, r.CompileMS, files).Scan(&user)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // already final
		}
		if err != nil {
			return err
		}
		done = true
		if r.Status != "" && r.ModuleID != "" {
			if _, err := tx.Exec(ctx, `UPDATE modules SET run_count = run_count + 1,
				last_run_at = GREATEST(last_run_at, $1) WHERE id = $2`, r.CreatedAt, r.ModuleID); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM run_output_chunks WHERE run_id = $1`, r.ID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM run_inputs WHERE run_id = $1`, r.ID); err != nil {
			return err
		}
		if r.CallbackURL == "" { // the detail just written: the row's callback URL
			return nil
		}
		return webhooks.Enqueue(ctx, tx, wasmwiz.Webhook{RunID: r.ID, UserID: user})
	})
	if err != nil {
		done = false // rolled back
	}
	return done, dbError(err, "finish run")
}

// CancelRun cancels a queued run of the caller at once, with its webhook's
// job, and marks a running one for its replica to stop.
func (db *DB) CancelRun(ctx context.Context, id string, webhooks wasmwiz.EnqueueWebhooks) (*wasmwiz.UsageRecord, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var state, callback string
		var user int64
		err := tx.QueryRow(ctx, `SELECT state, user_id, coalesce(`+detailJSONB+`->>'callback_url', '')
			FROM runs WHERE id = $1 AND ($2 OR user_id = $3) FOR UPDATE`,
			id, caller.IsAdmin(), caller.ID).Scan(&state, &user, &callback)
		if errors.Is(err, pgx.ErrNoRows) {
			return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "run not found")
		}
		if err != nil {
			return err
		}
		switch wasmwiz.RunState(state) {
		case wasmwiz.RunQueued:
			if _, err := tx.Exec(ctx, `UPDATE runs SET state = 'cancelled', cancel_requested = true, finished_at = $1,
				detail = jsonb_set(`+detailJSONB+`, '{message}', to_jsonb('cancelled before it started'::text))::text
				WHERE id = $2`, db.now(), id); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM run_inputs WHERE run_id = $1`, id); err != nil {
				return err
			}
			if callback == "" {
				return nil
			}
			return webhooks.Enqueue(ctx, tx, wasmwiz.Webhook{RunID: id, UserID: user})
		case wasmwiz.RunRunning:
			_, err = tx.Exec(ctx, `UPDATE runs SET cancel_requested = true WHERE id = $1`, id)
			return err
		}
		return wasmwiz.Errorf(wasmwiz.ECONFLICT, "run %s is already %s", id, state)
	})
	if err != nil {
		return nil, dbError(err, "cancel run")
	}
	return db.FindRunByID(ctx, id)
}

// detailJSONB is a run's detail as jsonb, which refuses the escape of a NUL
// character: one in a string of a detail (which the executor refuses in
// what it stores, but a row written before may hold) reads as U+FFFD, so
// that one run's detail cannot fail a statement over many runs (the stale
// run sweep) or its own cancel.
const detailJSONB = `replace(detail, '\u0000', '\ufffd')::jsonb`

// FailStaleRuns fails at most limit running runs without a heartbeat since
// before, skipping those another replica's sweep holds; their output moves
// into their rows (the statement's snapshot reads the pieces its CTE
// deletes). Their webhooks' jobs are inserted in the same transaction.
func (db *DB) FailStaleRuns(ctx context.Context, before time.Time, message string, limit int, webhooks wasmwiz.EnqueueWebhooks) ([]wasmwiz.StaleRun, error) {
	if limit < 1 {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "limit must be at least 1")
	}
	var stale []wasmwiz.StaleRun
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `WITH failed AS (
			UPDATE runs SET state = 'failed', finished_at = $1,
				detail = jsonb_set(`+detailJSONB+`, '{message}', to_jsonb($2::text))::text,
				stdout = `+keptStdout+`, stderr = `+keptStderr+`
			WHERE id IN (SELECT id FROM runs WHERE state = 'running' AND coalesce(heartbeat_at, 'epoch') < $3
				LIMIT $4 FOR UPDATE SKIP LOCKED)
			RETURNING id, user_id, coalesce(`+detailJSONB+`->>'callback_url', '') AS callback_url),
		inputs AS (DELETE FROM run_inputs WHERE run_id IN (SELECT id FROM failed)),
		chunks AS (DELETE FROM run_output_chunks WHERE run_id IN (SELECT id FROM failed))
		SELECT id, user_id, callback_url FROM failed`, db.now(), message, before.UTC(), limit)
		if err != nil {
			return err
		}
		stale, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (r wasmwiz.StaleRun, err error) {
			err = row.Scan(&r.ID, &r.UserID, &r.CallbackURL)
			return r, err
		})
		if err != nil {
			return err
		}
		return webhooks.Enqueue(ctx, tx, wasmwiz.WebhooksOf(stale)...)
	})
	if err != nil {
		return nil, dbError(err, "fail stale runs") // rolled back: none failed
	}
	return stale, nil
}

// CountRuns counts queued and running runs and the oldest of each.
func (db *DB) CountRuns(ctx context.Context) (map[wasmwiz.RunState]int64, map[wasmwiz.RunState]time.Time, error) {
	rows, err := db.pool.Query(ctx, `SELECT state, count(*), min(created_at) FROM runs
		WHERE state IN ('queued', 'running') GROUP BY state`)
	if err != nil {
		return nil, nil, dbError(err, "count runs")
	}
	defer rows.Close()
	counts, oldest := map[wasmwiz.RunState]int64{}, map[wasmwiz.RunState]time.Time{}
	for rows.Next() {
		var s string
		var n int64
		var first time.Time
		if err := rows.Scan(&s, &n, &first); err != nil {
			return nil, nil, dbError(err, "count runs")
		}
		counts[wasmwiz.RunState(s)], oldest[wasmwiz.RunState(s)] = n, first.UTC()
	}
	return counts, oldest, dbError(rows.Err(), "count runs")
}

// AddWebhookDelivery records one delivery attempt; ENOTFOUND when its run
// is gone. The foreign key to runs (migration 0020) decides, also against
// a deletion of the run in flight: the insert waits for it, then fails.
func (db *DB) AddWebhookDelivery(ctx context.Context, d *wasmwiz.WebhookDelivery) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO webhook_deliveries (run_id, attempt, at, status_code, error, duration_ms)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (run_id, attempt) DO NOTHING`,
		d.RunID, d.Attempt, d.At.UTC(), d.StatusCode, d.Error, d.DurationMS)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == pgForeignKeyViolation {
		return wasmwiz.WrapError(wasmwiz.ENOTFOUND, err, "run not found")
	}
	return dbError(err, "add webhook delivery")
}

func (db *DB) webhookDeliveries(ctx context.Context, runID string) ([]wasmwiz.WebhookDelivery, error) {
	rows, err := db.pool.Query(ctx, `SELECT attempt, at, status_code, error, duration_ms
		FROM webhook_deliveries WHERE run_id = $1 ORDER BY attempt`, runID)
	if err != nil {
		return nil, dbError(err, "webhook deliveries")
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (wasmwiz.WebhookDelivery, error) {
		d := wasmwiz.WebhookDelivery{RunID: runID}
		err := row.Scan(&d.Attempt, &d.At, &d.StatusCode, &d.Error, &d.DurationMS)
		d.At = d.At.UTC()
		return d, err
	})
	if len(out) == 0 {
		out = nil
	}
	return out, dbError(err, "webhook deliveries")
}

// RotateWebhookSecret makes a new webhook secret for the caller.
func (db *DB) RotateWebhookSecret(ctx context.Context) (string, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return "", err
	}
	secret := wasmwiz.NewWebhookSecret()
	_, err = db.pool.Exec(ctx, `INSERT INTO webhook_secrets (user_id, secret, created_at) VALUES ($1, $2, $3)
		ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at`,
		caller.ID, secret, db.now())
	if err != nil {
		return "", dbError(err, "rotate webhook secret")
	}
	return secret, nil
}

// WebhookSecret returns a user's webhook secret.
func (db *DB) WebhookSecret(ctx context.Context, userID int64) (string, error) {
	var s string
	err := db.pool.QueryRow(ctx, `SELECT secret FROM webhook_secrets WHERE user_id = $1`, userID).Scan(&s)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", wasmwiz.Errorf(wasmwiz.ENOTFOUND, "no webhook secret")
	}
	return s, dbError(err, "webhook secret")
}
