package main

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/postgres/pgtest"
	"github.com/wasmwiz/wasmwiz/internal/tcpproxy"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestServeSharedRedisLimit: two serve replicas on one database and one
// Redis share one user's per-minute quota exactly.
func TestServeSharedRedisLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := backends[1].env(t) // shared by both replicas
	prefix := randomPrefix()
	a := startServe(t, serveEnv(t, db), ServeOptions{RedisPrefix: prefix})
	b := startServe(t, serveEnv(t, db), ServeOptions{RedisPrefix: prefix})
	_, _, key := a.newTierUser("five", func(tr *wasmwiz.Tier) { tr.RunsPerMinute = 5 })
	ua, ub := a.client(key), b.client(key)
	hello := testmodule.Read(t, "hello.wasm")

	// Alternate replicas: the remaining count goes down across both.
	replicas := []*client.Client{ua, ub, ua, ub, ua}
	for i, c := range replicas {
		ex, err := c.ExecuteDetail(ctx, &client.ExecuteRequest{Wasm: hello})
		if err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		if ex.RateLimit.Remaining != int64(4-i) {
			t.Fatalf("run %d: remaining %d, want %d (the replicas do not share counts)", i+1, ex.RateLimit.Remaining, 4-i)
		}
	}
	for name, c := range map[string]*client.Client{"a": ua, "b": ub} {
		_, err := c.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
		wantCode(t, "sixth run on replica "+name, err, wasmwiz.ERATELIMIT)
	}
	// A tier change made through replica a applies to the next request on
	// replica b: one more run, then the new limit.
	a.putTier(testTier("five", func(tr *wasmwiz.Tier) { tr.RunsPerMinute = 6 }))
	ex, err := ub.ExecuteDetail(ctx, &client.ExecuteRequest{Wasm: hello})
	if err != nil || ex.RateLimit.Limit != 6 || ex.RateLimit.Remaining != 0 {
		t.Fatalf("on b after the tier change on a: %+v, %v", ex, err)
	}
	_, err = ua.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
	wantCode(t, "seventh run", err, wasmwiz.ERATELIMIT)
	wantNoFallback(t, a, b)
}

