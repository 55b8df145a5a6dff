package postgres_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/postgres"
	"github.com/wasmwiz/wasmwiz/internal/postgres/pgtest"
	"github.com/wasmwiz/wasmwiz/internal/storetest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// TestMigrateConcurrently starts several stores, each with its own pool, on
// one fresh schema at once, as replicas of a deployment do: every Migrate
// succeeds, each migration is recorded once and the tiers are seeded once.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	const replicas = 6
	dbs := openReplicas(t, replicas, false)
	ctx := context.Background()
	errs := make([]error, replicas)
	testenv.AtOnce(t, replicas, "the concurrent migrations", func(i int) { errs[i] = dbs[i].Migrate(ctx) })
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: Migrate: %v", i, err)
		}
	}
	versions, err := dbs[0].MigrationVersions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(versions) == 0 || versions[0] != 1 {
		t.Fatalf("recorded migrations %v, want 1 first", versions)
	}
	for i := 1; i < len(versions); i++ {
		if versions[i] != versions[i-1]+1 {
			t.Fatalf("recorded migrations %v: want each once, numbered without gaps", versions)
		}
	}
	tiers, err := dbs[1].ListTiers(sys)
	if err != nil {
		t.Fatal(err)
	}
	if len(tiers) != len(wasmwiz.DefaultTiers()) {
		t.Fatalf("%d tiers after concurrent migrations, want the %d defaults once", len(tiers), len(wasmwiz.DefaultTiers()))
	}
}

// TestMigrateProcesses starts several processes (this test binary, running
// TestMigrateChildProcess) that migrate one fresh schema at once: each
// exits successfully and every migration is recorded once.
func TestMigrateProcesses(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	const procs = 4
	testenv.Children(t, procs, "TestMigrateChildProcess", "WASMWIZ_TEST_MIGRATE_CHILD_URL="+url)
	db := openURL(t, url, false)
	versions, err := db.MigrationVersions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, v := range versions {
		if seen[v] {
			t.Fatalf("migration %d recorded twice: %v", v, versions)
		}
		seen[v] = true
	}
	if !seen[1] {
		t.Fatalf("recorded migrations %v lack 1", versions)
	}
	tiers, err := db.ListTiers(sys)
	if err != nil || len(tiers) != len(wasmwiz.DefaultTiers()) {
		t.Fatalf("%d tiers after migrating from %d processes (%v), want the defaults once", len(tiers), procs, err)
	}
}

// TestMigrateChildProcess is one process of TestMigrateProcesses; it runs
// only as that test's child.
func TestMigrateChildProcess(t *testing.T) {
	url := os.Getenv("WASMWIZ_TEST_MIGRATE_CHILD_URL")
	if url == "" {
		t.Skip("a child process of TestMigrateProcesses")
	}
	db, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
}

// TestFailedMigrationRollsBack: a migration that fails leaves nothing of
// itself behind and is not recorded, so fixing it and migrating again
// applies it whole.
func TestFailedMigrationRollsBack(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	db := openURL(t, url, true)
	ctx := context.Background()
	err := postgres.MigrateWithExtra(ctx, db, `CREATE TABLE half_done (id int); SELECT 1/0`)
	storetest.WantCode(t, err, wasmwiz.EINTERNAL, "a failing migration")
	// The failure released the lock: another replica's Migrate finishes.
	other := openURL(t, url, false)
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := other.Migrate(tctx); err != nil {
		t.Fatalf("another replica's Migrate after a failed one: %v", err)
	}
	var exists bool
	if err := db.Pool().QueryRow(ctx, `SELECT to_regclass('half_done') IS NOT NULL`).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatal("the failed migration's table survived: it did not run in one transaction")
	}
	versions, err := db.MigrationVersions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range versions {
		if v == 1000 {
			t.Fatalf("the failed migration was recorded: %v", versions)
		}
	}
	if err := postgres.MigrateWithExtra(ctx, db, `CREATE TABLE half_done (id int)`); err != nil {
		t.Fatalf("the fixed migration: %v", err)
	}
	if err := db.Pool().QueryRow(ctx, `SELECT to_regclass('half_done') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		t.Fatalf("the fixed migration's table: exists %v, %v", exists, err)
	}
	// The database is now ahead of the embedded migrations, as when a newer
	// binary migrated it: this binary refuses rather than guess.
	storetest.WantCode(t, db.Migrate(ctx), wasmwiz.EINTERNAL, "Migrate on a database a newer binary migrated")
}

// TestOpenErrors: a malformed URL is the caller's mistake; a database that
// does not answer is unavailable, and the password never shows in errors.
func TestOpenErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		url  string
		code string
	}{
		{"malformed", "postgres://user:s3cret@[::1:5432/db", wasmwiz.EINVALID},
		{"nobody listening", "postgres://user:s3cret@127.0.0.1:1/db?sslmode=disable&connect_timeout=2", wasmwiz.EUNAVAILABLE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db, err := postgres.Open(context.Background(), tt.url)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			storetest.WantCode(t, err, tt.code, "Open")
			if msg := wasmwiz.ErrorMessage(err); contains(msg, "s3cret") {
				t.Fatalf("error message shows the password: %q", msg)
			}
		})
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
