// Alike on purpose: internal/sqlite/run.go is this file for SQLite (one schema
// and contract, another driver and SQL dialect); a change here belongs there too.

package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wasmwiz/wasmwiz"
)

// runColumnList is the column order of every run read and write.
var runColumnList = []string{"id", "user_id", "api_key_id", "module_id", "module_sha256", "tier", "status",
	"exit_code", "duration_ms", "compile_ms", "memory_peak_bytes", "stdin_bytes", "output_bytes", "error_code", "created_at",
	"state", "started_at", "finished_at", "detail", "stdout", "stderr"}

// runColumns are read for every run; runOutputColumns follow them when one
// run is read with its output, and are written with every run.
const (
	runColumns = `id, user_id, api_key_id, module_id, module_sha256, tier, status, exit_code, duration_ms,
	compile_ms, memory_peak_bytes, stdin_bytes, output_bytes, error_code, created_at, state, started_at, finished_at, detail`
	runOutputColumns = `, stdout, stderr`
)

// scanRun reads runColumns (and runOutputColumns when withOutput), then
// extra.
func scanRun(row pgx.Row, withOutput bool, extra ...any) (*wasmwiz.UsageRecord, error) {
	var r wasmwiz.UsageRecord
	var status, state, detail string
	dest := []any{&r.ID, &r.UserID, &r.APIKeyID, &r.ModuleID, &r.ModuleSHA256, &r.Tier, &status,
		&r.ExitCode, &r.DurationMS, &r.CompileMS, &r.MemoryPeakBytes, &r.StdinBytes, &r.OutputBytes, &r.ErrorCode,
		&r.CreatedAt, &state, &r.StartedAt, &r.FinishedAt, &detail}
	if withOutput {
		dest = append(dest, &r.Stdout, &r.Stderr)
	}
	if err := row.Scan(append(dest, extra...)...); err != nil {
		return nil, err
	}
	r.Status, r.State = wasmwiz.Status(status), wasmwiz.RunState(state)
	r.CreatedAt = r.CreatedAt.UTC()
	for _, t := range []*time.Time{r.StartedAt, r.FinishedAt} {
		if t != nil {
			*t = t.UTC()
		}
	}
	if err := json.Unmarshal([]byte(detail), &r.RunDetail); err != nil {
		return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "run %s: unreadable detail", r.ID)
	}
	if withOutput {
		r.Stdout, r.Stderr = nonNil(r.Stdout), nonNil(r.Stderr)
	}
	return &r, nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// runRow returns r's columns in runColumnList order.
func runRow(r *wasmwiz.UsageRecord) ([]any, error) {
	var buf [512]byte // on the stack: most details fit
	detail, err := r.RunDetail.AppendJSON(buf[:0])
	if err != nil {
		return nil, wasmwiz.WrapError(wasmwiz.EINVALID, err, "run %s: detail", r.ID)
	}
	state := r.State
	if state == "" {
		state = wasmwiz.RunDone
	}
	return []any{r.ID, r.UserID, r.APIKeyID, r.ModuleID, r.ModuleSHA256, r.Tier, string(r.Status),
		int32(r.ExitCode), r.DurationMS, r.CompileMS, r.MemoryPeakBytes, r.StdinBytes, r.OutputBytes, r.ErrorCode,
		r.CreatedAt, string(state), r.StartedAt, r.FinishedAt, string(detail), nonNil(r.Stdout), nonNil(r.Stderr)}, nil
}

// defaultCopyThreshold is the batch size from which CreateRuns streams rows
// with COPY instead of one INSERT of arrays. Below it the INSERT of arrays
// is clearly faster (COPY pays for a temporary table per batch); from about
// a thousand rows the two are within measurement noise of each other, and
// COPY's streaming keeps memory flat (docs/PERFORMANCE.md, docs/RATIONALE.md
// "Stores: PostgreSQL").
const defaultCopyThreshold = 1000

