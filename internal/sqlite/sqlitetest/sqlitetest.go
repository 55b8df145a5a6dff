// Package sqlitetest gives tests a migrated SQLite store of their own, as
// pgtest gives them a PostgreSQL schema. It is imported by tests only.
package sqlitetest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/mock"
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
		func(context.Context, any, int) error { return nil }); err != nil {
		t.Fatal(err)
	}
	return rec
}

// TierUser stores in db a tier named name, the free tier's limits as
// change leaves them, and a user of it, and returns the user and a context
// acting as it.
func TierUser(t testing.TB, db *sqlite.DB, name string, change func(*wasmwiz.Tier)) (*wasmwiz.User, context.Context) {
	t.Helper()
	tier := *wasmwiz.DefaultTiers()[0]
	tier.Name = name
	change(&tier)
	if err := db.PutTier(wasmwiz.SystemContext(context.Background()), &tier); err != nil {
		t.Fatal(err)
	}
	return user(t, db, name+"@example.com", name)
}

// User stores in db a user of the free tier with email, and returns it and
// a context acting as it.
func User(t testing.TB, db *sqlite.DB, email string) (*wasmwiz.User, context.Context) {
	t.Helper()
	return user(t, db, email, wasmwiz.TierFree)
}

func user(t testing.TB, db *sqlite.DB, email, tier string) (*wasmwiz.User, context.Context) {
	t.Helper()
	u := &wasmwiz.User{Email: email, Tier: tier}
	if err := db.CreateUser(wasmwiz.SystemContext(context.Background()), u); err != nil {
		t.Fatal(err)
	}
	return u, wasmwiz.NewContextWithUser(context.Background(), u)
}

// Recorder is a UsageRecorder that writes each record into db at once, as
// the usage writer would a moment later.
func Recorder(t testing.TB, db *sqlite.DB) *mock.UsageRecorder {
	return &mock.UsageRecorder{RecordFn: func(r *wasmwiz.UsageRecord) {
		if err := db.CreateRuns(context.Background(), []*wasmwiz.UsageRecord{r}); err != nil {
			t.Errorf("CreateRuns: %v", err)
		}
	}}
}
