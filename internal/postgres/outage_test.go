package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/postgres/pgtest"
	"github.com/wasmwiz/wasmwiz/internal/tcpproxy"
)

// TestDatabaseGoesAwayAndComesBack: while the database is unreachable every
// method answers EUNAVAILABLE (a key is never "invalid" because the
// database is down), and once it is back the same store works again
// without a restart.
func TestDatabaseGoesAwayAndComesBack(t *testing.T) {
	t.Parallel()
	direct := pgtest.Schema(t)
	openURL(t, direct, true)
	proxy := tcpproxy.New(t, targetOf(t, direct))
	db := openURL(t, viaProxy(t, direct, proxy), false)
	ctx := context.Background()
	u, uctx := mustUser(t, db, "u@example.com", wasmwiz.RoleUser)
	_, plain, err := db.CreateAPIKey(uctx, u.ID, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	run := func(i int) *wasmwiz.UsageRecord {
		return &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(t0), UserID: u.ID, Status: wasmwiz.StatusOK, CreatedAt: t0.Add(time.Duration(i))}
	}

	proxy.Stop()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	checks := []struct {
		name string
		call func() error
	}{
		{"Ping", func() error { return db.Ping(tctx) }},
		{"Authenticate", func() error { _, _, err := db.Authenticate(tctx, plain); return err }},
		{"CreateRuns", func() error { return db.CreateRuns(tctx, []*wasmwiz.UsageRecord{run(1)}) }},
		{"FindRuns", func() error { _, _, err := db.FindRuns(uctx, wasmwiz.RunFilter{}); return err }},
		{"CountUsers", func() error { _, err := db.CountUsers(tctx); return err }},
		{"Migrate", func() error { return db.Migrate(tctx) }},
	}
	for _, c := range checks {
		wantCode(t, c.call(), wasmwiz.EUNAVAILABLE, c.name+" while the database is away")
	}

	proxy.Start()
	if err := db.Ping(ctx); err != nil {
		t.Fatalf("Ping after the database came back: %v", err)
	}
	if _, _, err := db.Authenticate(ctx, plain); err != nil {
		t.Fatalf("Authenticate after the database came back: %v", err)
	}
	if err := db.CreateRuns(ctx, []*wasmwiz.UsageRecord{run(2), run(3)}); err != nil {
		t.Fatalf("CreateRuns after the database came back: %v", err)
	}
	runs, total, err := db.FindRuns(uctx, wasmwiz.RunFilter{})
	if err != nil || total != 2 || len(runs) != 2 {
		t.Fatalf("FindRuns after the outage: %d runs (total %d), %v; want the 2 written after it", len(runs), total, err)
	}
}