// TestServeRedisOutage: Redis goes away mid-test (a TCP proxy in front of
// it stops): no request fails, the in-memory fallback decides, /readyz
// (redis and cache checks) and the metrics say so; a key revoked on a
// second replica during the outage is refused here; when Redis is back,
// Redis decides again.
func TestServeRedisOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, redisURL := tcpproxy.ForURL(t, testenv.RedisURL(t))
	env := serveEnv(t, postgresEnv(t, redisURL))
	opts := ServeOptions{RedisPrefix: randomPrefix()}
	s := startServe(t, env, opts)
	other := startServe(t, env, opts) // the replica where the key is revoked
	user, _, _ := s.newUser(wasmwiz.TierPro)
	doomed, _, doomedKey := s.newUser(wasmwiz.TierPro)
	hello := testmodule.Read(t, "hello.wasm")
	run := func(what string) {
		t.Helper()
		res, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
		if err != nil || res.Status != api.StatusOK {
			t.Fatalf("%s: %+v, %v", what, res, err)
		}
	}
	for i := 0; i < 3; i++ {
		run("with Redis up")
	}

	if st := s.srv.LimiterStats(); st.Fallback != 0 || st.FallbackActive || st.Allowed != 3 {
		t.Fatalf("before the outage: %+v", st)
	}

	p.Stop()
	for i := 0; i < 5; i++ {
		run("with Redis down")
	}
	st := s.srv.LimiterStats()
	if !st.FallbackActive || st.Fallback < 5 {
		t.Fatalf("during the outage: %+v", st)
	}
	rd, err := s.client("").Ready(ctx)
	if err != nil || rd.Ready || rd.Checks["redis"] != "down" || rd.Checks["cache"] != "down" || rd.Checks["database"] != "ok" {
		t.Fatalf("/readyz during the outage: %+v, %v", rd, err)
	}
	// Revoked on the other replica while Redis is away: s, which cached
	// the key during the outage, refuses it soon after (the replicas read
	// the database's cache epoch while Redis cannot carry it, and cached
	// entries live at most DefaultFallbackMaxAge meanwhile).
	if _, err := doomed.Execute(ctx, &client.ExecuteRequest{Wasm: hello}); err != nil {
		t.Fatalf("the doomed key during the outage: %v", err)
	}
	keys, _, err := other.client(doomedKey).ListKeys(ctx, false, client.Page{})
	if err != nil || len(keys) != 1 {
		t.Fatalf("ListKeys: %v, %v", keys, err)
	}
	if err := other.client(doomedKey).RevokeKey(ctx, keys[0].ID); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the key revoked on the other replica to be refused here", func() bool {
		_, err := doomed.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
		return codeOf(err) == wasmwiz.EUNAUTHORIZED
	})
	metrics, err := s.client("").Metrics(ctx)
	if err != nil || !strings.Contains(metrics, "wasmwiz_ratelimit_fallback_active 1") || !strings.Contains(metrics, "wasmwiz_ratelimit_fallbacks_total 1") {
		t.Fatalf("metrics during the outage lack the fallback: %v", err)
	}

	p.Start()
	testenv.WaitFor(t, "Redis to decide again", func() bool {
		run("with Redis back")
		return !s.srv.LimiterStats().FallbackActive
	})
	before := s.srv.LimiterStats().Fallback
	run("after the outage")
	if st := s.srv.LimiterStats(); st.Fallback != before || st.FallbackActive {
		t.Fatalf("after the outage the fallback still decides: %+v", st)
	}
	// /readyz answers from its last round for a second.
	testenv.WaitFor(t, "/readyz to be ready after the outage", func() bool {
		rd, err := s.client("").Ready(ctx)
		return err == nil && rd.Ready && rd.Checks["cache"] == "ok"
	})
	if m, _ := s.client("").Metrics(ctx); !strings.Contains(m, "wasmwiz_ratelimit_fallback_active 0") {
		t.Fatalf("metrics after the outage still show the fallback")
	}
	if res, _ := testenv.Do(t, http.MethodGet, s.url+"/healthz", "", "", nil); res.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %d", res.StatusCode)
	}
}

// TestServeDatabaseOutage: PostgreSQL goes away (a proxy in front of it
// stops): /readyz says which dependency is down, requests answer 503
// EUNAVAILABLE (not 401 or 500), and everything works again when it is back.
func TestServeDatabaseOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, databaseURL := tcpproxy.ForURL(t, pgtest.Schema(t))
	s := startServe(t, serveEnv(t, map[string]string{"WASMWIZ_DATABASE_URL": databaseURL}), ServeOptions{})
	user, _, _ := s.newUser(wasmwiz.TierBasic)
	hello := testmodule.Read(t, "hello.wasm")
	if _, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: hello}); err != nil {
		t.Fatalf("before the outage: %v", err)
	}

	p.Stop()
	rd, err := s.client("").Ready(ctx)
	if err != nil || rd.Ready || rd.Checks["database"] != "down" || rd.Checks["workers"] != "ok" {
		t.Fatalf("/readyz with the database down: %+v, %v", rd, err)
	}
	_, err = user.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
	wantCode(t, "execute with the database down", err, wasmwiz.EUNAVAILABLE)
	if client.StatusCode(err) != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", client.StatusCode(err))
	}
	if err := s.client("").Health(ctx); err != nil {
		t.Fatalf("/healthz with the database down: %v (the process is alive)", err)
	}

	p.Start()
	testenv.WaitFor(t, "the database to be back", func() bool {
		rd, err := s.client("").Ready(ctx)
		return err == nil && rd.Ready
	})
	res, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
	if err != nil || res.Status != api.StatusOK {
		t.Fatalf("after the outage: %+v, %v", res, err)
	}
	testenv.WaitFor(t, "the runs to be written", func() bool {
		_, total, err := user.ListRuns(ctx, client.RunQuery{Status: api.StatusOK})
		return err == nil && total.Count == 2
	})
}
