package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
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

// TestServeUserRequestsBounded: the wasmwiz binary on each store, with
// WASMWIZ_USER_REQUEST_RATE 3 (bursts of 6): one user's flood of usage
// reads through its two keys answers 429 ERATELIMIT with Retry-After past
// its burst, while another user's reads go through, and the flooding
// user's own runs right after (execute requests have a bucket of their
// own, which only their refusals spend). (The bound on requests in
// flight, that refused requests cost no lookup nor store call, that
// refused runs are charged, the bound on execute requests waiting for
// admission, and that idle users are forgotten, are internal/http's
// TestUserRequests* and TestExecute{Refusals,Waiting,NotHeldBack,AdmittedRuns}*.)
func TestServeUserRequestsBounded(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		s := be.serveWith(t, map[string]string{"WASMWIZ_USER_REQUEST_RATE": "3"}, ServeOptions{})
		flooder, _, _ := s.newUser(wasmwiz.TierBasic)
		other, _, _ := s.newUser(wasmwiz.TierBasic)
		second, err := flooder.CreateKey(ctx, "second", nil)
		if err != nil {
			t.Fatal(err)
		}
		keys := []*client.Client{flooder, s.client(second.Secret)}
		hello := testmodule.Read(t, "hello.wasm")

		const flood = 40
		start := time.Now()
		var answered, refused int
		var refusedTook time.Duration
		for i := range flood {
			sent := time.Now()
			_, err := keys[i%2].Usage(ctx)
			switch codeOf(err) {
			case "":
				answered++
			case wasmwiz.ERATELIMIT:
				refused++
				refusedTook += time.Since(sent)
				if d, ok := client.RetryAfter(err); !ok || d <= 0 {
					t.Fatalf("429 without Retry-After: %v", err)
				}
			default:
				t.Fatalf("read %d: %v", i+1, err)
			}
		}
		elapsed := time.Since(start)
		// The burst, the creation of the second key (counted too), and
		// what refilled meanwhile.
		if most := 6 + int(elapsed.Seconds()*3) + 1; answered > most || refused == 0 {
			t.Fatalf("%d reads of %d answered in %v, want at most %d and the rest refused", answered, flood, elapsed, most)
		}
		if _, err := other.Usage(ctx); err != nil {
			t.Fatalf("another user's read during the flood: %v", err)
		}
		// Execute requests have a bucket of their own: the spent reads
		// hold the user's runs back not at all.
		if _, err := flooder.Execute(ctx, &client.ExecuteRequest{Wasm: hello}); err != nil {
			t.Fatalf("the flooding user's run after its flood of reads: %v", err)
		}
		testenv.Prove(t, "a flood of one user's reads (GET /api/v1/usage through its two keys; WASMWIZ_USER_REQUEST_RATE 3), "+be.name,
			"past the user's burst its reads answer 429 with Retry-After; another user's reads go through, and so do the flooding user's runs (a bucket of their own)",
			"reads answered", fmt.Sprint(answered),
			"reads refused", fmt.Sprint(refused),
			"time to answer a refused read (mean)", (refusedTook / time.Duration(max(refused, 1))).Round(time.Microsecond).String())
	})
}

