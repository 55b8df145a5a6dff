// Package pgtest gives tests a PostgreSQL schema of their own, and a
// migrated store in one, as sqlitetest gives them a SQLite store. It reads the
// server from WASMWIZ_TEST_POSTGRES_URL (internal/testenv); without it the
// test is skipped and says why, unless WASMWIZ_TEST_REQUIRE_SERVICES=1, when
// it fails.
package pgtest

import (
	"context"
	"net/url"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/postgres"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// ServerURL returns WASMWIZ_TEST_POSTGRES_URL, or skips (fails, when
// WASMWIZ_TEST_REQUIRE_SERVICES=1) the test without it.
func ServerURL(t testing.TB) string {
	t.Helper()
	return testenv.PostgresURL(t)
}

// Schema creates an empty schema with a random name, drops it (with
// everything in it) when the test ends, and returns a URL of the server
// whose connections use it as their search_path.
func Schema(t testing.TB) string {
	t.Helper()
	server := ServerURL(t)
	name := newSchema(t, server)
	t.Cleanup(func() {
		if err := dropSchema(server, name); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return WithSearchPath(t, server, name)
}

// Migrated returns the URL of a schema of its own, as Schema does, with
// every migration applied and nothing else in it. Migrating costs the
// server a third of a second of processor time, for each of hundreds of
// tests: under testenv.Run the schemas are kept and reused instead, each
// emptied and given the migrations' rows again when its test ends, and
// dropped after the tests. A schema is dropped instead of reused when a
// session still uses it, when its tables, columns, constraints, triggers
// or functions are not the migrations' (a test changed them), or when it
// cannot be emptied.
func Migrated(t testing.TB) string {
	t.Helper()
	server := ServerURL(t)
	name, err := reused.take(server)
	if err != nil {
		t.Fatalf("a migrated schema: %v", err)
	}
	t.Cleanup(func() {
		if err := reused.give(server, name); err != nil {
			t.Errorf("schema %s: %v", name, err)
		}
	})
	return WithSearchPath(t, server, name)
}

// Open returns a migrated store in a schema of its own (Migrated), closed
// when the test ends.
func Open(t testing.TB) *postgres.DB {
	t.Helper()
	ctx := context.Background()
	db, err := postgres.Open(ctx, Migrated(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return db
}

// WithSearchPath returns server with its search_path set to schema, and
// with synchronous_commit off: a test's commits are seen by every other
// session as before, but do not wait for the write-ahead log to reach the
// disk (what a crash of the server would lose, no test asks of it). A
// migration is 17 commits, made for almost every test: waiting for the
// disk made the PostgreSQL tests about a third slower.
func WithSearchPath(t testing.TB, server, schema string) string {
	t.Helper()
	if _, err := url.Parse(server); err != nil {
		t.Fatalf("WASMWIZ_TEST_POSTGRES_URL is not a URL: %v", err)
	}
	return withSearchPath(server, schema)
}

// withSearchPath is WithSearchPath for a server URL known to parse.
func withSearchPath(server, schema string) string {
	u, _ := url.Parse(server)
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("synchronous_commit", "off")
	// Migrated asks the server whether a session still uses the schema.
	q.Set("application_name", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
