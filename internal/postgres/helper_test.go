package postgres_test

import (
	"context"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/postgres"
	"github.com/wasmwiz/wasmwiz/internal/postgres/pgtest"
)

// newDB returns a migrated store in a schema of its own, closed when the
// test ends.
func newDB(t testing.TB) *postgres.DB {
	t.Helper()
	return openURL(t, pgtest.Migrated(t), true)
}

// openReplicas opens n stores on one fresh schema, each with a pool of its own,
// as the replicas of a deployment are; with migrate the first of them
// migrates the schema first.
func openReplicas(t testing.TB, n int, migrate bool) []*postgres.DB {
	t.Helper()
	url := pgtest.Schema(t)
	dbs := make([]*postgres.DB, n)
	for i := range dbs {
		dbs[i] = openURL(t, url, migrate && i == 0)
	}
	return dbs
}

func openURL(t testing.TB, url string, migrate bool) *postgres.DB {
	t.Helper()
	ctx := context.Background()
	db, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	if migrate {
		if err := db.Migrate(ctx); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
	return db
}

var sys = wasmwiz.SystemContext(context.Background())

func mustUser(t testing.TB, db *postgres.DB, email string, role wasmwiz.Role) (*wasmwiz.User, context.Context) {
	t.Helper()
	u := &wasmwiz.User{Email: email, Role: role, Tier: wasmwiz.TierFree}
	if err := db.CreateUser(sys, u); err != nil {
		t.Fatalf("CreateUser(%s): %v", email, err)
	}
	return u, wasmwiz.NewContextWithUser(context.Background(), u)
}
