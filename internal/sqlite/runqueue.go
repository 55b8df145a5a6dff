// Alike on purpose: internal/postgres/runqueue.go is this file for PostgreSQL (one schema
// and contract, another driver and SQL dialect); a change here belongs there too.

package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"modernc.org/sqlite"

	"github.com/wasmwiz/wasmwiz"
)

var _ wasmwiz.RunQueueService = (*DB)(nil)

// QueueDB returns the write pool, for the queue (River's SQLite driver),
// whose jobs must be inserted in the store's transactions and which must
// queue behind this process's one writer like every other write. Its
// statements and transactions have the call timeout too (deadline.go);
// its waits for the connection end with River's own contexts.
func (db *DB) QueueDB() *sql.DB { return db.writer.db }

// QueueRun stores r as queued with its input and calls enqueue with the
// *sql.Tx and the run's rank (the caller's active runs counted before the
// insert) before committing. The caller's active runs are counted in the
// same write transaction, which SQLite serialises, so two admissions at once
// cannot both take the last place, nor one rank.
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
		r.CreatedAt = db.Now()
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
	return db.write(ctx, "queue run", func(tx *sql.Tx) error {
		var active int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM runs
			WHERE state IN ('queued', 'running') AND user_id = ?`, caller.ID).Scan(&active); err != nil {
			return err
		}
		if active >= maxActive {
			return wasmwiz.RetryLater(wasmwiz.ERATELIMIT, time.Second, "too many runs queued or running: your tier allows %d at a time", maxActive)
		}
		vals, err := runValues(r, r.CreatedAt)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO runs (`+runColumns+runOutputColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, vals...); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO run_inputs (run_id, wasm, stdin, env, files, call_args) VALUES (?, ?, ?, ?, ?, ?)`,
			r.ID, nonNil(in.Wasm), nonNil(in.Stdin), string(env), files, call); err != nil {
			return err
		}
		return enqueue(ctx, tx, active)
	})
}

// StartRun moves a queued run to running and returns it with its input.
func (db *DB) StartRun(ctx context.Context, id string) (*wasmwiz.UsageRecord, *wasmwiz.RunInput, error) {
	var r *wasmwiz.UsageRecord
	var in *wasmwiz.RunInput
	now := db.Now()
	err := db.write(ctx, "start run", func(tx *sql.Tx) error {
		var err error
		r, err = scanRun(tx.QueryRowContext(ctx, `SELECT `+runColumns+runOutputColumns+` FROM runs WHERE id = ?`, id), true)
		if errors.Is(err, sql.ErrNoRows) {
			return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "run %q not found", id)
		}
		if err != nil {
			return err
		}
		if r.State != wasmwiz.RunQueued {
			if err := withAppendedOutput(ctx, tx, r); err != nil {
				return err
			}
			return wasmwiz.Errorf(wasmwiz.ECONFLICT, "run %s is %s, not queued", id, r.State)
		}
		in = &wasmwiz.RunInput{}
		var env string
		var files []byte
		var call []byte
		if err := tx.QueryRowContext(ctx, `SELECT wasm, stdin, env, files, call_args FROM run_inputs WHERE run_id = ?`, id).
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
		_, err = tx.ExecContext(ctx, `UPDATE runs SET state = 'running', started_at = ?, heartbeat_at = ? WHERE id = ?`,
			ms(now), ms(now), id)
		r.State, r.StartedAt = wasmwiz.RunRunning, &now
		return err
	})
	if err != nil && wasmwiz.ErrorCode(err) == wasmwiz.ECONFLICT {
		return r, nil, err
	}
	if err != nil {
		return nil, nil, err
	}
	return r, in, nil
}

// HeartbeatRun notes the replica running id is alive and appends the
// output its run added.
func (db *DB) HeartbeatRun(ctx context.Context, id string, stdout, stderr wasmwiz.OutputTail) (bool, error) {
	var cancel bool
	err := db.write(ctx, "heartbeat run", func(tx *sql.Tx) error {
		var c int
		var state string
		var limit sql.NullInt64
		var user int64 // the run's user, whose stored output its pieces count to
		err := tx.QueryRowContext(ctx, `SELECT r.cancel_requested, r.state, t.max_stored_output_bytes, r.user_id
			FROM runs r LEFT JOIN tiers t ON t.name = r.tier WHERE r.id = ?`, id).Scan(&c, &state, &limit, &user)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && state != string(wasmwiz.RunRunning)) {
			// Not running any more (failed by the sweeper, or cancelled): stop.
			cancel = true
			return nil
		}
		if err != nil {
			return err
		}
		cancel = c != 0
		if _, err := tx.ExecContext(ctx, `UPDATE runs SET heartbeat_at = ? WHERE id = ?`, ms(db.Now()), id); err != nil {
			return err
		}
		keep := int64(-1) // a tier gone since: no cap but the executor's
		if limit.Valid {
			keep = limit.Int64
		}
		return appendOutput(ctx, tx, id, user, [2]wasmwiz.OutputTail{stdout, stderr}, keep)
	})
	return cancel, err
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
		now := db.Now()
		r.FinishedAt = &now
	}
	files, err := wasmwiz.EncodeOutputFiles(r.Files) // nil: SQL NULL, no files
	if err != nil {
		return false, wasmwiz.WrapError(wasmwiz.EINVALID, err, "run %s: files", r.ID)
	}
	var done bool
	err = db.write(ctx, "finish run", func(tx *sql.Tx) error {
		var user int64
		err := tx.QueryRowContext(ctx, `UPDATE runs SET state = ?, status = ?, exit_code = ?, duration_ms = ?, compile_ms = ?,
				memory_peak_bytes = ?, output_bytes = ?, error_code = ?, module_sha256 = CASE WHEN ? = '' THEN module_sha256 ELSE ? END,
				started_at = coalesce(started_at, ?), finished_at = ?, detail = ?, stdout = ?, stderr = ?, files = ?
			WHERE id = ? AND state IN ('queued', 'running') RETURNING user_id`,
			string(r.State), string(r.Status), r.ExitCode, r.DurationMS, r.CompileMS, r.MemoryPeakBytes, r.OutputBytes, r.ErrorCode,
			r.ModuleSHA256, r.ModuleSHA256, msPtr(r.StartedAt), msPtr(r.FinishedAt), string(detail),
			nonNil(r.Stdout), nonNil(r.Stderr), files, r.ID).Scan(&user)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // already final
		}
		if err != nil {
			return err
		}
		done = true
		if r.Status != "" && r.ModuleID != "" {
			if _, err := tx.ExecContext(ctx, `UPDATE modules SET run_count = run_count + 1,
				last_run_at = max(coalesce(last_run_at, 0), ?) WHERE id = ?`, ms(r.CreatedAt), r.ModuleID); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM run_output_chunks WHERE run_id = ?`, r.ID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM run_inputs WHERE run_id = ?`, r.ID); err != nil {
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
	return done, err
}

// CancelRun cancels a queued run of the caller at once, with its webhook's
// job, and marks a running one for its replica to stop.
func (db *DB) CancelRun(ctx context.Context, id string, webhooks wasmwiz.EnqueueWebhooks) (*wasmwiz.UsageRecord, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	now := db.Now()
	err = db.write(ctx, "cancel run", func(tx *sql.Tx) error {
		var state, callback string
		var user int64
		err := tx.QueryRowContext(ctx, `SELECT state, user_id, coalesce(json_extract(detail, '$.callback_url'), '')
			FROM runs WHERE id = ? AND (user_id = ? OR ?)`,
			id, caller.ID, caller.IsAdmin()).Scan(&state, &user, &callback)
		if errors.Is(err, sql.ErrNoRows) {
			return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "run %q not found", id)
		}
		if err != nil {
			return err
		}
		switch wasmwiz.RunState(state) {
		case wasmwiz.RunQueued:
			if _, err := tx.ExecContext(ctx, `UPDATE runs SET state = 'cancelled', cancel_requested = 1, finished_at = ?,
				detail = json_set(detail, '$.message', 'cancelled before it started') WHERE id = ?`, ms(now), id); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM run_inputs WHERE run_id = ?`, id); err != nil {
				return err
			}
			if callback == "" {
				return nil
			}
			return webhooks.Enqueue(ctx, tx, wasmwiz.Webhook{RunID: id, UserID: user})
		case wasmwiz.RunRunning:
			_, err = tx.ExecContext(ctx, `UPDATE runs SET cancel_requested = 1 WHERE id = ?`, id)
			return err
		}
		return wasmwiz.Errorf(wasmwiz.ECONFLICT, "run %s is already %s", id, state)
	})
	if err != nil {
		return nil, err
	}
	return db.FindRunByID(ctx, id)
}

