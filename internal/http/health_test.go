package http_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

func TestReadyz(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		redisErr error
		status   int
		down     string
	}{
		{name: "all up", status: 200},
		{name: "redis down", redisErr: fmt.Errorf("dial tcp: connection refused"), status: 503, down: "redis"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, func(o *wwhttp.Options) {
				o.Readiness = []wwhttp.ReadinessCheck{
					{Name: "database", Ping: func(ctx context.Context) error { return nil }},
					{Name: "redis", Ping: func(ctx context.Context) error { return tt.redisErr }},
				}
			})
			res := f.do(request{method: "GET", path: "/readyz"})
			if res.status != tt.status {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			m := res.json(t)
			checks, _ := m["checks"].(map[string]any)
			if checks["database"] != "ok" {
				t.Errorf("checks %v", checks)
			}
			if tt.down != "" {
				if checks[tt.down] != "down" || res.errorCode(t) != wasmwiz.EUNAVAILABLE ||
					!strings.Contains(string(res.body), "not ready: "+tt.down) {
					t.Errorf("answer %s", res.body)
				}
				if strings.Contains(string(res.body), "connection refused") {
					t.Error("internal detail sent")
				}
			}
		})
	}
}

// TestDrain: once the server drains for a shutdown, /readyz answers 503
// whatever its checks say, other routes are still served, and every answer
// asks the client to close its connection.
func TestDrain(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(o *wwhttp.Options) {
		o.Readiness = []wwhttp.ReadinessCheck{{Name: "database", Ping: func(ctx context.Context) error { return nil }}}
	})
	if res := f.do(request{method: "GET", path: "/readyz"}); res.status != 200 || res.header.Get("Connection") == "close" {
		t.Fatalf("/readyz before draining: %d, Connection %q", res.status, res.header.Get("Connection"))
	}
	f.srv.Drain()
	res := f.do(request{method: "GET", path: "/readyz"})
	if res.status != 503 || res.errorCode(t) != wasmwiz.EUNAVAILABLE || !strings.Contains(string(res.body), "shutting down") ||
		res.header.Get("Connection") != "close" {
		t.Fatalf("/readyz while draining: %d %s, Connection %q", res.status, res.body, res.header.Get("Connection"))
	}
	res = f.do(request{method: "POST", path: "/api/v1/execute", key: userKey, body: bytes.NewReader(wasmHeader), contentType: "application/wasm"})
	if res.status != 200 || res.header.Get("Connection") != "close" {
		t.Fatalf("execute while draining: %d %s, Connection %q", res.status, res.body, res.header.Get("Connection"))
	}
	if res := f.do(request{method: "GET", path: "/healthz"}); res.status != 200 {
		t.Fatalf("/healthz while draining: %d (the process is alive)", res.status)
	}
}

// TestReadyzOneCheckAtATime: /readyz needs no credentials, so its checks
// run one round at a time for every caller: 100 calls at once, while the
// first round's pings are held, ping each dependency once and all answer
// its result; a call within a second of the round's end reuses it; one
// after it pings again.
func TestReadyzOneCheckAtATime(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	var dbPings, redisPings atomic.Int64
	entered, release := make(chan struct{}, 1), make(chan struct{})
	f := newFixture(t, func(o *wwhttp.Options) {
		o.Now = clock.Now
		o.Readiness = []wwhttp.ReadinessCheck{
			{Name: "database", Ping: func(ctx context.Context) error {
				if dbPings.Add(1) == 1 {
					entered <- struct{}{}
					<-release
				}
				return nil
			}},
			{Name: "redis", Ping: func(ctx context.Context) error { redisPings.Add(1); return nil }},
		}
	})
	const calls = 100
	answers := make([]*response, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() { answers[i] = f.do(request{method: "GET", path: "/readyz"}) })
	}
	testenv.Wait(t, "the first round's database ping", func() { <-entered })
	close(release)
	wg.Wait()
	for i, res := range answers {
		if res.status != 200 {
			t.Fatalf("call %d: %d %s", i, res.status, res.body)
		}
	}
	if db, redis := dbPings.Load(), redisPings.Load(); db < 1 || db > 2 || redis < 1 || redis > 2 {
		t.Fatalf("%d calls pinged the database %d times and Redis %d times, want 1-2 each", calls, db, redis)
	}
	pinged := dbPings.Load()
	clock.Add(900 * time.Millisecond)
	if res := f.do(request{method: "GET", path: "/readyz"}); res.status != 200 || dbPings.Load() != pinged {
		t.Fatalf("a call within a second of the round: %d, %d more pings, want the round's answer", res.status, dbPings.Load()-pinged)
	}
	clock.Add(200 * time.Millisecond)
	if res := f.do(request{method: "GET", path: "/readyz"}); res.status != 200 || dbPings.Load() != pinged+1 {
		t.Fatalf("a call a second after the round: %d, %d more pings, want 1", res.status, dbPings.Load()-pinged)
	}
}

// TestReadyzLogsStateChanges: a dependency that stays down is logged once
// when it goes down, not per call, and once when it comes back.
func TestReadyzLogsStateChanges(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	var down atomic.Bool
	f := newFixture(t, func(o *wwhttp.Options) {
		o.Now = clock.Now
		o.Readiness = []wwhttp.ReadinessCheck{{Name: "redis", Ping: func(ctx context.Context) error {
			if down.Load() {
				return errors.New("dial tcp: connection refused")
			}
			return nil
		}}}
	})
	round := func(want int) {
		t.Helper()
		clock.Add(2 * time.Second) // past the reuse: a new round
		if res := f.do(request{method: "GET", path: "/readyz"}); res.status != want {
			t.Fatalf("/readyz: %d %s, want %d", res.status, res.body, want)
		}
	}
	count := func(msg string) int { return strings.Count(f.logBuf.String(), `"msg":"`+msg+`"`) }
	round(200)
	down.Store(true)
	for range 20 {
		round(503)
	}
	if n := count("readiness check failed"); n != 1 {
		t.Fatalf("20 rounds while Redis was down logged %d warnings, want 1", n)
	}
	down.Store(false)
	for range 5 {
		round(200)
	}
	if n := count("readiness check recovered"); n != 1 {
		t.Fatalf("Redis back logged %d recoveries, want 1", n)
	}
	down.Store(true)
	round(503)
	if n := count("readiness check failed"); n != 2 {
		t.Fatalf("Redis down again: %d warnings in all, want 2", n)
	}
}
