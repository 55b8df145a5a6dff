// Package pgtest gives tests a PostgreSQL schema of their own, and a
// migrated store in one, as sqlitetest gives them a SQLite store. It reads the
// server from WASMWIZ_TEST_POSTGRES_URL (internal/testenv); without it the
// test is skipped and says why, unless WASMWIZ_TEST_REQUIRE_SERVICES=1, when
// it fails.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "wwtest_" + hex.EncodeToString(b[:])

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Fatalf("connect to WASMWIZ_TEST_POSTGRES_URL: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE SCHEMA `+name); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, server)
		if err != nil {
			t.Errorf("drop schema %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP SCHEMA `+name+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return WithSearchPath(t, server, name)
}

// Open returns a migrated store in a schema of its own (Schema), closed
// when the test ends.
func Open(t testing.TB) *postgres.DB {
	t.Helper()
	ctx := context.Background()
	db, err := postgres.Open(ctx, Schema(t))
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
	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("WASMWIZ_TEST_POSTGRES_URL is not a URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("synchronous_commit", "off")
	u.RawQuery = q.Encode()
	return u.String()
}
