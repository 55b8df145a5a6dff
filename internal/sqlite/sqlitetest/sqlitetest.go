// Package sqlitetest gives tests a migrated SQLite store of their own, as
// pgtest gives them a PostgreSQL schema. It is imported by tests only.
package sqlitetest

import (
	"context"
	"path/filepath"
	"testing"

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
