package http_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// userKey2 is a second key of theUser.
var userKey2 = "ww_" + strings.Repeat("v", 40)

// userReqsFixture is a fixture whose key store also knows userKey2 and
// counts its lookups, and whose usage store counts its calls and holds the
// next hold calls of theUser until release is closed.
type userReqsFixture struct {
	*fixture
	lookups, usageCalls atomic.Int64
	entered             chan struct{} // one per held usage call of theUser
	release             chan struct{}
	hold                atomic.Int64
}

func newUserReqsFixture(t *testing.T, mod func(o *wwhttp.Options)) *userReqsFixture {
	t.Helper()
	uf := &userReqsFixture{entered: make(chan struct{}, 100), release: make(chan struct{})}
	uf.fixture = newFixture(t, mod)
	next := uf.keys.AuthenticateFn
	uf.keys.AuthenticateFn = func(ctx context.Context, p string) (*wasmwiz.User, *wasmwiz.APIKey, error) {
		uf.lookups.Add(1)
		if p == userKey2 {
			return theUser, &wasmwiz.APIKey{ID: 14, UserID: theUser.ID}, nil
		}
		return next(ctx, p)
	}
	uf.runs.UsageFn = func(ctx context.Context, now time.Time) (*wasmwiz.Usage, error) {
		uf.usageCalls.Add(1)
		if u := wasmwiz.UserFromContext(ctx); u != nil && u.ID == theUser.ID && uf.hold.Add(-1) >= 0 {
			uf.entered <- struct{}{}
			<-uf.release
		}
		return &wasmwiz.Usage{Tier: "free"}, nil
	}
	return uf
}

// newRateFixture is a userReqsFixture whose users may make rate requests a
// second, its time read from the clock it returns, which moves only when
// the test moves it.
func newRateFixture(t *testing.T, rate int) (*userReqsFixture, *testenv.Clock) {
	t.Helper()
	clock := testenv.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	uf := newUserReqsFixture(t, func(o *wwhttp.Options) {
		o.Now = clock.Now
		o.UserRequestRate = rate
	})
	return uf, clock
}

func (uf *userReqsFixture) usage(key string) *response {
	return uf.do(request{method: "GET", path: "/api/v1/usage", key: key, remoteAddr: "198.51.100.20:4000"})
}

func (uf *userReqsFixture) execute(key string) *response {
	return uf.do(request{method: "POST", path: "/api/v1/execute", key: key, body: bytes.NewReader(wasmHeader), contentType: "application/wasm"})
}

// noWorkFrom returns a check that no key was looked up and the usage
// store was not asked from now until it is called.
func (uf *userReqsFixture) noWorkFrom(t *testing.T) func() {
	looked, asked := uf.lookups.Load(), uf.usageCalls.Load()
	return func() {
		t.Helper()
		if got := uf.lookups.Load() - looked; got != 0 {
			t.Errorf("keys looked up for refused requests: %d, want 0", got)
		}
		if got := uf.usageCalls.Load() - asked; got != 0 {
			t.Errorf("store calls for refused requests: %d, want 0", got)
		}
	}
}

// metricHas fails t unless /metrics has line.
func (uf *userReqsFixture) metricHas(t *testing.T, line string) {
	t.Helper()
	res := uf.do(request{method: "GET", path: "/metrics"})
	if !bytes.Contains(res.body, []byte("\n"+line+"\n")) {
		t.Errorf("/metrics has no line %q", line)
	}
}

// holdReads starts n usage reads of theUser, one after another, each held
// by the store; it fails t if one answers instead. Close uf.release, then
// wait for the answers.
func (uf *userReqsFixture) holdReads(t *testing.T, n int) func() []*response {
	t.Helper()
	uf.hold.Store(int64(n))
	var wg sync.WaitGroup
	held := make([]*response, n)
	for i := range n {
		answered := make(chan struct{})
		wg.Go(func() { held[i] = uf.usage(userKey); close(answered) })
		select {
		case <-uf.entered:
		case <-answered:
			t.Fatalf("read %d of %d answered %d instead of being held by the store: %s", i+1, n, held[i].status, held[i].body)
		}
	}
	return func() []*response { wg.Wait(); return held }
}

// refusedByUserBound fails t unless res is the user bound's 429: ERATELIMIT,
// Retry-After of whole seconds, and a message naming the bound (want).
func refusedByUserBound(t *testing.T, what string, res *response, want string) {
	t.Helper()
	res.wantRateLimited(t, what, 5)
	if !bytes.Contains(res.body, []byte(want)) {
		t.Fatalf("%s: message %s, want it to name %q", what, res.body, want)
	}
}

