package http_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
	"github.com/wasmwiz/wasmwiz/internal/mock"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// refusalFlood sends n requests and returns how many answered want and
// how many answered 429 ERATELIMIT (naming the user's rate) after them; it
// fails t on any other answer, or on a want after a 429.
func refusalFlood(t *testing.T, n, want int, send func() *response) (wanted, limited int) {
	t.Helper()
	for i := range n {
		res := send()
		switch {
		case res.status == want && limited == 0:
			wanted++
		case res.status == 429 && res.errorCode(t) == wasmwiz.ERATELIMIT &&
			strings.Contains(res.errorMessage(t), "at most 5 a second") && res.header.Get("Retry-After") != "":
			limited++
		default:
			t.Fatalf("request %d of the flood: %d %s, want %d until the user's rate answers 429", i+1, res.status, res.body, want)
		}
	}
	return wanted, limited
}

// TestExecuteRefusalsBoundedPerUser: one key's flood of execute requests
// for modules that do not exist costs a module lookup each only until its
// user's token bucket (WASMWIZ_USER_REQUEST_RATE) is spent, each refusal
// taking a token; then they answer 429 ERATELIMIT with no key or module
// lookup. Another user is not touched; the clock refills the bucket.
func TestExecuteRefusalsBoundedPerUser(t *testing.T) {
	t.Parallel()
	const rate = 5 // a second; bursts of 10
	uf, clock := newRateFixture(t, rate)
	var finds atomic.Int64
	uf.modules.FindModuleByIDFn = func(ctx context.Context, id string) (*wasmwiz.Module, error) {
		finds.Add(1)
		return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module %q not found", id)
	}
	made := func(key string) func() *response {
		return func() *response {
			return uf.do(request{method: "POST", path: "/api/v1/modules/" + wasmwiz.NewModuleID() + "/execute", key: key})
		}
	}
	wanted, limited := refusalFlood(t, 200, 404, made(userKey))
	if wanted != 2*rate || limited != 200-2*rate {
		t.Errorf("%d answered 404 and %d 429, want the burst (%d) then 429", wanted, limited, 2*rate)
	}
	if got := finds.Load(); got != 2*rate {
		t.Errorf("%d module lookups for the flood, want %d (the burst)", got, 2*rate)
	}
	if got := uf.lookups.Load(); got > 2*rate {
		t.Errorf("%d key lookups for the flood, want at most %d (the burst)", got, 2*rate)
	}
	noWork := uf.noWorkFrom(t)
	refusedByUserBound(t, "the user's inline run while its bucket is spent", uf.execute(userKey), "at most 5 a second")
	noWork()
	if res := made(otherKey)(); res.status != 404 {
		t.Errorf("another user's request meanwhile: %d %s, want 404", res.status, res.body)
	}
	if res := uf.execute(otherKey); res.status != 200 {
		t.Errorf("another user's run meanwhile: %d %s", res.status, res.body)
	}
	clock.Add(time.Minute)
	if res := uf.execute(userKey); res.status != 200 {
		t.Errorf("the user's run once its bucket refilled: %d %s", res.status, res.body)
	}
}

