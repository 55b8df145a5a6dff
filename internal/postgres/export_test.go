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