// TestUserRequestsInFlight: one user's flood of slow reads (usage calls the
// store holds) is refused past MaxUserRequests at once with 429, before its
// key is looked up or the store is asked, through any of the user's keys;
// meanwhile another user's read and the same user's run go through; once
// the held reads answer, the user's reads go through again.
func TestUserRequestsInFlight(t *testing.T) {
	t.Parallel()
	const limit = 3
	uf := newUserReqsFixture(t, func(o *wwhttp.Options) { o.MaxUserRequests = limit })
	if res := uf.usage(userKey2); res.status != 200 { // this replica learns userKey2's owner
		t.Fatalf("usage through the second key: %d %s", res.status, res.body)
	}
	answers := uf.holdReads(t, limit)
	noWork := uf.noWorkFrom(t)
	for i := range 20 {
		key := userKey
		if i%2 == 1 {
			key = userKey2
		}
		refusedByUserBound(t, "a read past the bound", uf.usage(key), "at most 3 at a time")
	}
	for _, r := range []request{
		{method: "GET", path: "/api/v1/runs", key: userKey},
		{method: "GET", path: "/api/v1/me", key: userKey2},
		{method: "GET", path: "/api/v1/modules", key: userKey},
	} {
		refusedByUserBound(t, r.method+" "+r.path+" past the bound", uf.do(r), "too many of your requests in flight")
	}
	noWork()
	if res := uf.usage(otherKey); res.status != 200 {
		t.Errorf("another user's read meanwhile: %d %s", res.status, res.body)
	}
	if res := uf.execute(userKey); res.status != 200 {
		t.Errorf("the user's run meanwhile (execute routes are not counted): %d %s", res.status, res.body)
	}
	close(uf.release)
	for i, res := range answers() {
		if res.status != 200 {
			t.Errorf("held read %d: %d %s", i, res.status, res.body)
		}
	}
	for range limit + 2 {
		if res := uf.usage(userKey); res.status != 200 {
			t.Fatalf("a read once the held ones answered: %d %s", res.status, res.body)
		}
	}
	uf.metricHas(t, `wasmwiz_user_requests_limited_total{bound="in_flight"} 23`)
}

// TestUserRequestsRate: past its burst a user's reads answer 429 with the
// time to the next token, without a lookup or a store call, through either
// of its keys, and so does opening an event stream; other users are not
// counted, nor are the user's runs, which go through meanwhile (execute
// requests have a bucket of their own); the bucket refills with the clock.
func TestUserRequestsRate(t *testing.T) {
	t.Parallel()
	const rate = 5 // a second; bursts of 10
	uf, clock := newRateFixture(t, rate)
	for range 3 * rate {
		if res := uf.execute(userKey); res.status != 200 {
			t.Fatalf("the user's run (a run that is admitted takes no token): %d %s", res.status, res.body)
		}
	}
	for i := range 2 * rate {
		key := userKey
		if i%2 == 1 {
			key = userKey2
		}
		if res := uf.usage(key); res.status != 200 {
			t.Fatalf("read %d of the burst: %d %s", i+1, res.status, res.body)
		}
	}
	noWork := uf.noWorkFrom(t)
	for i := range 30 {
		key := userKey
		if i%2 == 1 {
			key = userKey2
		}
		res := uf.usage(key)
		refusedByUserBound(t, "a read past the burst", res, "at most 5 a second, in bursts of 10")
		if ra := res.header.Get("Retry-After"); ra != "1" {
			t.Fatalf("Retry-After %q, want 1 (the next token in 200ms)", ra)
		}
	}
	// A stream opened and dropped in a loop costs a key lookup and a run
	// lookup each time: opening one takes a token like any read.
	uf.runs.FindRunByIDFn = func(context.Context, string) (*wasmwiz.UsageRecord, error) {
		t.Error("a run looked up for a stream past the burst")
		return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "not found")
	}
	oldRun := wasmwiz.NewRunID(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
	refusedByUserBound(t, "an event stream past the burst",
		uf.do(request{method: "GET", path: "/api/v1/runs/" + oldRun + "/events", key: userKey}), "at most 5 a second")
	noWork()
	if res := uf.usage(otherKey); res.status != 200 {
		t.Errorf("another user's read meanwhile: %d %s", res.status, res.body)
	}
	// Execute requests have a bucket of their own: reads do not hold
	// runs back.
	if res := uf.execute(userKey); res.status != 200 {
		t.Errorf("the user's run meanwhile: %d %s, want 200", res.status, res.body)
	}

	clock.Add(time.Second / rate) // one token
	if res := uf.usage(userKey); res.status != 200 {
		t.Fatalf("a read a token later: %d %s", res.status, res.body)
	}
	refusedByUserBound(t, "the read after it", uf.usage(userKey), "at most 5 a second")
	clock.Add(time.Hour) // the bucket is full again, not fuller
	for i := range 2 * rate {
		if res := uf.usage(userKey2); res.status != 200 {
			t.Fatalf("read %d of a burst an hour later: %d %s", i+1, res.status, res.body)
		}
	}
	refusedByUserBound(t, "past that burst", uf.usage(userKey), "at most 5 a second")
	uf.metricHas(t, `wasmwiz_user_requests_limited_total{bound="rate"} 33`)
}