// CreateRuns inserts records in one transaction. It needs no caller and is
// idempotent by Run.ID: a record whose id exists is skipped, and only the
// records actually inserted bump run_count and last_run_at of the stored
// modules they name (when those still exist). A run without CreatedAt gets
// the current time. EINVALID, and nothing written, when a run has no id or
// one longer than 64 characters; EUNAVAILABLE when the database does not
// answer (nothing is written then, so the caller may retry the batch).
func (db *DB) CreateRuns(ctx context.Context, runs []*wasmwiz.UsageRecord) error {
	batch := make([]*wasmwiz.UsageRecord, 0, len(runs))
	now := db.now()
	for _, r := range runs {
		if r == nil {
			continue
		}
		if r.ID == "" || len(r.ID) > 64 {
			return wasmwiz.Errorf(wasmwiz.EINVALID, "every run needs an id of at most 64 characters")
		}
		if r.CreatedAt.IsZero() {
			r.CreatedAt = now
		}
		batch = append(batch, r)
	}
	if len(batch) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if len(batch) >= db.copyThreshold {
			return insertRunsCopy(ctx, tx, batch)
		}
		return insertRunsArrays(ctx, tx, batch)
	})
	return dbError(err, "create runs")
}

// bumpModules is the tail of both insert paths: ins is a CTE of the rows
// really inserted (RETURNING module_id, status, created_at), so a retried batch does
// not count its runs twice.
const bumpModules = `
	, counts AS (
		SELECT module_id, count(*) AS n, max(created_at) AS last
		FROM ins WHERE module_id <> '' AND status <> '' GROUP BY module_id)
	UPDATE modules m SET run_count = m.run_count + counts.n,
		last_run_at = GREATEST(m.last_run_at, counts.last)
	FROM counts WHERE m.id = counts.module_id`

// insertRunsArrays inserts a batch as one INSERT … SELECT FROM unnest of
// one array parameter per column: one round trip, no temporary table.
func insertRunsArrays(ctx context.Context, tx pgx.Tx, batch []*wasmwiz.UsageRecord) error {
	n := len(batch)
	ids, mods, shas, tiers, statuses, errs := make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n)
	users, keys, peaks, stdins, outs := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	exits := make([]int32, n)
	durs, compiles := make([]float64, n), make([]float64, n)
	times := make([]time.Time, n)
	states, details := make([]string, n), make([]string, n)
	starts, ends := make([]*time.Time, n), make([]*time.Time, n)
	stdouts, stderrs := make([][]byte, n), make([][]byte, n)
	for i, r := range batch {
		row, err := runRow(r)
		if err != nil {
			return err
		}
		ids[i], users[i], keys[i], mods[i], shas[i], tiers[i], statuses[i] = r.ID, r.UserID, r.APIKeyID, r.ModuleID,
			r.ModuleSHA256, r.Tier, string(r.Status)
		exits[i], durs[i], compiles[i], peaks[i], stdins[i], outs[i], errs[i], times[i] = int32(r.ExitCode), r.DurationMS,
			r.CompileMS, r.MemoryPeakBytes, r.StdinBytes, r.OutputBytes, r.ErrorCode, r.CreatedAt
		states[i], starts[i], ends[i], details[i], stdouts[i], stderrs[i] = row[15].(string), r.StartedAt, r.FinishedAt,
			row[18].(string), row[19].([]byte), row[20].([]byte)
	}
	_, err := tx.Exec(ctx, `WITH ins AS (
		INSERT INTO runs (`+runColumns+runOutputColumns+`)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[],
			$7::text[], $8::int[], $9::float8[], $10::float8[], $11::bigint[], $12::bigint[], $13::bigint[], $14::text[],
			$15::timestamptz[], $16::text[], $17::timestamptz[], $18::timestamptz[], $19::text[], $20::bytea[], $21::bytea[])
		ON CONFLICT (id) DO NOTHING
		RETURNING module_id, status, created_at)`+bumpModules,
		ids, users, keys, mods, shas, tiers, statuses, exits, durs, compiles, peaks, stdins, outs, errs, times,
		states, starts, ends, details, stdouts, stderrs)
	return err
}

// insertRunsCopy streams a batch with COPY into a temporary table that
// dies with the transaction, then moves it with INSERT … ON CONFLICT DO
// NOTHING, which COPY alone cannot do.
func insertRunsCopy(ctx context.Context, tx pgx.Tx, batch []*wasmwiz.UsageRecord) error {
	if _, err := tx.Exec(ctx, `CREATE TEMPORARY TABLE runs_in (LIKE runs INCLUDING DEFAULTS) ON COMMIT DROP`); err != nil {
		return err
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"runs_in"}, runColumnList,
		pgx.CopyFromSlice(len(batch), func(i int) ([]any, error) { return runRow(batch[i]) }))
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `WITH ins AS (
		INSERT INTO runs (`+runColumns+runOutputColumns+`) SELECT `+runColumns+runOutputColumns+` FROM runs_in
		ON CONFLICT (id) DO NOTHING
		RETURNING module_id, status, created_at)`+bumpModules)
	return err
}