// FailStaleRuns fails at most limit running runs without a heartbeat
// since before, in one write transaction with their webhooks' jobs (which
// holds the only write lock: the limit keeps it short).
func (db *DB) FailStaleRuns(ctx context.Context, before time.Time, message string, limit int, webhooks wasmwiz.EnqueueWebhooks) ([]wasmwiz.StaleRun, error) {
	if limit < 1 {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "limit must be at least 1")
	}
	var stale []wasmwiz.StaleRun
	now := db.Now()
	err := db.write(ctx, "fail stale runs", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `UPDATE runs SET state = 'failed', finished_at = ?,
				detail = json_set(detail, '$.message', ?)
			WHERE id IN (SELECT id FROM runs WHERE state = 'running' AND coalesce(heartbeat_at, 0) < ? LIMIT ?)
			RETURNING id, user_id, coalesce(json_extract(detail, '$.callback_url'), '')`, ms(now), message, ms(before), limit)
		stale, err = collect(rows, err, func(row interface{ Scan(...any) error }) (r wasmwiz.StaleRun, err error) {
			err = row.Scan(&r.ID, &r.UserID, &r.CallbackURL)
			return r, err
		})
		if err != nil {
			return err
		}
		for _, r := range stale {
			if _, err := tx.ExecContext(ctx, `DELETE FROM run_inputs WHERE run_id = ?`, r.ID); err != nil {
				return err
			}
			if err := keepAppendedOutput(ctx, tx, r.ID); err != nil {
				return err
			}
		}
		return webhooks.Enqueue(ctx, tx, wasmwiz.WebhooksOf(stale)...)
	})
	if err != nil {
		return nil, err // rolled back: none failed
	}
	return stale, nil
}

