// Package sqlitetest gives tests a migrated SQLite store of their own, as
// pgtest gives them a PostgreSQL schema. It is imported by tests only.
package sqlitetest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/sqlite"
)

// Open returns a migrated SQLite store in a file of the test's temporary
// directory, closed when the test ends.
func Open(t testing.TB) *sqlite.DB {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "wasmwiz.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return db
}

// QueuedRun queues a background run of ctx's user in db (its module a
// placeholder, no job enqueued) and returns its record.
func QueuedRun(t testing.TB, ctx context.Context, db *sqlite.DB) *wasmwiz.UsageRecord {
	t.Helper()
	u := wasmwiz.UserFromContext(ctx)
	rec := &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(time.Now()), Tier: u.Tier, CreatedAt: time.Now(),
		RunDetail: wasmwiz.RunDetail{Async: true}}
	if err := db.QueueRun(ctx, rec, &wasmwiz.RunInput{Wasm: []byte("\x00asm")}, 10,
		func(context.Context, any) error { return nil }); err != nil {
		t.Fatal(err)
	}
	return rec
}
