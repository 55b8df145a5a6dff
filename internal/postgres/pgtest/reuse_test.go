package pgtest_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/wasmwiz/wasmwiz/internal/postgres/pgtest"
)

func schemaOf(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return p.Query().Get("search_path")
}

func connect(t *testing.T, u string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func query[T any](t *testing.T, c *pgx.Conn, sql string) T {
	t.Helper()
	var v T
	if err := c.QueryRow(context.Background(), sql).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func exec(t *testing.T, c *pgx.Conn, sql string) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func exists(t *testing.T, schema string) bool {
	t.Helper()
	c := connect(t, pgtest.ServerURL(t))
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(context.Background(), `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, schema).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// TestMigratedSchemasAreReusedFresh: a schema Migrated hands out again
// holds what a new migrated one holds (the migrations' rows, sequences at
// their start) whatever its last test did to its rows; one whose last test
// changed its tables, or that a session still used, is dropped instead.
func TestMigratedSchemasAreReusedFresh(t *testing.T) {
	// What a schema holds right after its migrations.
	var tiers, epoch int64
	t.Run("fresh", func(t *testing.T) {
		c := connect(t, pgtest.Migrated(t))
		defer c.Close(context.Background())
		tiers = query[int64](t, c, `SELECT count(*) FROM tiers`)
		epoch = query[int64](t, c, `SELECT epoch FROM cache_epoch`)
		if tiers == 0 {
			t.Fatal("no tiers after the migrations")
		}
	})
	var used string
	t.Run("dirty its rows", func(t *testing.T) {
		u := pgtest.Migrated(t)
		used = schemaOf(t, u)
		c := connect(t, u)
		defer c.Close(context.Background())
		exec(t, c, `DELETE FROM tiers`) // its trigger moves the epoch on
		exec(t, c, `SELECT nextval('users_id_seq')`)
		exec(t, c, `DELETE FROM schema_migrations`)
	})
	t.Run("reused fresh", func(t *testing.T) {
		u := pgtest.Migrated(t)
		if got := schemaOf(t, u); got != used {
			t.Fatalf("schema %s, want %s again", got, used)
		}
		c := connect(t, u)
		defer c.Close(context.Background())
		if got := query[int64](t, c, `SELECT count(*) FROM tiers`); got != tiers {
			t.Errorf("%d tiers, want %d", got, tiers)
		}
		if got := query[int64](t, c, `SELECT epoch FROM cache_epoch`); got != epoch {
			t.Errorf("cache epoch %d, want %d", got, epoch)
		}
		if got := query[int64](t, c, `SELECT nextval('users_id_seq')`); got != 1 {
			t.Errorf("the users' sequence gives %d, want 1", got)
		}
		if got := query[int64](t, c, `SELECT count(*) FROM schema_migrations`); got == 0 {
			t.Error("no migrations recorded")
		}
		exec(t, c, `ALTER TABLE tiers ADD COLUMN added int`)
	})
	if exists(t, used) {
		t.Fatalf("schema %s kept after its test added a column", used)
	}
	var left *pgx.Conn
	t.Run("a session left open", func(t *testing.T) {
		u := pgtest.Migrated(t)
		used = schemaOf(t, u)
		left = connect(t, u) // still open when the test ends
	})
	defer left.Close(context.Background())
	if exists(t, used) {
		t.Fatalf("schema %s kept while a session still used it", used)
	}
}