// CountRuns counts queued and running runs and the oldest of each.
func (db *DB) CountRuns(ctx context.Context) (map[wasmwiz.RunState]int64, map[wasmwiz.RunState]time.Time, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT state, count(*), min(created_at) FROM runs
		WHERE state IN ('queued', 'running') GROUP BY state`)
	if err != nil {
		return nil, nil, dbError(err, "count runs")
	}
	defer rows.Close()
	counts, oldest := map[wasmwiz.RunState]int64{}, map[wasmwiz.RunState]time.Time{}
	for rows.Next() {
		var s string
		var n, first int64
		if err := rows.Scan(&s, &n, &first); err != nil {
			return nil, nil, dbError(err, "count runs")
		}
		counts[wasmwiz.RunState(s)], oldest[wasmwiz.RunState(s)] = n, fromMS(first)
	}
	return counts, oldest, dbError(rows.Err(), "count runs")
}

// AddWebhookDelivery records one delivery attempt; ENOTFOUND when its run
// is gone: the foreign key to runs (migration 0019) refuses it.
func (db *DB) AddWebhookDelivery(ctx context.Context, d *wasmwiz.WebhookDelivery) error {
	return db.write(ctx, "add webhook delivery", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO webhook_deliveries (run_id, attempt, at, status_code, error, duration_ms)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, attempt) DO NOTHING`,
			d.RunID, d.Attempt, ms(d.At), d.StatusCode, d.Error, d.DurationMS)
		var serr *sqlite.Error
		if errors.As(err, &serr) && serr.Code() == sqliteConstraintForeignKey {
			return wasmwiz.WrapError(wasmwiz.ENOTFOUND, err, "run not found")
		}
		return err
	})
}

func (db *DB) webhookDeliveries(ctx context.Context, runID string) ([]wasmwiz.WebhookDelivery, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT attempt, at, status_code, error, duration_ms
		FROM webhook_deliveries WHERE run_id = ? ORDER BY attempt`, runID)
	out, err := collect(rows, err, func(row interface{ Scan(...any) error }) (wasmwiz.WebhookDelivery, error) {
		d := wasmwiz.WebhookDelivery{RunID: runID}
		var at int64
		err := row.Scan(&d.Attempt, &at, &d.StatusCode, &d.Error, &d.DurationMS)
		d.At = fromMS(at)
		return d, err
	})
	if err != nil {
		return nil, dbError(err, "webhook deliveries")
	}
	return out, nil
}

// RotateWebhookSecret makes a new webhook secret for the caller.
func (db *DB) RotateWebhookSecret(ctx context.Context) (string, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return "", err
	}
	secret := wasmwiz.NewWebhookSecret()
	err = db.write(ctx, "rotate webhook secret", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO webhook_secrets (user_id, secret, created_at) VALUES (?, ?, ?)
			ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at`,
			caller.ID, secret, ms(db.Now()))
		return err
	})
	return secret, err
}

// WebhookSecret returns a user's webhook secret.
func (db *DB) WebhookSecret(ctx context.Context, userID int64) (string, error) {
	var s string
	err := db.reader.QueryRowContext(ctx, `SELECT secret FROM webhook_secrets WHERE user_id = ?`, userID).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return "", wasmwiz.Errorf(wasmwiz.ENOTFOUND, "no webhook secret")
	}
	return s, dbError(err, "webhook secret")
}
