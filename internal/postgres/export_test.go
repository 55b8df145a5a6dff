package postgres

import (
	"context"
	"fmt"

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

// MigrationVersion returns the version of the migration NNNN_name.sql, 0
// when there is none, for tests of one migration.
func (db *DB) MigrationVersion(name string) int {
	steps, err := migrations()
	if err != nil {
		return 0
	}
	return migration.Version(steps, name)
}

// LeaveModuleForTest stores a user owner and its module id with the first
// migration's columns only, as an older version wrote them, for tests of
// later migrations.
func (db *DB) LeaveModuleForTest(ctx context.Context, id string, owner int64, inspection string) error {
	if _, err := db.pool.Exec(ctx, `INSERT INTO users (id, email, role, tier) VALUES ($1, $2, 'user', 'free')`,
		owner, fmt.Sprintf("u%d@example.com", owner)); err != nil {
		return err
	}
	_, err := db.pool.Exec(ctx, `INSERT INTO modules (id, owner_id, name, description, sha256, size_bytes, wasm, inspection, public, created_at)
		VALUES ($1, $2, 'old', '', 'ab', 4, '\\x0061736d', $3, false, now())`, id, owner, inspection)
	return err
}