// TestUserRequestsEventStreamHoldsNoSlot: an open event stream, which lasts
// as long as its run, gives back its place among the user's requests in
// flight once its key is looked up: with MaxUserRequests 1 and a stream
// open, the user's reads go through.
func TestUserRequestsEventStreamHoldsNoSlot(t *testing.T) {
	t.Parallel()
	uf := newUserReqsFixture(t, func(o *wwhttp.Options) { o.MaxUserRequests = 1 })
	id := wasmwiz.NewRunID(time.Now())
	looked := make(chan struct{}, 100)
	uf.runs.FindRunByIDFn = func(context.Context, string) (*wasmwiz.UsageRecord, error) {
		looked <- struct{}{}
		return &wasmwiz.UsageRecord{ID: id, UserID: theUser.ID, State: wasmwiz.RunRunning, Stdout: []byte{}, Stderr: []byte{}}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan *response, 1)
	go func() {
		done <- uf.do(request{method: "GET", path: "/api/v1/runs/" + id + "/events", key: userKey, ctx: ctx})
	}()
	select {
	case <-looked: // the stream is past its lookups
	case res := <-done:
		t.Fatalf("the stream ended at once: %d %s", res.status, res.body)
	}
	for i := range 3 {
		if res := uf.usage(userKey); res.status != 200 {
			t.Fatalf("read %d while a stream is open: %d %s", i+1, res.status, res.body)
		}
	}
	cancel()
	if res := <-done; res.status != 200 {
		t.Fatalf("the stream: %d %s", res.status, res.body)
	}
}

// TestUserRequestsRevokedKeyDoesNotDrainItsUser: a key that authenticated
// once and was then revoked is counted to its old user only until its
// lookup fails; a flood of it answers 401 and leaves the user's bucket.
func TestUserRequestsRevokedKeyDoesNotDrainItsUser(t *testing.T) {
	t.Parallel()
	uf, _ := newRateFixture(t, 5)
	var revoked atomic.Bool
	next := uf.keys.AuthenticateFn
	uf.keys.AuthenticateFn = func(ctx context.Context, p string) (*wasmwiz.User, *wasmwiz.APIKey, error) {
		if p == userKey2 && revoked.Load() {
			return nil, nil, wasmwiz.Errorf(wasmwiz.EUNAUTHORIZED, "revoked")
		}
		return next(ctx, p)
	}
	if res := uf.usage(userKey2); res.status != 200 {
		t.Fatalf("the key before it was revoked: %d %s", res.status, res.body)
	}
	revoked.Store(true)
	for i := range 50 {
		if res := uf.usage(userKey2); res.status != 401 && (i == 0 || res.status != 429) {
			t.Fatalf("revoked key, request %d: %d, want 401 (or its own bucket's 429): %s", i+1, res.status, res.body)
		}
	}
	// The user spent one token through the key and one through its first
	// failure: 8 of its 10 are left.
	for i := range 8 {
		if res := uf.usage(userKey); res.status != 200 {
			t.Fatalf("the user's read %d after the flood of its revoked key: %d %s", i+1, res.status, res.body)
		}
	}
	refusedByUserBound(t, "the user's ninth read", uf.usage(userKey), "at most 5 a second")
}

// TestUserRequestsZeroIsNoBound: with both bounds zero nothing is counted.
func TestUserRequestsZeroIsNoBound(t *testing.T) {
	t.Parallel()
	uf := newUserReqsFixture(t, func(o *wwhttp.Options) { o.MaxUserRequests, o.UserRequestRate = 0, 0 })
	answers := uf.holdReads(t, 12)
	close(uf.release)
	for i, res := range answers() {
		if res.status != 200 {
			t.Errorf("held read %d: %d %s", i, res.status, res.body)
		}
	}
	for i := range 200 {
		if res := uf.usage(userKey); res.status != 200 {
			t.Fatalf("read %d: %d %s", i+1, res.status, res.body)
		}
	}
}
