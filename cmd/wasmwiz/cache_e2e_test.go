package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// warm runs req on c until the replica answered it from its cache (its
// cache hits grew), so that what the test then changes elsewhere is
// something the replica really holds: the test cannot pass by reading the
// database every time.
func warm(t *testing.T, s *e2eServer, what string, run func() error) {
	t.Helper()
	before := s.srv.CacheStats().Hits
	testenv.WaitFor(t, what+" to be served from the cache", func() bool {
		if err := run(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return s.srv.CacheStats().Hits > before
	})
}

// TestServeCacheTwoReplicas: two replicas on one PostgreSQL and one Redis
// cache keys, tiers and modules, and still every change made through one
// applies to the very next request on the other (issue 10's promises):
// a revoked key, a disabled user, a tier edited (quotas and limits), a user
// moved to another tier, a module made private, renamed or deleted.
func TestServeCacheTwoReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := backends[1].env(t) // shared by both replicas
	prefix := randomPrefix()
	// The epoch loop, which repairs lost publications, must not be what
	// makes this test pass: an hour.
	opts := ServeOptions{RedisPrefix: prefix, EpochInterval: time.Hour}
	a := startServe(t, serveEnv(t, db), opts)
	b := startServe(t, serveEnv(t, db), opts)
	admin := a.admin()
	echo := testmodule.Read(t, "echo.wasm")
	run := func(c *client.Client, stdin string) error {
		res, err := c.Execute(ctx, &client.ExecuteRequest{Wasm: echo, Stdin: []byte(stdin)})
		if err == nil && string(res.Stdout) != strings.TrimSpace(stdin) {
			t.Fatalf("echo answered %q", res.Stdout)
		}
		return err
	}

	// A change made on a to a user that b has cached applies to the user's
	// very next request on b. (The tier a user moves to is there before the
	// user is cached: only the move is new to b.)
	small := testTier("small-"+randomPrefix()[6:12], func(tr *wasmwiz.Tier) { tr.MaxStdinBytes = 4 })
	a.putTier(small)
	for _, tt := range []struct {
		name   string
		stdin  string // what the user runs, within its tier before the change
		change func(t *testing.T, c *client.Client, u *api.User)
		want   string // the code of the next request on b
	}{
		{"revoked key", "hi", func(t *testing.T, c *client.Client, _ *api.User) {
			keys, _, err := c.ListKeys(ctx, false, client.Page{})
			if err != nil || len(keys) != 1 {
				t.Fatalf("ListKeys: %v, %v", keys, err)
			}
			if err := c.RevokeKey(ctx, keys[0].ID); err != nil {
				t.Fatal(err)
			}
		}, wasmwiz.EUNAUTHORIZED},
		{"disabled user", "hi", func(t *testing.T, _ *client.Client, u *api.User) {
			yes := true
			if _, err := admin.AdminUpdateUser(ctx, u.ID, api.UserUpdate{Disabled: &yes}); err != nil {
				t.Fatal(err)
			}
		}, wasmwiz.EUNAUTHORIZED},
		{"user moved to another tier", "hello", func(t *testing.T, _ *client.Client, u *api.User) {
			if _, err := admin.AdminUpdateUser(ctx, u.ID, api.UserUpdate{Tier: &small.Name}); err != nil {
				t.Fatal(err)
			}
		}, wasmwiz.ETOOLARGE},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, u, key := a.newUser(wasmwiz.TierPro)
			ub := b.client(key)
			warm(t, b, "the user on b", func() error { return run(ub, tt.stdin) })
			tt.change(t, c, u)
			wantCode(t, "the next request on b after the change on a", run(ub, tt.stdin), tt.want)
		})
	}

	t.Run("tier edited", func(t *testing.T) {
		tier := testTier("edited-"+randomPrefix()[6:12], func(tr *wasmwiz.Tier) { tr.MaxStdinBytes = 8 })
		a.putTier(tier)
		_, _, key := a.newUser(tier.Name)
		ub := b.client(key)
		warm(t, b, "the tier on b", func() error { return run(ub, "short") })
		wantCode(t, "stdin over the tier's 8 bytes", run(ub, "more than eight bytes"), wasmwiz.ETOOLARGE)

		// Raised stdin: the very next request on b may send more.
		tier.Limits["max_stdin_bytes"], tier.Limits["runs_per_minute"] = 64, 1000
		a.putTier(tier)
		ex, err := ub.ExecuteDetail(ctx, &client.ExecuteRequest{Wasm: echo, Stdin: []byte("more than eight bytes")})
		if err != nil || ex.RateLimit.Limit != 1000 {
			t.Fatalf("the next request on b after the tier was edited on a: %+v, %v", ex, err)
		}
		tier.Limits["runs_per_minute"] = 3
		a.putTier(tier)
		ex, err = ub.ExecuteDetail(ctx, &client.ExecuteRequest{Wasm: echo, Stdin: []byte("x")})
		if err == nil && ex.RateLimit.Limit != 3 {
			t.Fatalf("on b after the quota was lowered on a: limit %d, want 3", ex.RateLimit.Limit)
		}
		wantCode(t, "on b after the quota was lowered below the runs made", err, wasmwiz.ERATELIMIT)
	})

	t.Run("module made private, renamed, deleted", func(t *testing.T) {
		owner, _, _ := a.newUser(wasmwiz.TierPro)
		_, _, otherKey := a.newUser(wasmwiz.TierPro)
		yes, no := true, false
		m, err := owner.CreateModule(ctx, client.ModuleUpload{Wasm: testmodule.Read(t, "args_env.wasm"), Name: "first.wasm", Public: true})
		if err != nil {
			t.Fatal(err)
		}
		ob := b.client(otherKey)
		runStored := func() (string, error) {
			ex, err := ob.ExecuteModule(ctx, m.ID, &client.ExecuteRequest{})
			if err != nil {
				return "", err
			}
			return string(ex.Result.Stdout), nil
		}
		warm(t, b, "the public module on b", func() error { _, err := runStored(); return err })
		name := "second.wasm"
		if _, err := owner.UpdateModule(ctx, m.ID, api.ModuleUpdate{Name: &name}); err != nil {
			t.Fatal(err)
		}
		if out, err := runStored(); err != nil || !strings.Contains(out, "argv[0]="+name) {
			t.Fatalf("on b after the module was renamed on a: %q, %v", out, err)
		}
		if _, err := owner.UpdateModule(ctx, m.ID, api.ModuleUpdate{Public: &no}); err != nil {
			t.Fatal(err)
		}
		_, err = runStored()
		wantCode(t, "another user's next request on b, the module made private on a", err, wasmwiz.ENOTFOUND)
		if _, err := owner.UpdateModule(ctx, m.ID, api.ModuleUpdate{Public: &yes}); err != nil {
			t.Fatal(err)
		}
		if _, err := runStored(); err != nil {
			t.Fatalf("on b after the module was made public again on a: %v", err)
		}
		if err := owner.DeleteModule(ctx, m.ID); err != nil {
			t.Fatal(err)
		}
		_, err = runStored()
		wantCode(t, "the next request on b, the module deleted on a", err, wasmwiz.ENOTFOUND)
	})

	wantNoFallback(t, a, b)
}

