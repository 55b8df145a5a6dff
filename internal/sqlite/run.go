// Alike on purpose: internal/postgres/run.go is this file for PostgreSQL (one schema
// and contract, another driver and SQL dialect); a change here belongs there too.

package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

const runColumns = `id, user_id, api_key_id, module_id, module_sha256, tier, status, exit_code, duration_ms,
	compile_ms, memory_peak_bytes, stdin_bytes, output_bytes, error_code, created_at, state, started_at, finished_at, detail`

// runOutputColumns follow runColumns when one run is read with its output.
const runOutputColumns = `, stdout, stderr`

// scanRun reads runColumns (and runOutputColumns when withOutput), then
// extra.
func scanRun(row interface{ Scan(...any) error }, withOutput bool, extra ...any) (*wasmwiz.UsageRecord, error) {
	var r wasmwiz.UsageRecord
	var created int64
	var started, finished sql.NullInt64
	var detail string
	dest := []any{&r.ID, &r.UserID, &r.APIKeyID, &r.ModuleID, &r.ModuleSHA256, &r.Tier, &r.Status, &r.ExitCode,
		&r.DurationMS, &r.CompileMS, &r.MemoryPeakBytes, &r.StdinBytes, &r.OutputBytes, &r.ErrorCode, &created,
		&r.State, &started, &finished, &detail}
	if withOutput {
		dest = append(dest, &r.Stdout, &r.Stderr)
	}
	if err := row.Scan(append(dest, extra...)...); err != nil {
		return nil, err
	}
	r.CreatedAt = fromMS(created)
	r.StartedAt, r.FinishedAt = fromNullMS(started), fromNullMS(finished)
	if err := json.Unmarshal([]byte(detail), &r.RunDetail); err != nil {
		return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "run %s: unreadable detail", r.ID)
	}
	if withOutput {
		// A run read by id always carries its output, if empty.
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

// runValues returns r's columns in runColumns order followed by its output.
func runValues(r *wasmwiz.UsageRecord, created time.Time) ([]any, error) {
	return appendRunValues(make([]any, 0, runValueCount), r, created)
}

// runValueCount is how many values runValues gives a run.
const runValueCount = 21

// appendRunValues appends runValues(r, created) to vals.
func appendRunValues(vals []any, r *wasmwiz.UsageRecord, created time.Time) ([]any, error) {
	var buf [512]byte // on the stack: most details fit
	detail, err := r.RunDetail.AppendJSON(buf[:0])
	if err != nil {
		return nil, wasmwiz.WrapError(wasmwiz.EINVALID, err, "run %s: detail", r.ID)
	}
	state := r.State
	if state == "" {
		state = wasmwiz.RunDone
	}
	return append(vals, r.ID, r.UserID, r.APIKeyID, r.ModuleID, r.ModuleSHA256, r.Tier, string(r.Status),
		r.ExitCode, r.DurationMS, r.CompileMS, r.MemoryPeakBytes, r.StdinBytes, r.OutputBytes, r.ErrorCode, ms(created),
		string(state), msPtr(r.StartedAt), msPtr(r.FinishedAt), string(detail), nonNil(r.Stdout), nonNil(r.Stderr)), nil
}

// runsPerInsert is the most runs one INSERT writes: SQLite parses, binds
// and steps one statement for many rows instead of one per row. Chunks of
// 25 to 100 measured alike, 500 worse. 50 runs take 1050 parameters, far
// below SQLite's limit (32766).
const runsPerInsert = 50

// insertRunsSQL returns the INSERT of n runs that skips ids already stored
// and, when returning, gives the module and creation time of each run it
// did insert.
//
// It is INSERT OR IGNORE, not ON CONFLICT (id) DO NOTHING: a statement of
// several rows that may abort on a constraint makes SQLite journal every
// page it changes so that it can undo the statement alone, which cost more
// than the rows saved. IGNORE also skips a row that breaks another
// constraint instead of failing the batch, and runs has no other: no
// CHECK, no other unique index, and every NOT NULL column gets a typed,
// non-nil value from appendRunValues.
func insertRunsSQL(n int, returning bool) string {
	var q strings.Builder
	q.WriteString(`INSERT OR IGNORE INTO runs (` + runColumns + runOutputColumns + `) VALUES `)
	for i := range n {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(`(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	}
	if returning {
		q.WriteString(` RETURNING module_id, created_at`)
	}
	return q.String()
}

// moduleRuns counts the runs inserted of each module and the latest
// creation time (ms) among them, in the order modules came.
type moduleRuns struct {
	byID  map[string]*moduleRunCount
	order []string
}

type moduleRunCount struct{ n, last int64 }

func (m *moduleRuns) add(id string, created int64) {
	c := m.byID[id]
	if c == nil {
		if m.byID == nil {
			m.byID = map[string]*moduleRunCount{}
		}
		c = &moduleRunCount{}
		m.byID[id] = c
		m.order = append(m.order, id)
	}
	c.n++
	c.last = max(c.last, created)
}

// insertRuns inserts runs in statements of up to runsPerInsert rows,
// skipping ids already stored (also one repeated within runs); when
// counted is not nil, it adds each run it did insert to counted. prepared
// is the full chunk's statement prepared on the writer, nil when it is not
// (yet): then insertRuns prepares it once for all full chunks.
func insertRuns(ctx context.Context, tx *sql.Tx, prepared *sql.Stmt, runs []*wasmwiz.UsageRecord, now time.Time, counted *moduleRuns) error {
	var full *sql.Stmt
	if prepared != nil && len(runs) >= runsPerInsert {
		full = tx.StmtContext(ctx, prepared) // the writer's one connection has it prepared already
	}
	defer func() {
		if full != nil {
			full.Close()
		}
	}()
	vals := make([]any, 0, min(len(runs), runsPerInsert)*runValueCount)
	for len(runs) > 0 {
		chunk := runs[:min(len(runs), runsPerInsert)]
		runs = runs[len(chunk):]
		vals = vals[:0]
		for _, r := range chunk {
			created := now
			if !r.CreatedAt.IsZero() {
				created = r.CreatedAt
			}
			var err error
			if vals, err = appendRunValues(vals, r, created); err != nil {
				return err
			}
		}
		stmt := full
		if stmt == nil || len(chunk) < runsPerInsert {
			var err error
			if stmt, err = tx.PrepareContext(ctx, insertRunsSQL(len(chunk), counted != nil)); err != nil {
				return err
			}
			if len(chunk) == runsPerInsert {
				full = stmt
			} else {
				defer stmt.Close() // the last chunk's
			}
		}
		if err := execInsertRuns(ctx, stmt, vals, counted); err != nil {
			return err
		}
	}
	return nil
}

// execInsertRuns runs an insertRunsSQL statement with vals, adding the
// runs it returns to counted when counted is not nil.
func execInsertRuns(ctx context.Context, stmt *sql.Stmt, vals []any, counted *moduleRuns) error {
	if counted == nil {
		_, err := stmt.ExecContext(ctx, vals...)
		return err
	}
	rows, err := stmt.QueryContext(ctx, vals...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var module string
		var created int64
		if err := rows.Scan(&module, &created); err != nil {
			return err
		}
		counted.add(module, created)
	}
	return rows.Err()
}

// CreateRuns inserts records in one transaction, ignoring ids already
// stored, so that a retried batch counts nothing twice. For the records it
// did insert that ran a stored module (ModuleID and Status set, module still
// present) it bumps the module's run_count and moves its last_run_at
// forward. It needs no caller. EINVALID for a record without ID (and then
// nothing of the batch is stored), EUNAVAILABLE when the database is busy or
// away.
func (db *DB) CreateRuns(ctx context.Context, runs []*wasmwiz.UsageRecord) error {
	if len(runs) == 0 {
		return nil
	}
	// The runs of stored modules go in statements of their own that return
	// the rows they inserted; the others (ad hoc modules, refused requests)
	// need not.
	var plain, ofModules []*wasmwiz.UsageRecord
	for _, r := range runs {
		switch {
		case r == nil || r.ID == "":
			return wasmwiz.Errorf(wasmwiz.EINVALID, "usage record without id")
		case r.ModuleID != "" && r.Status != "":
			ofModules = append(ofModules, r)
		default:
			plain = append(plain, r)
		}
	}
	now := db.Now()
	return db.write(ctx, "create runs", func(tx *sql.Tx) error {
		if err := insertRuns(ctx, tx, db.insertRunsStmt.Load(), plain, now, nil); err != nil {
			return err
		}
		var counted moduleRuns
		if err := insertRuns(ctx, tx, db.insertRunsReturningStmt.Load(), ofModules, now, &counted); err != nil {
			return err
		}
		for _, id := range counted.order {
			c := counted.byID[id]
			if _, err := tx.ExecContext(ctx, `UPDATE modules SET run_count = run_count + ?,
					last_run_at = max(coalesce(last_run_at, 0), ?) WHERE id = ?`, c.n, c.last, id); err != nil {
				return err
			}
		}
		return nil
	})
}

// FindRunByID returns a run of the caller (any, for admins). ENOTFOUND
// otherwise, EUNAUTHORIZED without a caller.
func (db *DB) FindRunByID(ctx context.Context, id string) (*wasmwiz.UsageRecord, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	if !wasmwiz.ValidRunID(id) {
		return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "run not found")
	}
	// One read transaction: a running run's row and the output its
	// heartbeats appended are of one moment, also when it ends between.
	tx, err := db.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, dbError(err, "find run")
	}
	defer func() { _ = tx.Rollback() }()
	var files []byte // a background run's output files (migration 0011)
	r, err := scanRun(tx.QueryRowContext(ctx, `SELECT `+runColumns+runOutputColumns+`, files FROM runs
		WHERE id = ? AND (user_id = ? OR ?)`, id, caller.ID, caller.IsAdmin()), true, &files)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "run %q not found", id)
	}
	if err != nil {
		return nil, dbError(err, "find run")
	}
	if err := withAppendedOutput(ctx, tx, r); err != nil {
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

// FindRuns lists the caller's own runs (admins' too), newest first, with the
// matching count up to wasmwiz.MaxListTotal; Since is inclusive, Until
// exclusive. EUNAUTHORIZED without a caller, EINVALID for a filter Validate
// refuses.
func (db *DB) FindRuns(ctx context.Context, filter wasmwiz.RunFilter) ([]*wasmwiz.UsageRecord, wasmwiz.ListTotal, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, wasmwiz.ListTotal{}, err
	}
	if err := filter.Validate(); err != nil {
		return nil, wasmwiz.ListTotal{}, err
	}
	return findPage(ctx, db, runsQuery(caller.ID, filter), filter.Limit, filter.Offset, func(row interface{ Scan(...any) error }) (*wasmwiz.UsageRecord, error) {
		return scanRun(row, false)
	})
}

// runsQuery is FindRuns' query of user's runs: only the filters set are in
// the SQL, so that each is a bound of runs (user_id, created_at, id).
func runsQuery(user int64, filter wasmwiz.RunFilter) findQuery {
	cond, args := `user_id = ?`, []any{user}
	if filter.Status != "" {
		cond, args = cond+` AND status = ?`, append(args, string(filter.Status))
	}
	if !filter.Since.IsZero() {
		cond, args = cond+` AND created_at >= ?`, append(args, ms(filter.Since))
	}
	if !filter.Until.IsZero() {
		cond, args = cond+` AND created_at < ?`, append(args, ms(filter.Until))
	}
	return findQuery{what: "runs", columns: runColumns, table: "runs", where: cond, order: "created_at DESC, id DESC", args: args}
}

// dayStart returns the start of t's UTC day.
func dayStart(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// Usage counts the caller's executed runs (Status set) today (UTC) and in
// the minute (now-1m, now], its stored modules and run output, against the quotas of
// the caller's tier.
// EUNAUTHORIZED without a caller, ENOTFOUND when the caller's tier is gone.
func (db *DB) Usage(ctx context.Context, now time.Time) (*wasmwiz.Usage, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	tier, err := db.FindTier(ctx, caller.Tier)
	if err != nil {
		return nil, err
	}
	day := dayStart(now)
	u := &wasmwiz.Usage{Tier: tier.Name, RunsPerDay: tier.RunsPerDay, RunsPerMinute: tier.RunsPerMinute,
		MaxStoredModules: tier.MaxStoredModules, MaxStoredModuleBytes: tier.MaxStoredModuleBytes,
		MaxStoredRunBytes: tier.MaxStoredRunBytes}
	minuteFrom := ms(now.Add(-time.Minute))
	err = db.reader.QueryRowContext(ctx, `SELECT
			count(*) FILTER (WHERE created_at >= ?1),
			count(*) FILTER (WHERE created_at > ?2 AND created_at <= ?3),
			(SELECT count(*) FROM modules WHERE owner_id = ?4),
			(SELECT COALESCE(sum(size_bytes), 0) FROM modules WHERE owner_id = ?4),
			`+storedRunBytes("?4")+`
		FROM runs WHERE user_id = ?4 AND status <> '' AND created_at >= min(?1, ?2 + 1) AND created_at < ?5`,
		ms(day), minuteFrom, ms(now), caller.ID, ms(day.AddDate(0, 0, 1))).
		Scan(&u.RunsToday, &u.RunsThisMinute, &u.Stored.Count, &u.Stored.Bytes, &u.StoredRunBytes)
	if err != nil {
		return nil, dbError(err, "usage")
	}
	return u, nil
}

// storedRunBytes returns the SQL of the run output the user of parameter
// param keeps, as the triggers of migration 0014 count it. It is not
// clamped: the conformance suite holds the count to the bytes of the
// records, 0 included.
func storedRunBytes(param string) string {
	return `coalesce((SELECT bytes FROM run_output_usage WHERE user_id = ` + param + `), 0)`
}

// StoredRunBytes returns the run output user keeps: one indexed row.
func (db *DB) StoredRunBytes(ctx context.Context, user int64) (int64, error) {
	var n int64
	err := db.reader.QueryRowContext(ctx, `SELECT `+storedRunBytes("?"), user).Scan(&n)
	return n, dbError(err, "stored run bytes")
}

// topModules is how many modules Stats lists.
const topModules = 10

// Stats returns admin totals at now: users, keys that would authenticate,
// and over executed runs (Status set) of now's UTC day: count, active users,
// success rate, mean and nearest-rank p95 duration; then runs per day for 30
// days ending today and the 10 most run modules of those days. Admin only
// (EFORBIDDEN), EUNAUTHORIZED without a caller.
func (db *DB) Stats(ctx context.Context, now time.Time) (*wasmwiz.Stats, error) {
	if _, err := wasmwiz.RequireAdmin(ctx); err != nil {
		return nil, err
	}
	day := dayStart(now)
	from, to := ms(day), ms(day.AddDate(0, 0, 1))
	first := day.AddDate(0, 0, -29)
	st := &wasmwiz.Stats{}

	// One read transaction: every figure comes from one snapshot.
	tx, err := db.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, dbError(err, "stats")
	}
	defer tx.Rollback()

	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM users`).Scan(&st.Users); err != nil {
		return nil, dbError(err, "stats: users")
	}
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM api_keys k JOIN users u ON u.id = k.user_id
		WHERE k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > ?) AND u.disabled = 0`,
		ms(now)).Scan(&st.ActiveKeys); err != nil {
		return nil, dbError(err, "stats: keys")
	}
	var ok int64
	var mean sql.NullFloat64
	if err := tx.QueryRowContext(ctx, `SELECT count(*), count(DISTINCT nullif(user_id, 0)),
			count(*) FILTER (WHERE status = 'ok'), avg(duration_ms)
		FROM runs WHERE created_at >= ? AND created_at < ? AND status <> ''`, from, to).
		Scan(&st.RunsToday, &st.ActiveUsersToday, &ok, &mean); err != nil {
		return nil, dbError(err, "stats: today")
	}
	if st.RunsToday > 0 {
		st.SuccessRate = float64(ok) / float64(st.RunsToday)
		st.MeanDurationMS = mean.Float64
		rank := (95*st.RunsToday + 99) / 100 // ceil(0.95·n), in integers
		if err := tx.QueryRowContext(ctx, `SELECT duration_ms FROM runs
			WHERE created_at >= ? AND created_at < ? AND status <> ''
			ORDER BY duration_ms LIMIT 1 OFFSET ?`, from, to, rank-1).Scan(&st.P95DurationMS); err != nil {
			return nil, dbError(err, "stats: p95")
		}
	}

	st.RunsPerDay = make([]wasmwiz.DailyCount, 30)
	for i := range st.RunsPerDay {
		st.RunsPerDay[i].Day = first.AddDate(0, 0, i).Format("2006-01-02")
	}
	rows, err := tx.QueryContext(ctx, `SELECT (created_at - ?1) / 86400000, count(*) FROM runs
		WHERE created_at >= ?1 AND created_at < ?2 AND status <> '' GROUP BY 1`, ms(first), to)
	if err != nil {
		return nil, dbError(err, "stats: per day")
	}
	for rows.Next() {
		var i int
		var n int64
		if err := rows.Scan(&i, &n); err != nil {
			rows.Close()
			return nil, dbError(err, "stats: per day")
		}
		if i >= 0 && i < len(st.RunsPerDay) {
			st.RunsPerDay[i].Runs = n
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, dbError(err, "stats: per day")
	}

	rows, err = tx.QueryContext(ctx, `SELECT module_sha256, module_id, count(*) AS n FROM runs
		WHERE created_at >= ? AND created_at < ? AND status <> '' AND module_sha256 <> ''
		GROUP BY module_sha256, module_id ORDER BY n DESC, module_sha256, module_id LIMIT ?`, ms(first), to, topModules)
	top, err := collect(rows, err, func(row interface{ Scan(...any) error }) (mc wasmwiz.ModuleCount, err error) {
		err = row.Scan(&mc.ModuleSHA256, &mc.ModuleID, &mc.Runs)
		return mc, err
	})
	if err != nil {
		return nil, dbError(err, "stats: top modules")
	}
	st.TopModules = append([]wasmwiz.ModuleCount{}, top...)
	return st, nil
}

// DeleteRunsBefore deletes at most batch runs created before t (of tier,
// when it is not ""), oldest first, and returns how many it deleted; call
// it until it returns 0. Each
// call is one short transaction, so retention never holds the write lock
// long, and replicas running it at once only share the work. It needs no
// caller. EINVALID for a batch below 1.
func (db *DB) DeleteRunsBefore(ctx context.Context, t time.Time, tier string, batch int) (int, error) {
	if batch < 1 {
		return 0, wasmwiz.Errorf(wasmwiz.EINVALID, "batch must be at least 1")
	}
	var n int64
	err := db.write(ctx, "delete old runs", func(tx *sql.Tx) error {
		// The batch's ids first: the same rows leave runs, run_inputs and
		// run_output_chunks, and webhook_deliveries by the foreign key (ON
		// DELETE CASCADE). Runs still queued or running are kept.
		if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE IF NOT EXISTS doomed_runs (id TEXT PRIMARY KEY)`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM temp.doomed_runs`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO temp.doomed_runs `+retentionBatch(tier), retentionArgs(ms(t), batch, tier)...); err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM run_inputs WHERE run_id IN (SELECT id FROM temp.doomed_runs)`,
			`DELETE FROM run_output_chunks WHERE run_id IN (SELECT id FROM temp.doomed_runs)`,
		} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM runs WHERE id IN (SELECT id FROM temp.doomed_runs)`)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// retentionBatch is the SELECT of the ids of a batch of DeleteRunsBefore:
