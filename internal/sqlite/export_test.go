package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/migration"
)

// ExecForTest runs a statement on the writer, for tests that need a state
// no method makes.
func (db *DB) ExecForTest(ctx context.Context, query string, args ...any) error {
	_, err := db.writer.ExecContext(ctx, query, args...)
	return err
}

// MigrationCount is the number of embedded migrations.
func MigrationCount() int {
	entries, _ := migrationFiles.ReadDir("migrations")
	return len(entries)
}

// WhileBusy is whileBusy, for tests.
func WhileBusy(ctx context.Context, wait time.Duration, f func() error) error {
	return whileBusy(ctx, wait, f)
}

// OutputChunksForTest counts the output pieces the heartbeats of run id
// appended, for the store suite.
func (db *DB) OutputChunksForTest(ctx context.Context, id string) (int, error) {
	var n int
	err := db.reader.QueryRowContext(ctx, `SELECT count(*) FROM run_output_chunks WHERE run_id = ?`, id).Scan(&n)
	return n, err
}

// LeaveOutputChunkForTest stores an output piece of run id as no method
// does (whatever its state), for the store suite.
func (db *DB) LeaveOutputChunkForTest(ctx context.Context, id string) error {
	return db.ExecForTest(ctx, `INSERT INTO run_output_chunks (run_id, stream, byte_offset, data) VALUES (?, 'stdout', 0, x'6c656674')`, id)
}

// MigrationVersion returns the version of the migration NNNN_name.sql, 0
// when there is none, for tests of one migration.
func (db *DB) MigrationVersion(name string) int {
	steps, err := migration.Load(migrationFiles, "migrations")
	if err != nil {
		return 0
	}
	return migration.Version(steps, name)
}

// LeaveModuleForTest stores a user owner and its module id with the first
// migration's columns only, as an older version wrote them, for tests of
// later migrations.
func (db *DB) LeaveModuleForTest(ctx context.Context, id string, owner int64, inspection string) error {
	if err := db.ExecForTest(ctx, `INSERT INTO users (id, email, role, tier, created_at) VALUES (?, ?, 'user', 'free', 0)`,
		owner, fmt.Sprintf("u%d@example.com", owner)); err != nil {
		return err
	}
	return db.ExecForTest(ctx, `INSERT INTO modules (id, owner_id, name, description, sha256, size_bytes, wasm, inspection, public, created_at)
		VALUES (?, ?, 'old', '', 'ab', 4, x'0061736d', ?, 0, 0)`, id, owner, inspection)
}

// ReadForTest reads every row of query through the readers, as a store
// method reads, and returns how many it read before it ended.
func (db *DB) ReadForTest(ctx context.Context, query string) (int, error) {
	rows, err := db.reader.QueryContext(ctx, query)
	if err != nil {
		return 0, dbError(err, "test read")
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	return n, dbError(rows.Err(), "test read")
}

// WriteForTest runs query in a write transaction, as a store method writes.
func (db *DB) WriteForTest(ctx context.Context, query string) error {
	return db.write(ctx, "test write", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, query)
		return err
	})
}

// HoldForTest takes a connection of the writer's pool (or the readers'),
// with no deadline, and keeps it until release is called: a call stuck on
// it, as one past the call timeout would be were there none.
func (db *DB) HoldForTest(writer bool) (release func(), err error) {
	p := db.reader
	if writer {
		p = db.writer
	}
	conn, err := p.db.Conn(context.Background())
	if err != nil {
		return nil, err
	}
	return func() { conn.Close() }, nil
}

// QueryPlanForTest returns the details of SQLite's EXPLAIN QUERY PLAN of
// query, one a line.
func (db *DB) QueryPlanForTest(ctx context.Context, query string, args ...any) (string, error) {
	rows, err := db.reader.QueryContext(ctx, `EXPLAIN QUERY PLAN `+query, args...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var plan string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			return "", err
		}
		plan += detail + "\n"
	}
	return plan, rows.Err()
}

// RunsPageForTest returns FindRuns' query of a page of user's runs, and
// the count of them, with their arguments.
func RunsPageForTest(user int64, filter wasmwiz.RunFilter) (page string, pageArgs []any, count string, countArgs []any) {
	q := runsQuery(user, filter)
	return q.pageSQL(), append(q.args[:len(q.args):len(q.args)], 50, 100), q.countSQL(), append(q.args, wasmwiz.MaxListTotal+1)
}

// RetentionBatchForTest returns DeleteRunsBefore's query of a batch of
// tier's runs ("": every tier's), with its arguments.
func RetentionBatchForTest(tier string) (string, []any) {
	return retentionBatch(tier), retentionArgs(0, 10, tier)
}
