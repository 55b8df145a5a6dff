package sqlite

import (
	"context"
	"time"
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
