package main

import (
	"bytes"
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

var retryAfterRE = regexp.MustCompile(`^[1-9][0-9]*$`)

// TestServeRateLimits: headers on every execute answer, 429 with
// Retry-After once the minute's quota is used, and a refused run consumes
// nothing; on every backend.
func TestServeRateLimits(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		s := be.serve(t)
		user, _, key := s.newTierUser("three", func(tr *wasmwiz.Tier) { tr.RunsPerMinute = 3 })
		other, _, _ := s.newUser("three")
		hello := testmodule.Read(t, "hello.wasm")
		for i := 1; i <= 3; i++ {
			ex, err := user.ExecuteDetail(ctx, &client.ExecuteRequest{Wasm: hello})
			if err != nil {
				t.Fatalf("run %d: %v", i, err)
			}
			if rl := ex.RateLimit; !rl.Present || rl.Limit != 3 || rl.Remaining != int64(3-i) || rl.Reset <= 0 || rl.Reset > time.Minute {
				t.Fatalf("run %d headers %+v", i, rl)
			}
		}
		for i := 0; i < 2; i++ {
			_, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
			wantCode(t, "fourth run", err, wasmwiz.ERATELIMIT)
			d, ok := client.RetryAfter(err)
			if !ok || d <= 0 || d > time.Minute {
				t.Fatalf("Retry-After %v %v", d, ok)
			}
		}
		// Raw: the 429 carries the headers and a whole-second Retry-After.
		resp, _ := testenv.Do(t, http.MethodPost, s.url+"/api/v1/execute?stdin=x", key, "application/wasm", bytes.NewReader(hello))
		if resp.StatusCode != http.StatusTooManyRequests || !retryAfterRE.MatchString(resp.Header.Get("Retry-After")) ||
			resp.Header.Get("X-RateLimit-Remaining") != "0" || resp.Header.Get("X-RateLimit-Limit") != "3" {
			t.Fatalf("429 answer: %d %v", resp.StatusCode, resp.Header)
		}
		// Another user's quota is its own.
		if _, err := other.Execute(ctx, &client.ExecuteRequest{Wasm: hello}); err != nil {
			t.Fatalf("another user: %v", err)
		}
		// The refused runs were not counted: raising the quota to 4
		// allows exactly one more.
		s.putTier(testTier("three", func(tr *wasmwiz.Tier) { tr.RunsPerMinute = 4 }))
		if _, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: hello}); err != nil {
			t.Fatalf("after raising the quota to 4: %v", err)
		}
		_, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
		wantCode(t, "fifth run at 4 per minute", err, wasmwiz.ERATELIMIT)
	})
}

// TestServeConcurrencyAndSaturation: a free user's second run in flight is
// 429 (its tier allows 1), and a replica whose run slots and queue are full
// answers 503 with Retry-After; on every backend (the slots live in Redis
// there).
func TestServeConcurrencyAndSaturation(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, be backend) {
		testConcurrency(t, be.serveWith(t, map[string]string{"WASMWIZ_MAX_CONCURRENT_RUNS": "2", "WASMWIZ_QUEUE_SIZE": "0"}, ServeOptions{}))
	})
}

func testConcurrency(t *testing.T, s *e2eServer) {
	ctx := context.Background()
	// A tier of one run at a time, like free, but with a wall time that the
	// 3s sleep below never comes near, also on a loaded machine.
	free, _, _ := s.newTierUser("single", func(tr *wasmwiz.Tier) {
		tr.MaxConcurrent = 1
		tr.Timeout = time.Minute
	})
	other, _, _ := s.newUser(wasmwiz.TierBasic)
	third, _, _ := s.newUser(wasmwiz.TierBasic)
	sleep := testmodule.Read(t, "sleep.wasm")
	long := func(c *client.Client, done chan<- error) {
		res, err := c.Execute(ctx, &client.ExecuteRequest{Wasm: sleep, Args: []string{"3000"}})
		if err == nil && string(res.Stdout) != "slept\n" {
			err = errorf("long run: %+v", res)
		}
		done <- err
	}

	// One long run holds the user's only slot and one of the replica's two
	// run slots; it ends when its guest sleeps out its 3s.
	first, second := make(chan error, 1), make(chan error, 1)
	go long(free, first)
	testenv.WaitFor(t, "the first run to be in a worker", func() bool { return s.srv.PoolStats().Busy == 1 })

	_, err := free.Execute(ctx, &client.ExecuteRequest{Wasm: testmodule.Read(t, "hello.wasm")})
	wantCode(t, "second run of a free user", err, wasmwiz.ERATELIMIT)
	if !strings.Contains(messageOf(err), "in flight") {
		t.Errorf("429 message %q does not say why", messageOf(err))
	}
	// Another user's long run takes the replica's last slot: now every run
	// is refused with 503, whoever asks (before anything is looked up).
	go long(other, second)
	testenv.WaitFor(t, "the second run to be in a worker", func() bool { return s.srv.PoolStats().Busy == 2 })
	for name, c := range map[string]*client.Client{"a third user": third, "the free user": free} {
		_, err = c.Execute(ctx, &client.ExecuteRequest{Wasm: testmodule.Read(t, "hello.wasm")})
		wantCode(t, name+" on a saturated replica", err, wasmwiz.EUNAVAILABLE)
		if d, ok := client.RetryAfter(err); !ok || d < time.Second {
			t.Errorf("503 Retry-After %v %v", d, ok)
		}
	}
	for _, done := range []chan error{first, second} {
		if err := testenv.Recv(t, done, "a long run"); err != nil {
			t.Fatalf("a long run: %v", err)
		}
	}
	// Both slots are free again.
	if _, err := free.Execute(ctx, &client.ExecuteRequest{Wasm: testmodule.Read(t, "hello.wasm")}); err != nil {
		t.Fatalf("after the first run: %v", err)
	}
	if _, err := other.Execute(ctx, &client.ExecuteRequest{Wasm: testmodule.Read(t, "hello.wasm")}); err != nil {
		t.Fatalf("after the first run, another user: %v", err)
	}
}

func errorf(format string, args ...any) error {
	return wasmwiz.Errorf(wasmwiz.EINTERNAL, format, args...)
}