// TestServeAuthFailuresBounded: the wasmwiz binary on each store, with
// WASMWIZ_MAX_AUTH_FAILURES 5: a flood of well-shaped keys that do not
// authenticate, from one address, gets 401 for the first 6 (the 6th finds
// the address over its limit) and then 429 ERATELIMIT with a Retry-After,
// while the admin's key, which authenticated from that address before,
// keeps working. (That refused keys cost no database lookup, and the /64
// and the window, are internal/http's TestAuthFailuresBoundedPerAddress.)
func TestServeAuthFailuresBounded(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		s := be.serveWith(t, map[string]string{"WASMWIZ_MAX_AUTH_FAILURES": "5"}, ServeOptions{})
		if _, err := s.admin().Me(ctx); err != nil {
			t.Fatal(err)
		}
		for i := range 6 {
			_, _, err := s.client(fmt.Sprintf("ww_%040d", i)).ListModules(ctx, "", client.Page{})
			wantCode(t, fmt.Sprintf("bad key %d", i+1), err, wasmwiz.EUNAUTHORIZED)
		}
		refusing := time.Now()
		for i := range 20 {
			_, _, err := s.client(fmt.Sprintf("ww_%040d", 100+i)).ListModules(ctx, "", client.Page{})
			wantCode(t, fmt.Sprintf("bad key %d past the limit", 7+i), err, wasmwiz.ERATELIMIT)
			if d, ok := client.RetryAfter(err); !ok || d <= 0 {
				t.Fatalf("429 without Retry-After: %v", err)
			}
		}
		refused := time.Since(refusing) / 20
		if _, err := s.admin().Me(ctx); err != nil {
			t.Fatalf("the admin's key from the refused address: %v", err)
		}
		testenv.Prove(t, "a flood of well-shaped API keys that do not authenticate, from one address with no account (WASMWIZ_MAX_AUTH_FAILURES 5), "+be.name,
			"past the limit the address's keys answer 429 with Retry-After, without a database lookup; a key that authenticated from that address before keeps working",
			"keys answered 401 before the limit", "6",
			"keys answered 429 after it", "20",
			"time to answer a refused key (mean)", refused.Round(time.Microsecond).String())
	})
}

// anonymousRun sends hello.wasm without credentials, with X-Forwarded-For
// xff ("" for none), and returns the status and X-RateLimit-Remaining.
func anonymousRun(t *testing.T, s *e2eServer, xff string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.url+"/api/v1/execute", bytes.NewReader(testmodule.Read(t, "hello.wasm")))
	req.Header.Set("Content-Type", "application/wasm")
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, _ := testenv.Send(t, req)
	return resp.StatusCode, resp.Header.Get("X-RateLimit-Remaining")
}

// TestServeAnonymous: with WASMWIZ_AUTH=off anonymous callers run inline
// modules under the free tier (10 a minute), counted per client IP, and
// X-Forwarded-For names that IP only when it comes from a trusted proxy.
func TestServeAnonymous(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name    string
		trusted string
		// perXFF: each X-Forwarded-For address has a quota of its own.
		perXFF bool
	}{
		{"behind a trusted proxy", "127.0.0.1/32", true},
		{"no trusted proxy", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := backends[0].serveWith(t, map[string]string{"WASMWIZ_AUTH": "off", "WASMWIZ_TRUSTED_PROXIES": tt.trusted}, ServeOptions{})
			for i := 1; i <= 10; i++ {
				st, rem := anonymousRun(t, s, "203.0.113.7")
				if st != http.StatusOK || rem != strconv.Itoa(10-i) {
					t.Fatalf("anonymous run %d: %d, remaining %s", i, st, rem)
				}
			}
			if st, _ := anonymousRun(t, s, "203.0.113.7"); st != http.StatusTooManyRequests {
				t.Fatalf("11th anonymous run: %d, want 429", st)
			}
			st, _ := anonymousRun(t, s, "198.51.100.9")
			if tt.perXFF && st != http.StatusOK {
				t.Fatalf("another forwarded address: %d, want its own quota", st)
			}
			if !tt.perXFF && st != http.StatusTooManyRequests {
				t.Fatalf("an untrusted X-Forwarded-For escaped the quota: %d", st)
			}

			// Everything but inline execute still needs a key.
			anon := s.client("")
			_, _, err := anon.ListModules(ctx, "", client.Page{})
			wantCode(t, "anonymous module list", err, wasmwiz.EUNAUTHORIZED)
			_, err = anon.Execute(ctx, &client.ExecuteRequest{ModuleID: "mod_0K5smvRL1H5z3K7gzfJ1Cr"})
			wantCode(t, "anonymous stored module", err, wasmwiz.EUNAUTHORIZED)
			// A key that does not authenticate is refused, not taken as anonymous.
			_, err = s.client("ww_"+string(bytes.Repeat([]byte("z"), 40))).Execute(ctx, &client.ExecuteRequest{Wasm: testmodule.Read(t, "hello.wasm")})
			wantCode(t, "a bad key with auth off", err, wasmwiz.EUNAUTHORIZED)
		})
	}
}