// TestExecuteTooLargeRefusalsBounded: with the execute path's cache on, a
// body refused as too large (4097 args) on a cached caller is confirmed by
// reading the key again; a flood of them costs that lookup only until the
// user's bucket is spent, then answers 429 without one.
func TestExecuteTooLargeRefusalsBounded(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	const rate = 5
	lim := inmem.New(inmem.Options{})
	if err := lim.PublishCacheEpoch(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	free, _ := findTier(wasmwiz.TierFree)
	uf := newUserReqsFixture(t, func(o *wwhttp.Options) {
		o.Now = clock.Now
		o.UserRequestRate = rate
		o.Limiter = lim
		o.Epochs = &mock.CacheEpochService{CacheEpochFn: func(context.Context) (int64, error) { return 1, nil }}
	})
	next := uf.keys.AuthenticateFn
	uf.keys.AuthenticateFn = func(ctx context.Context, p string) (*wasmwiz.User, *wasmwiz.APIKey, error) {
		u, k, err := next(ctx, p)
		if u != nil {
			c := *u
			tier := *free
			c.TierLimits = &tier // a user read with its tier: the cache keeps it
			u = &c
		}
		return u, k, err
	}
	// Two runs: the first tells the cache the epoch, the second's key is
	// filed under it.
	for range 2 {
		if res := uf.execute(userKey); res.status != 200 {
			t.Fatalf("a run before the flood: %d %s", res.status, res.body)
		}
	}
	if res := uf.execute(userKey); res.status != 200 {
		t.Fatalf("a run from the cache: %d %s", res.status, res.body)
	}
	cached := uf.lookups.Load()
	if res := uf.execute(userKey); res.status != 200 || uf.lookups.Load() != cached {
		t.Fatalf("a run from the cache: %d %s, %d key lookups", res.status, res.body, uf.lookups.Load()-cached)
	}
	body := `{"wasm_base64":"AGFzbQEAAAA=","args":` + jsonText(t, manyArgs(wasmwiz.MaxArgs+1)) + `}`
	wanted, limited := refusalFlood(t, 100, 413, func() *response {
		return uf.do(request{method: "POST", path: "/api/v1/execute", key: userKey, body: strings.NewReader(body), contentType: "application/json"})
	})
	if wanted != 2*rate || limited != 100-2*rate {
		t.Errorf("%d answered 413 and %d 429, want the burst (%d) then 429", wanted, limited, 2*rate)
	}
	if got := uf.lookups.Load() - cached; got > 2*rate {
		t.Errorf("%d key lookups for the flood, want at most %d (the burst)", got, 2*rate)
	}
}

// TestUnmatchedAPIPathsLookNoKeyUp: a key on a path no route matches, or
// with a method its path does not take, answers 404 or 405 without a key
// lookup, whatever the key: else such requests, bounded by no route,
// would each cost a database round trip.
func TestUnmatchedAPIPathsLookNoKeyUp(t *testing.T) {
	t.Parallel()
	uf := newUserReqsFixture(t, func(o *wwhttp.Options) { o.UserRequestRate = 5 })
	noWork := uf.noWorkFrom(t)
	for i := range 100 {
		key := []string{userKey, unknownKey, "not-a-key"}[i%3]
		if res := uf.do(request{method: "POST", path: "/api/v1/usage", key: key}); res.status != 405 || res.header.Get("Allow") != "GET" {
			t.Fatalf("POST /api/v1/usage: %d (Allow %q) %s, want 405", res.status, res.header.Get("Allow"), res.body)
		}
		if res := uf.do(request{method: "GET", path: "/api/v1/x", key: key}); res.status != 404 || res.errorCode(t) != wasmwiz.ENOTFOUND {
			t.Fatalf("GET /api/v1/x: %d %s, want 404", res.status, res.body)
		}
		if res := uf.do(request{method: "GET", path: "/api/v1/execute", key: key}); res.status != 405 {
			t.Fatalf("GET /api/v1/execute: %d %s, want 405", res.status, res.body)
		}
	}
	noWork()
	if res := uf.usage(userKey); res.status != 200 {
		t.Errorf("a matched route after the flood: %d %s", res.status, res.body)
	}
}

// TestExecuteArchiveUnpackedAfterAdmission: a small body's archive is
// unpacked only once its caller was admitted for the run: a caller at its
// concurrency limit or over its quota is refused (429) without it being
// read, which a broken archive shows (read, it would be 400); an admitted
// caller's broken archive is refused and gives the admission back.
func TestExecuteArchiveUnpackedAfterAdmission(t *testing.T) {
	t.Parallel()
	broken := "\x1f\x8b\x08\x00broken gzip stream"
	multipart := func(t *testing.T) (io.Reader, string) {
		return testenv.MultipartOf(t, wasmPart, testenv.FilePart("archive", "a.tar.gz", broken))
	}
	jsonBody := func(t *testing.T) (io.Reader, string) {
		return strings.NewReader(`{"wasm_base64":"AGFzbQEAAAA=","archive_base64":"` + base64.StdEncoding.EncodeToString([]byte(broken)) + `"}`), "application/json"
	}
	tests := []struct {
		name       string
		body       func(t *testing.T) (io.Reader, string)
		full       bool
		overQuota  bool
		status     int
		message    string
		wantAdmits int
		wantRefund []bool
	}{
		{name: "multipart, at the concurrency limit", body: multipart, full: true, status: 429, message: "too many runs in flight"},
		{name: "JSON, at the concurrency limit", body: jsonBody, full: true, status: 429, message: "too many runs in flight"},
		{name: "multipart, over the quota", body: multipart, overQuota: true, status: 429, message: "rate limit exceeded"},
		{name: "admitted, then the archive refused", body: multipart, status: 400, message: "the archive is not a valid",
			wantAdmits: 1, wantRefund: []bool{true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			adm := &admissions{full: tt.full}
			f := newFixture(t, nil)
			if tt.overQuota {
				f.decision = wasmwiz.RateDecision{Allowed: false, Limit: 10, RetryAfter: 30 * time.Second}
			} else {
				f.limiter.AdmitFn = adm.limiterFn()
			}
			body, ct := tt.body(t)
			res := f.do(request{method: "POST", path: "/api/v1/execute", key: userKey, body: body, contentType: ct})
			if res.status != tt.status || !strings.Contains(res.errorMessage(t), tt.message) {
				t.Fatalf("status %d %s, want %d saying %q", res.status, res.body, tt.status, tt.message)
			}
			if tt.status == 429 && res.header.Get("Retry-After") == "" {
				t.Error("a 429 without Retry-After")
			}
			if f.runCount() != 0 {
				t.Error("the engine ran")
			}
			admitted, released := adm.state()
			if admitted != tt.wantAdmits || fmt.Sprint(released) != fmt.Sprint(tt.wantRefund) {
				t.Errorf("%d admissions released with refund %v; want %d, %v", admitted, released, tt.wantAdmits, tt.wantRefund)
			}
		})
	}
}

// TestExecuteUnavailableIsNotCharged: a run the replica cannot take (its
// limiter down: 503 EUNAVAILABLE) is not the caller's doing, and costs no
// token: a flood of them stays 503, never the user rate's 429.
func TestExecuteUnavailableIsNotCharged(t *testing.T) {
	t.Parallel()
	uf, _ := newRateFixture(t, 5)
	uf.limiter.AdmitFn = func(ctx context.Context, a wasmwiz.Admission) (wasmwiz.Admitted, error) {
		return wasmwiz.Admitted{}, errors.New("redis: connection refused")
	}
	for i := range 50 {
		if res := uf.execute(userKey); res.status != 503 || res.errorCode(t) != wasmwiz.EUNAVAILABLE {
			t.Fatalf("run %d with the limiter down: %d %s, want 503", i+1, res.status, res.body)
		}
	}
}

// TestExecuteWaitingBoundedPerUser: one key's execute requests for modules
// that do not exist, all held by the store in their module lookup, reach
// the store at most the bound of a user's execute requests waiting for
// admission (8 for a tier of 1 run at once); the rest answer 429
// ERATELIMIT with Retry-After without a key or module lookup, although the
// user's rate has tokens left (refusals are charged only once they
// answer). Another user's request meanwhile reaches the store; once the
// held ones answer, the user's requests reach it again.
func TestExecuteWaitingBoundedPerUser(t *testing.T) {
	t.Parallel()
	const (
		bound = 8  // executeWaiting: the free tier allows 1 run at once
		flood = 30 // within the burst (2×20): only the bound refuses
	)
	uf := newUserReqsFixture(t, func(o *wwhttp.Options) {
		o.MaxUserRequests = wwhttp.DefaultMaxUserRequests
		o.UserRequestRate = wwhttp.DefaultUserRequestRate
	})
	var userFinds, otherFinds atomic.Int64
	release := make(chan struct{})
	stop := sync.OnceFunc(func() { close(release) })
	defer stop()
	uf.modules.FindModuleByIDFn = func(ctx context.Context, id string) (*wasmwiz.Module, error) {
		if u := wasmwiz.UserFromContext(ctx); u != nil && u.ID == theUser.ID {
			userFinds.Add(1)
			<-release
		} else {
			otherFinds.Add(1)
		}
		return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module %q not found", id)
	}
	made := func(key string) *response {
		return uf.do(request{method: "POST", path: "/api/v1/modules/" + wasmwiz.NewModuleID() + "/execute", key: key})
	}
	answers := make(chan *response, flood)
	for range flood {
		go func() { answers <- made(userKey) }()
	}
	var early []*response
	testenv.WaitFor(t, "every request of the flood to be held by the store or answered", func() bool {
		for {
			select {
			case res := <-answers:
				early = append(early, res)
				continue
			default:
			}
			return int(userFinds.Load())+len(early) == flood
		}
	})
	if got := userFinds.Load(); got != bound {
		t.Errorf("%d of the flood reached the store at once, want the bound (%d)", got, bound)
	}
	if got := uf.lookups.Load(); got > bound {
		t.Errorf("%d key lookups for the flood, want at most %d (those waiting)", got, bound)
	}
	for _, res := range early {
		refusedByUserBound(t, "a request past the user's waiting requests", res, "at most 8 at a time")
	}
	if res := made(otherKey); res.status != 404 || otherFinds.Load() != 1 {
		t.Errorf("another user's request meanwhile: %d %s, %d module lookups; want 404 after one", res.status, res.body, otherFinds.Load())
	}
	uf.metricHas(t, fmt.Sprintf(`wasmwiz_user_requests_limited_total{bound="execute_waiting"} %d`, flood-bound))
	stop()
	for range bound {
		if res := <-answers; res.status != 404 {
			t.Errorf("a held request: %d %s, want 404 once the store answered", res.status, res.body)
		}
	}
	before := userFinds.Load()
	if res := made(userKey); res.status != 404 || userFinds.Load() != before+1 {
		t.Errorf("the user's request once the held ones answered: %d %s, want 404 from the store", res.status, res.body)
	}
}

// TestExecuteNotHeldBackByReads: a user that spent its read bucket polling
// its run (GET /api/v1/runs/{id} past the burst answers 429) still gets its
// runs executed: execute requests have a bucket of their own, which only
// their refusals spend.
func TestExecuteNotHeldBackByReads(t *testing.T) {
	t.Parallel()
	const rate = 5 // a second; bursts of 10
	uf, clock := newRateFixture(t, rate)
	id := wasmwiz.NewRunID(clock.Now().Add(-time.Hour))
	uf.runs.FindRunByIDFn = func(context.Context, string) (*wasmwiz.UsageRecord, error) {
		return &wasmwiz.UsageRecord{ID: id, UserID: theUser.ID, State: wasmwiz.RunDone, Stdout: []byte{}, Stderr: []byte{}}, nil
	}
	poll := func() *response { return uf.do(request{method: "GET", path: "/api/v1/runs/" + id, key: userKey}) }
	for i := range 2 * rate {
		if res := poll(); res.status != 200 {
			t.Fatalf("poll %d of the burst: %d %s", i+1, res.status, res.body)
		}
	}
	refusedByUserBound(t, "a poll past the burst", poll(), "at most 5 a second")
	for i := range 3 * rate {
		if res := uf.execute(userKey); res.status != 200 {
			t.Fatalf("run %d with the read bucket spent: %d %s, want 200", i+1, res.status, res.body)
		}
	}
	refusedByUserBound(t, "a poll after the runs", poll(), "at most 5 a second")
}

// TestExecuteAdmittedRunsHoldNoWaitingPlace: a run that was admitted (it
// holds its tier's slot; the mock limiter grants every one, as a tier
// allowing many runs at once would) no longer counts among its user's
// execute requests waiting for admission: with more runs held in the
// engine than that bound, the user starts another.
func TestExecuteAdmittedRunsHoldNoWaitingPlace(t *testing.T) {
	t.Parallel()
	const held = 12 // over the bound of 8
	uf := newUserReqsFixture(t, func(o *wwhttp.Options) {
		o.MaxUserRequests = wwhttp.DefaultMaxUserRequests
		o.UserRequestRate = wwhttp.DefaultUserRequestRate
	})
	entered := make(chan struct{}, held)
	release := make(chan struct{})
	stop := sync.OnceFunc(func() { close(release) })
	defer stop()
	var runs atomic.Int64
	next := uf.engine.RunFn
	uf.engine.RunFn = func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		if runs.Add(1) <= held {
			entered <- struct{}{}
			<-release
		}
		return next(ctx, req)
	}
	answers := make(chan *response, held)
	// In waves of at most the bound: requests sent at once all wait for
	// admission at once (a loaded machine admits none before the ninth
	// arrives), and the bound refuses the ninth then, rightly. Each wave
	// is admitted and held before the next is sent.
	const wave = 8
	for sent := 0; sent < held; {
		n := min(wave, held-sent)
		for range n {
			go func() { answers <- uf.execute(userKey) }()
		}
		for i := range n {
			select {
			case <-entered:
			case res := <-answers:
				t.Fatalf("run %d answered instead of being held by the engine: %d %s", sent+i+1, res.status, res.body)
			case <-time.After(testenv.Patience):
				t.Fatalf("gave up waiting for run %d of %d to reach the engine", sent+i+1, held)
			}
		}
		sent += n
	}
	res := uf.execute(userKey)
	stop()
	if res.status != 200 {
		t.Errorf("a run while %d of the user's runs are held: %d %s, want 200", held, res.status, res.body)
	}
	for range held {
		if res := <-answers; res.status != 200 {
			t.Errorf("a held run: %d %s", res.status, res.body)
		}
	}
}
