package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/postgres/pgtest"
)

// adminBackends are the databases the admin commands are tested on: each
// returns a WASMWIZ_DATABASE_URL of a fresh, empty database.
var adminBackends = []struct {
	name string
	url  func(t *testing.T) string
}{
	{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "data", "wasmwiz.db") }},
	{"postgres", func(t *testing.T) string { return pgtest.Schema(t) }},
}

// cli runs wasmwiz with WASMWIZ_DATABASE_URL=dbURL and returns its exit
// status, stdout and stderr.
type cli struct {
	t     *testing.T
	dbURL string
}

func (c cli) run(args ...string) (int, string, string) {
	c.t.Helper()
	return runMain(args, "", map[string]string{"WASMWIZ_DATABASE_URL": c.dbURL, "WASMWIZ_DATA_DIR": c.t.TempDir()})
}

// ok runs args, wants exit status 0 and returns stdout.
func (c cli) ok(args ...string) string {
	c.t.Helper()
	code, out, errOut := c.run(args...)
	if code != 0 {
		c.t.Fatalf("wasmwiz %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// fails runs args and wants exit status code and stderr containing want.
func (c cli) fails(code int, want string, args ...string) {
	c.t.Helper()
	got, out, errOut := c.run(args...)
	if got != code || !strings.Contains(errOut, want) {
		c.t.Fatalf("wasmwiz %s: exit %d, stderr %q (stdout %q); want exit %d and %q",
			strings.Join(args, " "), got, errOut, out, code, want)
	}
}

var keyPattern = regexp.MustCompile(`\bww_[0-9A-Za-z]{32,}\b`)

// store opens the database the CLI works on, as the system.
func (c cli) store() Store {
	c.t.Helper()
	cfg, err := LoadConfig(func(k string) string {
		if k == "WASMWIZ_DATABASE_URL" {
			return c.dbURL
		}
		return ""
	})
	if err != nil {
		c.t.Fatal(err)
	}
	s, err := OpenStore(context.Background(), cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { s.Close() })
	return s
}

// TestAdminCommands drives migrate, users, keys and tiers through Main on
// each store and checks what they did in the database itself.
func TestAdminCommands(t *testing.T) {
	t.Parallel()
	for _, b := range adminBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			c := cli{t: t, dbURL: b.url(t)}
			if out := c.ok("migrate"); !strings.Contains(out, "up to date") {
				t.Fatalf("migrate printed %q", out)
			}
			c.ok("migrate") // again: nothing to do, no error
			s := c.store()
			ctx := context.Background()
			sys := wasmwiz.SystemContext(ctx)

			// An admin, with a key printed once.
			out := c.ok("users", "create", "--admin", "--email", "Root@Example.com")
			adminKey := keyPattern.FindString(out)
			if adminKey == "" || !strings.Contains(out, "root@example.com") {
				t.Fatalf("users create --admin printed no key or email:\n%s", out)
			}
			u, k, err := s.Authenticate(ctx, adminKey)
			if err != nil || !u.IsAdmin() {
				t.Fatalf("printed admin key: user %+v, %v", u, err)
			}
			if strings.Contains(c.ok("keys", "list"), adminKey) {
				t.Fatal("keys list shows a whole key")
			}

			// A user without a key, then one made for it.
			out = c.ok("users", "create", "--email", "bob@example.com", "--tier", "basic")
			if keyPattern.MatchString(out) {
				t.Fatalf("users create without --key printed a key:\n%s", out)
			}
			c.fails(1, "ECONFLICT", "users", "create", "--email", "BOB@example.com")
			c.fails(1, "EINVALID", "users", "create", "--email", "carol@example.com", "--tier", "platinum")
			c.fails(2, "--email is required", "users", "create")
			out = c.ok("keys", "create", "--user", "bob@example.com", "--name", "ci", "--expires", "720h")
			bobKey := keyPattern.FindString(out)
			bob, bk, err := s.Authenticate(ctx, bobKey)
			if err != nil || bob.Email != "bob@example.com" || bob.Tier != "basic" || bk.Name != "ci" || bk.ExpiresAt == nil {
				t.Fatalf("printed key of bob: user %+v key %+v, %v", bob, bk, err)
			}
			c.fails(1, "ENOTFOUND", "keys", "create", "--user", "nobody@example.com")

			list := c.ok("users", "list")
			for _, want := range []string{"root@example.com", "bob@example.com", "2 of 2 users"} {
				if !strings.Contains(list, want) {
					t.Fatalf("users list lacks %q:\n%s", want, list)
				}
			}
			if list := c.ok("keys", "list", "--user", "bob@example.com"); !strings.Contains(list, bk.Prefix) ||
				strings.Contains(list, k.Prefix) {
				t.Fatalf("keys list --user bob:\n%s", list)
			}

			// Tiers: create one from flags, move bob onto it, change it.
			c.ok("tiers", "set", "team", "--runs-per-minute", "42", "--memory", "64MiB", "--timeout", "1500ms", "--concurrent", "3")
			c.fails(1, "EINVALID", "tiers", "set", "team", "--memory", "1KiB")
			c.fails(2, "invalid value", "tiers", "set", "team", "--memory", "lots")
			team, err := s.FindTier(sys, "team")
			if err != nil {
				t.Fatal(err)
			}
			free := wasmwiz.DefaultTiers()[0]
			if team.RunsPerMinute != 42 || team.MaxMemoryBytes != 64*wasmwiz.MiB || team.Timeout.Milliseconds() != 1500 ||
				team.MaxConcurrent != 3 || team.RunsPerDay != free.RunsPerDay {
				t.Fatalf("tier team = %+v", team)
			}
			if list := c.ok("tiers", "list"); !strings.Contains(list, "team") || !strings.Contains(list, "enterprise") {
				t.Fatalf("tiers list:\n%s", list)
			}
			c.ok("users", "set-tier", "bob@example.com", "team")
			c.fails(1, "EINVALID", "users", "set-tier", "bob@example.com", "platinum")
			c.ok("tiers", "set", "--runs-per-day", "99", "team") // flags before the name work too
			bob, _, err = s.Authenticate(ctx, bobKey)
			if err != nil || bob.Tier != "team" {
				t.Fatalf("bob after set-tier: %+v, %v", bob, err)
			}
			if team, err = s.FindTier(sys, "team"); err != nil || team.RunsPerDay != 99 || team.RunsPerMinute != 42 {
				t.Fatalf("tier team after a second set: %+v, %v", team, err)
			}

			// Revoking and disabling end authentication.
			c.ok("keys", "revoke", itoa(bk.ID))
			if _, _, err := s.Authenticate(ctx, bobKey); codeOf(err) != wasmwiz.EUNAUTHORIZED {
				t.Fatalf("revoked key authenticates: %v", err)
			}
			c.fails(1, "ENOTFOUND", "keys", "revoke", "999999")
			c.fails(1, "EINVALID", "keys", "revoke", "bob")
			out = c.ok("users", "create", "--key", "--email", "dave@example.com")
			daveKey := keyPattern.FindString(out)
			dave, _, err := s.Authenticate(ctx, daveKey)
			if err != nil || dave.IsAdmin() {
				t.Fatalf("dave: %+v, %v", dave, err)
			}
			c.ok("users", "disable", itoa(dave.ID))
			if _, _, err := s.Authenticate(ctx, daveKey); codeOf(err) != wasmwiz.EUNAUTHORIZED {
				t.Fatalf("disabled user's key authenticates: %v", err)
			}
			c.ok("users", "enable", "dave@example.com")
			if _, _, err := s.Authenticate(ctx, daveKey); err != nil {
				t.Fatalf("enabled user's key: %v", err)
			}
			c.fails(1, "ENOTFOUND", "users", "disable", "nobody@example.com")
			// The only admin stays: disabling it is refused, saying why.
			c.fails(1, "last active admin", "users", "disable", "root@example.com")
			c.fails(2, "unknown subcommand", "keys", "frob")
			c.fails(2, "want 1 argument", "users", "disable")
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestAdminCommandErrors: refusals that need no database, and a database
// that does not answer, whose password never reaches the output.
func TestAdminCommandErrors(t *testing.T) {
	t.Parallel()
	down := "postgres://ops:s3cret@127.0.0.1:1/wasmwiz?sslmode=disable&connect_timeout=2"
	tests := []struct {
		name  string
		dbURL string
		args  []string
		code  int
		want  string
	}{
		{"migrate, database down", down, []string{"migrate"}, 1, "EUNAVAILABLE"},
		{"users list, database down", down, []string{"users", "list"}, 1, "EUNAVAILABLE"},
		{"migrate takes no arguments", down, []string{"migrate", "now"}, 2, `unexpected argument "now"`},
		{"users without subcommand", down, []string{"users"}, 2, "usage:"},
		{"keys create without --user", down, []string{"keys", "create"}, 2, "--user is required"},
		{"keys create with a bad lifetime", down, []string{"keys", "create", "--user", "1", "--expires", "soon"}, 1, "EINVALID"},
		{"tiers set without a name", down, []string{"tiers", "set", "--memory", "1MiB"}, 2, "name one tier"},
		{"tiers set with a bad size", down, []string{"tiers", "set", "x", "--memory", "lots"}, 2, "invalid value"},
		{"unsupported database URL", "mysql://db/x", []string{"users", "list"}, 1, "WASMWIZ_DATABASE_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := cli{t: t, dbURL: tt.dbURL}
			code, out, errOut := c.run(tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, errOut, tt.code, tt.want)
			}
			if strings.Contains(out+errOut, "s3cret") {
				t.Fatalf("the database password was printed: %q %q", out, errOut)
			}
		})
	}
}

// TestAdminCommandsNeedADatabase: users, keys and tiers never create a
// database: where none is, they fail naming the path and the variables that
// choose it, and leave nothing behind. migrate creates it; then they work.
func TestAdminCommandsNeedADatabase(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "nowhere")
	vars := map[string]string{"WASMWIZ_DATA_DIR": dir}
	for _, args := range [][]string{{"users", "list"}, {"keys", "list"}, {"tiers", "list"},
		{"keys", "create", "--user", "admin@localhost"}, {"users", "create", "--email", "a@example.com"}} {
		code, out, errOut := runMain(args, "", vars)
		want := "no WasmWiz database at " + filepath.Join(dir, "wasmwiz.db")
		if code != 1 || out != "" || !strings.Contains(errOut, want) || !strings.Contains(errOut, "WASMWIZ_DATA_DIR") ||
			!strings.Contains(errOut, "WASMWIZ_DATABASE_URL") || !strings.Contains(errOut, "wasmwiz migrate") {
			t.Fatalf("%s on no database: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s created %s: %v", strings.Join(args, " "), dir, err)
		}
	}
	// An explicit URL is named as such.
	file := filepath.Join(t.TempDir(), "other.db")
	code, _, errOut := runMain([]string{"users", "list"}, "", map[string]string{"WASMWIZ_DATABASE_URL": file})
	if code != 1 || !strings.Contains(errOut, file) || strings.Contains(errOut, "WASMWIZ_DATA_DIR") {
		t.Fatalf("users list on a missing WASMWIZ_DATABASE_URL: exit %d, stderr %q", code, errOut)
	}
	// An empty file is not a WasmWiz database either.
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runMain([]string{"users", "list"}, "", map[string]string{"WASMWIZ_DATABASE_URL": file}); code != 1 ||
		!strings.Contains(errOut, "no WasmWiz schema") {
		t.Fatalf("users list on an empty file: exit %d, stderr %q", code, errOut)
	}
	if code, out, errOut := runMain([]string{"migrate"}, "", vars); code != 0 || !strings.Contains(out, "up to date") {
		t.Fatalf("migrate: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, out, errOut := runMain([]string{"users", "list"}, "", vars); code != 0 || !strings.Contains(out, "0 of 0 users") {
		t.Fatalf("users list after migrate: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestAdminCommandsNeedASchema: on PostgreSQL, a database without the
// WasmWiz schema is refused the same way, and left without one.
func TestAdminCommandsNeedASchema(t *testing.T) {
	t.Parallel()
	c := cli{t: t, dbURL: pgtest.Schema(t)}
	c.fails(1, "no WasmWiz database at postgres://", "users", "list")
	c.fails(1, "it has no WasmWiz schema", "keys", "list")
	s := c.store()
	if v, err := s.MigrationVersions(context.Background()); err == nil && len(v) > 0 {
		t.Fatalf("an admin command migrated the empty schema: versions %v", v)
	}
	c.ok("migrate")
	if out := c.ok("users", "list"); !strings.Contains(out, "0 of 0 users") {
		t.Fatalf("users list after migrate:\n%s", out)
	}
}