// FindRunByID returns a run of the caller (any, for admins). EUNAUTHORIZED
// without a caller, ENOTFOUND otherwise.
func (db *DB) FindRunByID(ctx context.Context, id string) (*wasmwiz.UsageRecord, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	if !wasmwiz.ValidRunID(id) {
		return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "run not found")
	}
	var files []byte // a background run's output files (migration 0011)
	r, err := scanRun(db.pool.QueryRow(ctx, `SELECT `+runColumns+runLiveOutputColumns+`, files FROM runs
		WHERE id = $1 AND ($2 OR user_id = $3)`, id, caller.IsAdmin(), caller.ID), true, &files)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "run not found")
	}
	if err != nil {
		return nil, dbError(err, "find run")
	}
	if r.Files, err = wasmwiz.DecodeOutputFiles(files); err != nil {
		return nil, err
	}
	if r.Deliveries, err = db.webhookDeliveries(ctx, id); err != nil {
		return nil, err
	}
	return r, nil
}

// FindRuns lists the caller's own runs, newest first, with the matching
// count up to wasmwiz.MaxListTotal. EUNAUTHORIZED without a caller,
// EINVALID for a filter Validate refuses.
func (db *DB) FindRuns(ctx context.Context, filter wasmwiz.RunFilter) ([]*wasmwiz.UsageRecord, wasmwiz.ListTotal, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, wasmwiz.ListTotal{}, err
	}
	if err := filter.Validate(); err != nil {
		return nil, wasmwiz.ListTotal{}, err
	}
	// Only the filters set are in the SQL: a condition ($3 IS NULL OR
	// created_at >= $3) is no index bound in a generic plan, and a caller
	// paging back with until would read every run newer than it.
	where, args := `WHERE user_id = $1`, []any{caller.ID}
	add := func(cond string, v any) {
		args = append(args, v)
		where += ` AND ` + cond + strconv.Itoa(len(args))
	}
	if filter.Status != "" {
		add(`status = $`, string(filter.Status))
	}
	if !filter.Since.IsZero() {
		add(`created_at >= $`, filter.Since.UTC())
	}
	if !filter.Until.IsZero() {
		add(`created_at < $`, filter.Until.UTC())
	}
	q := findQuery{what: "runs", columns: runColumns, table: "runs", where: where, order: "created_at DESC, id DESC", args: args}
	return findPage(ctx, db, q, filter.Limit, filter.Offset, func(row pgx.Row) (*wasmwiz.UsageRecord, error) {
		return scanRun(row, false)
	})
}

// dayStart returns midnight UTC of now's day.
func dayStart(now time.Time) time.Time {
	y, m, d := now.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// Usage counts the caller's executed runs (Status set) of now's UTC day and
// of the minute (now-1m, now], its stored modules and run output, against the quotas of
// the caller's tier as stored now. EUNAUTHORIZED
// without a caller, ENOTFOUND when the caller's tier does not exist.
func (db *DB) Usage(ctx context.Context, now time.Time) (*wasmwiz.Usage, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	start := dayStart(now)
	var u wasmwiz.Usage
	err = db.pool.QueryRow(ctx, `SELECT t.name, t.runs_per_day, t.runs_per_minute,
			(SELECT count(*) FROM runs WHERE user_id = $1 AND status <> '' AND created_at >= $3 AND created_at < $4),
			(SELECT count(*) FROM runs WHERE user_id = $1 AND status <> '' AND created_at > $5 AND created_at <= $6),
			t.max_stored_modules, t.max_stored_module_bytes,
			(SELECT count(*) FROM modules WHERE owner_id = $1),
			(SELECT COALESCE(sum(size_bytes), 0)::bigint FROM modules WHERE owner_id = $1),
			t.max_stored_run_bytes, `+storedRunBytes+`
		FROM tiers t WHERE t.name = COALESCE((SELECT tier FROM users WHERE id = $1), $2)`,
		caller.ID, caller.Tier, start, start.Add(24*time.Hour), now.Add(-time.Minute), now).
		Scan(&u.Tier, &u.RunsPerDay, &u.RunsPerMinute, &u.RunsToday, &u.RunsThisMinute,
			&u.MaxStoredModules, &u.MaxStoredModuleBytes, &u.Stored.Count, &u.Stored.Bytes,
			&u.MaxStoredRunBytes, &u.StoredRunBytes)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "tier %q not found", caller.Tier)
	}
	if err != nil {
		return nil, dbError(err, "usage")
	}
	return &u, nil
}

