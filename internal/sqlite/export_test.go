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
