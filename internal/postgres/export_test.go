package postgres

import (
	"context"

	"github.com/wasmwiz/wasmwiz/internal/migration"
)

// SetCopyThreshold sets the batch size from which db's CreateRuns uses COPY,
// so that tests and benchmarks reach both insert paths. Call it before the
// store is used.
func SetCopyThreshold(db *DB, n int) { db.copyThreshold = n }

// MigrateWithExtra migrates db with the embedded migrations followed by one
// more, version 1000, with the given SQL: for tests of a failing migration.
func MigrateWithExtra(ctx context.Context, db *DB, sql string) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	return db.migrate(ctx, append(ms, migration.Step{Version: 1000, Name: "1000_extra.sql", SQL: sql}), 0)
}

// OutputChunksForTest counts the output pieces the heartbeats of run id
// appended, for the store suite.
func (db *DB) OutputChunksForTest(ctx context.Context, id string) (int, error) {
	var n int
	err := db.pool.QueryRow(ctx, `SELECT count(*) FROM run_output_chunks WHERE run_id = $1`, id).Scan(&n)
	return n, err
}

// LeaveOutputChunkForTest stores an output piece of run id as no method
// does (whatever its state), for the store suite.
func (db *DB) LeaveOutputChunkForTest(ctx context.Context, id string) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO run_output_chunks (run_id, stream, byte_offset, data) VALUES ($1, 'stdout', 0, 'left')`, id)
	return err
}