// at most ?2 runs created before ?1, no longer queued or running, and of
// tier ?3 when tier is not "", oldest first. The tier is named in the SQL
// rather than passed as a parameter that may be empty, a condition the
// planner reads no index by; and a tier's runs are read from the oldest of
// them (runs (tier, created_at), migration 0018), so that the batch reads
// that tier's old runs, not every older run of every tier.
func retentionBatch(tier string) string {
	where := `created_at < ?1 AND state NOT IN ('queued', 'running')`
	if tier != "" {
		where = `tier = ?3 AND ` + where + ` AND created_at >= (SELECT min(created_at) FROM runs WHERE tier = ?3)`
	}
	return `SELECT id FROM runs WHERE ` + where + ` ORDER BY created_at LIMIT ?2`
}

// retentionArgs are the arguments of retentionBatch's SQL.
func retentionArgs(before int64, batch int, tier string) []any {
	if tier == "" {
		return []any{before, batch}
	}
	return []any{before, batch, tier}
}

// DailyRuns returns the caller's executed runs per UTC day, by status, with
// duration percentiles. The durations of a day are read and ranked here:
// a caller's runs of 90 days are bounded by its daily quota.
func (db *DB) DailyRuns(ctx context.Context, now time.Time, days int) ([]wasmwiz.DailyRuns, error) {
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	first, out, err := dailySkeleton(now, days)
	if err != nil {
		return nil, err
	}
	rows, err := db.reader.QueryContext(ctx, `SELECT (created_at - ?1) / 86400000, status, duration_ms FROM runs
		WHERE user_id = ?2 AND created_at >= ?1 AND created_at < ?3 AND status <> ''
		ORDER BY 1, duration_ms`, ms(first), caller.ID, ms(first.AddDate(0, 0, days)))
	if err != nil {
		return nil, dbError(err, "daily runs")
	}
	defer rows.Close()
	durs := make([][]float64, days)
	for rows.Next() {
		var i int
		var st string
		var d float64
		if err := rows.Scan(&i, &st, &d); err != nil {
			return nil, dbError(err, "daily runs")
		}
		if i >= 0 && i < days {
			out[i].ByStatus[wasmwiz.Status(st)]++
			durs[i] = append(durs[i], d)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, dbError(err, "daily runs")
	}
	fillPercentiles(out, durs)
	return out, nil
}

// dailySkeleton returns the first day of the days ending with now's, and
// one empty DailyRuns per day.
func dailySkeleton(now time.Time, days int) (time.Time, []wasmwiz.DailyRuns, error) {
	if days < 1 || days > 90 {
		return time.Time{}, nil, wasmwiz.Errorf(wasmwiz.EINVALID, "days must be between 1 and 90")
	}
	first := dayStart(now).AddDate(0, 0, 1-days)
	out := make([]wasmwiz.DailyRuns, days)
	for i := range out {
		out[i] = wasmwiz.DailyRuns{Day: first.AddDate(0, 0, i).Format("2006-01-02"), ByStatus: map[wasmwiz.Status]int64{}}
	}
	return first, out, nil
}

func fillPercentiles(out []wasmwiz.DailyRuns, durs [][]float64) {
	for i, d := range durs {
		out[i].P50DurationMS = wasmwiz.Percentile(d, 50)
		out[i].P95DurationMS = wasmwiz.Percentile(d, 95)
		out[i].P99DurationMS = wasmwiz.Percentile(d, 99)
	}
}
