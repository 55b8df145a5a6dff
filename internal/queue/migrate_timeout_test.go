package queue_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/queue"
	"github.com/wasmwiz/wasmwiz/internal/sqlite"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// TestRiverMigrationsHaveNoCallTimeout: River's migrations on SQLite run
// on the store's connections, whose calls the store bounds by its call
// timeout; marked by sqlite.WithoutCallTimeout, as serve marks them, they
// complete under a call timeout of a nanosecond, and unmarked they fail
// EUNAVAILABLE (serve on a slow disk with WASMWIZ_DATABASE_TIMEOUT 1s
// failed in River's migration 007).
func TestRiverMigrationsHaveNoCallTimeout(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Patience)
	defer cancel()
	open := func(t *testing.T) *sqlite.DB {
		db, err := sqlite.OpenWith(ctx, filepath.Join(t.TempDir(), "w.db"), sqlite.Options{CallTimeout: time.Nanosecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if err := db.Migrate(ctx); err != nil {
			t.Fatalf("the store's migrations: %v", err)
		}
		return db
	}
	if err := queue.MigrateSQLite(sqlite.WithoutCallTimeout(ctx), open(t).QueueDB()); err != nil {
		t.Fatalf("River's migrations, marked: %v", err)
	}
	err := queue.MigrateSQLite(ctx, open(t).QueueDB())
	if code := wasmwiz.ErrorCode(err); code != wasmwiz.EUNAVAILABLE {
		t.Fatalf("River's migrations, unmarked: %v (code %q), want EUNAVAILABLE at the call timeout", err, code)
	}
}