// TestServeCacheAdminCLI: a change made with the admin CLI, which acts on
// the database and publishes the epoch to Redis itself, applies to the next
// request on a replica that cached what changed.
func TestServeCacheAdminCLI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The CLI publishes under the default key prefix: a Redis database of
	// this test's own (as TestServeProcessesShareRedis has 11).
	db := postgresEnv(t, redisDB(t, 12))
	s := startServe(t, serveEnv(t, db), ServeOptions{RedisPrefix: "wasmwiz:rl:", EpochInterval: time.Hour})
	tier := "cli-" + randomPrefix()[6:12]
	u, me, key := s.newTierUser(tier, nil)
	echo := testmodule.Read(t, "echo.wasm")
	run := func() (*client.Execution, error) {
		return u.ExecuteDetail(ctx, &client.ExecuteRequest{Wasm: echo, Stdin: []byte("hi")})
	}
	warm(t, s, "the key", func() error { _, err := run(); return err })

	cli := func(args ...string) {
		t.Helper()
		code, out, errOut := runMain(args, "", db)
		if code != 0 || strings.Contains(errOut, "note:") {
			t.Fatalf("wasmwiz %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	cli("tiers", "set", tier, "--runs-per-minute", "77")
	if ex, err := run(); err != nil || ex.RateLimit.Limit != 77 {
		t.Fatalf("the next request after `wasmwiz tiers set`: %+v, %v", ex, err)
	}
	cli("users", "disable", strconv.FormatInt(me.ID, 10))
	_, err := run()
	wantCode(t, "the next request after `wasmwiz users disable`", err, wasmwiz.EUNAUTHORIZED)
	_ = key
}

// TestServeCacheEmbedded: one replica on SQLite without Redis caches too,
// and a change through its API applies to its next request (invalidated
// in process); one made by the admin CLI on the same database within its
// epoch interval.
func TestServeCacheEmbedded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := serveEnv(t, backends[0].env(t))
	s := startServe(t, env, ServeOptions{EpochInterval: 20 * time.Millisecond})
	echo := testmodule.Read(t, "echo.wasm")
	u, _, _ := s.newUser(wasmwiz.TierPro)
	run := func(c *client.Client) error {
		_, err := c.Execute(ctx, &client.ExecuteRequest{Wasm: echo, Stdin: []byte("hi")})
		return err
	}
	warm(t, s, "the key", func() error { return run(u) })
	keys, _, err := u.ListKeys(ctx, false, client.Page{})
	if err != nil || len(keys) != 1 {
		t.Fatalf("ListKeys: %v, %v", keys, err)
	}
	if err := u.RevokeKey(ctx, keys[0].ID); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "the next request with the key revoked", run(u), wasmwiz.EUNAUTHORIZED)

	v, me, _ := s.newUser(wasmwiz.TierPro)
	warm(t, s, "another key", func() error { return run(v) })
	code, out, errOut := runMain([]string{"users", "disable", strconv.FormatInt(me.ID, 10)}, "", env)
	if code != 0 {
		t.Fatalf("wasmwiz users disable: exit %d\n%s%s", code, out, errOut)
	}
	testenv.WaitFor(t, "the user disabled by the CLI to be refused", func() bool {
		return codeOf(run(v)) == wasmwiz.EUNAUTHORIZED
	})
}