// storedRunBytes is the run output user $1 keeps, as the triggers of
// migration 0014 count it. It is not clamped: the conformance suite holds
// the count to the bytes of the records, 0 included.
const storedRunBytes = `COALESCE((SELECT bytes FROM run_output_usage WHERE user_id = $1), 0)`

// StoredRunBytes returns the run output user keeps: one indexed row.
func (db *DB) StoredRunBytes(ctx context.Context, user int64) (int64, error) {
	var n int64
	err := db.pool.QueryRow(ctx, `SELECT `+storedRunBytes, user).Scan(&n)
	return n, dbError(err, "stored run bytes")
}

// topModulesLimit is how many modules Stats lists.
const topModulesLimit = 10

// Stats returns admin totals at now, counting executed runs (Status set)
// only, and as active keys those neither revoked nor expired of enabled
// users: "today" is now's UTC day, RunsPerDay
// covers the 30 UTC days up to today (every day, oldest first, zero days
// included), TopModules the most run modules of those 30 days.
// EUNAUTHORIZED without a caller, EFORBIDDEN for non-admins.
func (db *DB) Stats(ctx context.Context, now time.Time) (*wasmwiz.Stats, error) {
	if _, err := wasmwiz.RequireAdmin(ctx); err != nil {
		return nil, err
	}
	today := dayStart(now)
	tomorrow := today.Add(24 * time.Hour)
	first := today.AddDate(0, 0, -29)
	var s wasmwiz.Stats
	err := pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT
				(SELECT count(*) FROM users),
				(SELECT count(*) FROM api_keys k JOIN users u ON u.id = k.user_id
				 WHERE NOT u.disabled AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $1))`,
			now.UTC()).Scan(&s.Users, &s.ActiveKeys); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT count(*), count(DISTINCT user_id) FILTER (WHERE user_id <> 0),
				COALESCE(avg((status = 'ok')::int), 0), COALESCE(avg(duration_ms), 0),
				COALESCE(percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_ms), 0)
			FROM runs WHERE status <> '' AND created_at >= $1 AND created_at < $2`, today, tomorrow).
			Scan(&s.RunsToday, &s.ActiveUsersToday, &s.SuccessRate, &s.MeanDurationMS, &s.P95DurationMS); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT to_char(d.day, 'YYYY-MM-DD'), count(r.id)
			FROM generate_series($1::timestamptz, $2::timestamptz, interval '1 day') AS d(day)
			LEFT JOIN runs r ON r.status <> '' AND r.created_at >= d.day AND r.created_at < d.day + interval '1 day'
			GROUP BY d.day ORDER BY d.day`, first, today)
		if err != nil {
			return err
		}
		s.RunsPerDay, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (wasmwiz.DailyCount, error) {
			var c wasmwiz.DailyCount
			return c, row.Scan(&c.Day, &c.Runs)
		})
		if err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT module_sha256, module_id, count(*) AS n FROM runs
			WHERE status <> '' AND created_at >= $1 AND created_at < $2 AND module_sha256 <> ''
			GROUP BY module_sha256, module_id ORDER BY n DESC, module_sha256, module_id LIMIT $3`,
			first, tomorrow, topModulesLimit)
		if err != nil {
			return err
		}
		s.TopModules, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (wasmwiz.ModuleCount, error) {
			var c wasmwiz.ModuleCount
			return c, row.Scan(&c.ModuleSHA256, &c.ModuleID, &c.Runs)
		})
		return err
	})
	if err != nil {
		return nil, dbError(err, "stats")
	}
	return &s, nil
}

// DeleteRunsBefore deletes at most batch runs created before t (of tier,
// when it is not ""), oldest first, and returns how many it deleted. It
// needs no caller. Replicas
// running it together skip each other's rows (FOR UPDATE SKIP LOCKED)
// instead of waiting or deleting twice. EINVALID for a batch below 1.
func (db *DB) DeleteRunsBefore(ctx context.Context, t time.Time, tier string, batch int) (int, error) {
	if batch < 1 {
		return 0, wasmwiz.Errorf(wasmwiz.EINVALID, "batch must be at least 1")
	}
	// Runs still queued or running are kept; their inputs leave with them,
	// and their webhook attempts by the foreign key (ON DELETE CASCADE).
	var n int
	err := db.pool.QueryRow(ctx, `WITH doomed AS (
			DELETE FROM runs WHERE id IN (`+retentionBatch(tier)+`)
			RETURNING id),
		inputs AS (DELETE FROM run_inputs WHERE run_id IN (SELECT id FROM doomed)),
		chunks AS (DELETE FROM run_output_chunks WHERE run_id IN (SELECT id FROM doomed))
		SELECT count(*) FROM doomed`, retentionArgs(t.UTC(), batch, tier)...).Scan(&n)
	if err != nil {
		return 0, dbError(err, "delete runs")
	}
	return n, nil
}

// retentionBatch is the SELECT of the ids of a batch of DeleteRunsBefore:
// at most $2 runs created before $1, no longer queued or running, and of
// tier $3 when tier is not "", oldest first, locked, skipping those another
// replica holds. The tier is named in the SQL rather than passed as a
// parameter that may be empty, a condition no generic plan reads an index
// by; and a tier's runs are read from the oldest of them (runs (tier,
// created_at), migration 0019: one index entry), so that whichever index
// the planner takes (it takes a tier's runs for spread over all of time,
// and may walk runs (created_at)), the batch does not read every older run
// of every tier.
func retentionBatch(tier string) string {
	where := `created_at < $1 AND state NOT IN ('queued', 'running')`
	if tier != "" {
		where = `tier = $3 AND ` + where + ` AND created_at >= (SELECT min(created_at) FROM runs WHERE tier = $3)`
	}
	return `SELECT id FROM runs WHERE ` + where + ` ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED`
}

// retentionArgs are the arguments of retentionBatch's SQL.
func retentionArgs(before time.Time, batch int, tier string) []any {
	if tier == "" {
		return []any{before, batch}
	}
	return []any{before, batch, tier}
}

// DailyRuns returns the caller's executed runs per UTC day, by status, with
// nearest-rank duration percentiles (percentile_disc).
func (db *DB) DailyRuns(ctx context.Context, now time.Time, days int) ([]wasmwiz.DailyRuns, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	if days < 1 || days > 90 {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "days must be between 1 and 90")
	}
	first := dayStart(now).AddDate(0, 0, 1-days)
	out := make([]wasmwiz.DailyRuns, days)
	for i := range out {
		out[i] = wasmwiz.DailyRuns{Day: first.AddDate(0, 0, i).Format("2006-01-02"), ByStatus: map[wasmwiz.Status]int64{}}
	}
	end := first.AddDate(0, 0, days)
	rows, err := db.pool.Query(ctx, `SELECT floor(extract(epoch FROM created_at - $1) / 86400)::int, status, count(*)
		FROM runs WHERE user_id = $2 AND created_at >= $1 AND created_at < $3 AND status <> '' GROUP BY 1, 2`,
		first, caller.ID, end)
	if err != nil {
		return nil, dbError(err, "daily runs")
	}
	for rows.Next() {
		var i int
		var st string
		var n int64
		if err := rows.Scan(&i, &st, &n); err != nil {
			rows.Close()
			return nil, dbError(err, "daily runs")
		}
		if i >= 0 && i < days {
			out[i].ByStatus[wasmwiz.Status(st)] = n
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, dbError(err, "daily runs")
	}
	rows, err = db.pool.Query(ctx, `SELECT floor(extract(epoch FROM created_at - $1) / 86400)::int,
			percentile_disc(0.50) WITHIN GROUP (ORDER BY duration_ms),
			percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_ms),
			percentile_disc(0.99) WITHIN GROUP (ORDER BY duration_ms)
		FROM runs WHERE user_id = $2 AND created_at >= $1 AND created_at < $3 AND status <> '' GROUP BY 1`,
		first, caller.ID, end)
	if err != nil {
		return nil, dbError(err, "daily runs")
	}
	defer rows.Close()
	for rows.Next() {
		var i int
		var p50, p95, p99 float64
		if err := rows.Scan(&i, &p50, &p95, &p99); err != nil {
			return nil, dbError(err, "daily runs")
		}
		if i >= 0 && i < days {
			out[i].P50DurationMS, out[i].P95DurationMS, out[i].P99DurationMS = p50, p95, p99
		}
	}
	return out, dbError(rows.Err(), "daily runs")
}
