package redis_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
	"github.com/wasmwiz/wasmwiz/internal/limitertest"
	"github.com/wasmwiz/wasmwiz/internal/metrictest"
	"github.com/wasmwiz/wasmwiz/internal/redis"
	"github.com/wasmwiz/wasmwiz/internal/tcpproxy"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// checkOneSlot checks that by (Redis, or the fallback) grants one slot of
// 1, refuses a second, and grants it again once the first is released.
func checkOneSlot(t *testing.T, l *redis.Limiter, by string) {
	t.Helper()
	ctx := context.Background()
	release, ok, err := l.Acquire(ctx, "u1", 1, time.Minute)
	if err != nil || !ok {
		t.Fatalf("%s: Acquire: %v, %v", by, ok, err)
	}
	if _, ok, _ := l.Acquire(ctx, "u1", 1, time.Minute); ok {
		t.Fatalf("%s granted a second slot of 1", by)
	}
	release()
	if _, ok, _ := l.Acquire(ctx, "u1", 1, time.Minute); !ok {
		t.Fatalf("%s refused the slot after its release", by)
	}
}

// proxiedClient returns a client of the Redis at url through a proxy the
// test stops and stalls, closed when the test ends.
func proxiedClient(t *testing.T, url string) (*goredis.Client, *tcpproxy.Proxy) {
	t.Helper()
	p, proxied := tcpproxy.ForURL(t, url)
	opt, err := goredis.ParseURL(proxied)
	if err != nil {
		t.Fatal(err)
	}
	opt.ContextTimeoutEnabled = true
	c := goredis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c, p
}

// newClient returns a client for url, closed when the test ends.
func newClient(t testing.TB, url string) *goredis.Client {
	t.Helper()
	c, err := redis.NewClient(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testPrefix returns a key prefix of the test's own, whose keys are deleted
// when the test ends.
func testPrefix(t testing.TB, c *goredis.Client) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	prefix := "wasmwiz-test:" + hex.EncodeToString(b[:]) + ":rl:"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
	return prefix
}

func newLimiter(t testing.TB, opts redis.Options) *redis.Limiter {
	t.Helper()
	l, err := redis.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// serverClockLimiter returns a limiter on Redis's own clock (the
// production setting), its client and its key prefix, of the test's own.
func serverClockLimiter(t *testing.T) (*redis.Limiter, *goredis.Client, string) {
	t.Helper()
	c := newClient(t, testenv.RedisURL(t))
	prefix := testPrefix(t, c)
	return newLimiter(t, redis.Options{Client: c, Prefix: prefix, Timeout: 5 * time.Second}), c, prefix
}

// twoReplicas returns two limiters, each with a Redis client of its own, on
// one key prefix of the test's and one clock that reads
// limitertest.Start until the test moves it, as two replicas of a
// deployment.
func twoReplicas(t testing.TB) (a, b *redis.Limiter, clock *testenv.Clock) {
	t.Helper()
	url := testenv.RedisURL(t)
	clock = testenv.NewClock(limitertest.Start)
	c1, c2 := newClient(t, url), newClient(t, url)
	prefix := testPrefix(t, c1)
	a = newLimiter(t, redis.Options{Client: c1, Prefix: prefix, Now: clock.Now, Timeout: 5 * time.Second})
	b = newLimiter(t, redis.Options{Client: c2, Prefix: prefix, Now: clock.Now, Timeout: 5 * time.Second})
	return a, b, clock
}

// admitInRedis admits a on l, failing t on an error or on an answer of
// the fallback: the tests of replicas sharing Redis expect Redis's.
func admitInRedis(t *testing.T, l *redis.Limiter, a wasmwiz.Admission) wasmwiz.Admitted {
	t.Helper()
	res, err := l.Admit(context.Background(), a)
	if err != nil || res.Fallback {
		t.Fatalf("Admit: %+v, %v", res, err)
	}
	return res
}

func TestConformance(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	limitertest.Run(t, func(t *testing.T, clock *limitertest.Clock) wasmwiz.RateLimiter {
		c := newClient(t, url)
		// No fallback: a decision that did not come from Redis fails the test.
		return newLimiter(t, redis.Options{Client: c, Prefix: testPrefix(t, c), Now: clock.Now, Timeout: 5 * time.Second})
	})
}

var minute = func(n int64) []wasmwiz.RateLimit {
	return []wasmwiz.RateLimit{{Name: "minute", Limit: n, Window: time.Minute}}
}

// On Redis's own clock (the production setting) only clock-free properties
// and one short real wait are checked.
func TestServerClock(t *testing.T) {
	t.Parallel()
	l, _, _ := serverClockLimiter(t)
	ctx := context.Background()
	// A window the four calls below fit in on a loaded machine; the test
	// then waits out what is left of it once.
	short := []wasmwiz.RateLimit{{Name: "short", Limit: 3, Window: 2 * time.Second}}
	for i := range int64(3) {
		d, err := l.Allow(ctx, "u1", short)
		if err != nil || !d.Allowed || d.Remaining != 2-i || d.Fallback {
			t.Fatalf("event %d: %+v, %v", i, d, err)
		}
	}
	d, err := l.Allow(ctx, "u1", short)
	if err != nil || d.Allowed || d.RetryAfter <= 0 || d.RetryAfter > 2*time.Second || d.Remaining != 0 {
		t.Fatalf("4th event: %+v, %v", d, err)
	}
	time.Sleep(d.RetryAfter + 2*time.Millisecond)
	if d, err := l.Allow(ctx, "u1", short); err != nil || !d.Allowed {
		t.Fatalf("after RetryAfter: %+v, %v", d, err)
	}
	checkOneSlot(t, l, "Redis")
}

// A log whose newest event was recorded ahead of Redis's clock (by a
// replica on a clock of its own here; in production, by Redis's own clock
// before it stepped back) lives until that event leaves its window on
// Redis's clock, not one window from the append: its events keep counting.
func TestLogLivesUntilItsNewestLeaves(t *testing.T) {
	t.Parallel()
	l, c, prefix := serverClockLimiter(t)
	ahead := newLimiter(t, redis.Options{Client: c, Prefix: prefix, Timeout: 5 * time.Second,
		Now: func() time.Time { return time.Now().Add(time.Minute) }})
	ctx := context.Background()
	short := []wasmwiz.RateLimit{{Name: "short", Limit: 5, Window: 300 * time.Millisecond}}
	if d, err := ahead.Allow(ctx, "u1", short); err != nil || !d.Allowed {
		t.Fatalf("first event, a minute ahead: %+v, %v", d, err)
	}
	if d, err := l.Allow(ctx, "u1", short); err != nil || !d.Allowed || d.Remaining != 3 {
		t.Fatalf("second event, on Redis's clock: %+v, %v; want allowed with 3 remaining", d, err)
	}
	// A window later on Redis's clock both events are still ahead of it.
	time.Sleep(400 * time.Millisecond)
	if d, err := l.Allow(ctx, "u1", short); err != nil || !d.Allowed || d.Remaining != 2 {
		t.Fatalf("third event: %+v, %v; want allowed with 2 remaining (the log expired while its events counted)", d, err)
	}
}

// Two replicas, each with its own client, share one key's quota exactly.
func TestReplicasShareQuota(t *testing.T) {
	t.Parallel()
	a, b, clock := twoReplicas(t)
	replicas := []*redis.Limiter{a, b}
	const limit, calls = 50, 120
	var allowed [2]atomic.Int64
	var wg sync.WaitGroup
	for r, l := range replicas {
		for range 4 {
			wg.Go(func() {
				for range calls {
					d, err := l.Allow(context.Background(), "user:7", minute(limit))
					if err != nil || d.Fallback {
						t.Errorf("replica %d: %+v, %v", r, d, err)
						return
					}
					if d.Allowed {
						allowed[r].Add(1)
					}
				}
			})
		}
	}
	testenv.Wait(t, "the limiters sharing Redis", wg.Wait)
	if total := allowed[0].Load() + allowed[1].Load(); total != limit {
		t.Fatalf("replicas allowed %d and %d, %d in all; want exactly %d", allowed[0].Load(), allowed[1].Load(), total, limit)
	}
	// What one replica sees the other refuse, to the millisecond.
	clock.Add(time.Minute - time.Millisecond)
	if d, _ := replicas[1].Allow(context.Background(), "user:7", minute(limit)); d.Allowed || d.RetryAfter != time.Millisecond {
		t.Fatalf("1ms early on replica 2: %+v", d)
	}
	// Slots too.
	if _, ok, _ := replicas[0].Acquire(context.Background(), "user:7", 1, time.Minute); !ok {
		t.Fatal("slot refused on replica 1")
	}
	if _, ok, _ := replicas[1].Acquire(context.Background(), "user:7", 1, time.Minute); ok {
		t.Fatal("replica 2 granted a slot replica 1 holds")
	}
}

// Keys are namespaced under the prefix with the user key as hash tag, and
// expire with their window.
func TestKeysNamespacedAndExpiring(t *testing.T) {
	t.Parallel()
	l, c, prefix := serverClockLimiter(t)
	ctx := context.Background()
	limits := []wasmwiz.RateLimit{{Name: "minute", Limit: 5, Window: time.Minute}, {Name: "day", Limit: 9, Window: 24 * time.Hour}}
	if _, err := l.Allow(ctx, "user:1", limits); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Acquire(ctx, "user:1", 2, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key string
		max time.Duration
	}{
		{prefix + "{user:1}:minute:60000", time.Minute},
		{prefix + "{user:1}:day:86400000", 24 * time.Hour},
		{prefix + "{user:1}:slots", 90 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			ttl, err := c.PTTL(ctx, tt.key).Result()
			if err != nil {
				t.Fatal(err)
			}
			if ttl <= 0 || ttl > tt.max {
				t.Fatalf("PTTL = %v, want in (0, %v]", ttl, tt.max)
			}
		})
	}
	n, err := c.Keys(ctx, prefix+"*").Result()
	if err != nil || len(n) != len(tests) {
		t.Fatalf("keys under the prefix: %v, %v; want %d", n, err, len(tests))
	}
}

// A caller's slots live as long as the holder that expires last: a first
// holder sets their expiry, a later one extends it, never shortens it.
func TestSlotsLiveAsLongAsTheirLastHolder(t *testing.T) {
	t.Parallel()
	l, c, prefix := serverClockLimiter(t)
	ctx := context.Background()
	slots := prefix + "{u1}:slots"
	for _, tt := range []struct {
		ttl      time.Duration
		min, max time.Duration // of the slots' PTTL after the holder
	}{
		{10 * time.Second, time.Second, 10 * time.Second},
		{90 * time.Second, 80 * time.Second, 90 * time.Second},
		{5 * time.Second, 80 * time.Second, 90 * time.Second},
	} {
		if _, ok, err := l.Acquire(ctx, "u1", 5, tt.ttl); err != nil || !ok {
			t.Fatalf("Acquire(ttl %v): %v, %v", tt.ttl, ok, err)
		}
		if ttl := c.PTTL(ctx, slots).Val(); ttl < tt.min || ttl > tt.max {
			t.Fatalf("after a holder of %v the slots expire in %v, want in [%v, %v]", tt.ttl, ttl, tt.min, tt.max)
		}
	}
}

// A refusal by a later quota takes back the event it appended to an
// earlier one: no log is left longer, and one that had no events is left
// with no key (not a key without an expiry).
func TestRefusalLeavesNoEvent(t *testing.T) {
	t.Parallel()
	l, c, prefix := serverClockLimiter(t)
	ctx := context.Background()
	day := wasmwiz.RateLimit{Name: "day", Limit: 1, Window: 24 * time.Hour}
	if d, err := l.Allow(ctx, "u1", []wasmwiz.RateLimit{day}); err != nil || !d.Allowed {
		t.Fatalf("Allow: %+v, %v", d, err)
	}
	both := []wasmwiz.RateLimit{{Name: "minute", Limit: 5, Window: time.Minute}, day}
	for range 3 {
		if d, err := l.Allow(ctx, "u1", both); err != nil || d.Allowed {
			t.Fatalf("Allow with the day full: %+v, %v", d, err)
		}
		adm, err := l.Admit(ctx, wasmwiz.Admission{Key: "u1", Quotas: both, MaxConcurrent: 2, SlotTTL: time.Minute})
		if err != nil || adm.OK() {
			t.Fatalf("Admit with the day full: %+v, %v", adm, err)
		}
	}
	if n := c.Exists(ctx, prefix+"{u1}:minute:60000").Val(); n != 0 {
		t.Fatalf("the minute's log exists after refusals only: %v", c.LRange(ctx, prefix+"{u1}:minute:60000", 0, -1).Val())
	}
	if n := c.LLen(ctx, prefix+"{u1}:day:86400000").Val(); n != 1 {
		t.Fatalf("the day's log holds %d events, want 1", n)
	}
	if d, err := l.Allow(ctx, "u1", both[:1]); err != nil || !d.Allowed || d.Remaining != 4 {
		t.Fatalf("the minute alone: %+v, %v; want allowed with 4 remaining", d, err)
	}
}

// EVALSHA falls back to EVAL when Redis lost its script cache (a restart).
func TestScriptCacheFlushed(t *testing.T) {
	t.Parallel()
	c := newClient(t, testenv.RedisURL(t))
	clock := testenv.NewClock(limitertest.Start)
	l := newLimiter(t, redis.Options{Client: c, Prefix: testPrefix(t, c), Now: clock.Now, Timeout: 5 * time.Second})
	ctx := context.Background()
	for i := range 3 {
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		d, err := l.Allow(ctx, "u1", minute(3))
		if err != nil || !d.Allowed || d.Fallback || d.Remaining != int64(2-i) {
			t.Fatalf("after SCRIPT FLUSH: %+v, %v", d, err)
		}
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := l.Acquire(ctx, "u1", 3, time.Minute); err != nil || !ok {
			t.Fatalf("Acquire after SCRIPT FLUSH: %v, %v", ok, err)
		}
	}
}

func TestNewRefusesUnusableClient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts redis.Options
	}{
		{"no client", redis.Options{}},
		{"client ignoring deadlines", redis.Options{Client: goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.Client != nil {
				defer tt.opts.Client.Close()
			}
			if _, err := redis.New(tt.opts); wasmwiz.ErrorCode(err) != wasmwiz.EINVALID {
				t.Fatalf("New: %v, want EINVALID", err)
			}
		})
	}
	if _, err := redis.NewClient("http://nope"); wasmwiz.ErrorCode(err) != wasmwiz.EINVALID {
		t.Fatalf("NewClient(http://nope): %v, want EINVALID", err)
	}
}

const (
	downLine = "Redis does not answer"
	upLine   = "Redis answers again"
)

func TestRedisDownFallsBack(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(limitertest.Start)
	logs := &testenv.Buffer{}
	c := newClient(t, "redis://"+tcpproxy.ClosedAddr(t))
	l := newLimiter(t, redis.Options{
		Client: c, Now: clock.Now, Timeout: 200 * time.Millisecond,
		Fallback: inmem.New(inmem.Options{Now: clock.Now}),
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
	})
	ctx := context.Background()
	for i := range int64(5) {
		d, err := l.Allow(ctx, "u1", minute(3))
		if err != nil {
			t.Fatalf("Allow %d: %v", i, err)
		}
		want := wasmwiz.RateDecision{Allowed: true, Limit: 3, Remaining: 2 - i, ResetAfter: time.Minute, Fallback: true}
		if i >= 3 { // events at 0s, 2s, 4s; now 6s, then 8s
			since := time.Duration(i) * 2 * time.Second
			want = wasmwiz.RateDecision{Limit: 3, ResetAfter: time.Minute + 4*time.Second - since,
				RetryAfter: time.Minute - since, Fallback: true}
		}
		if d != want {
			t.Fatalf("Allow %d:\n got %+v\nwant %+v", i, d, want)
		}
		clock.Add(2 * redis.DefaultProbeInterval) // a probe each time: still down
	}
	checkOneSlot(t, l, "the fallback")
	s := l.Stats()
	if want := (wasmwiz.RateLimitStats{Allowed: 3, Limited: 2, Acquired: 2, AcquireRefused: 1, Fallback: 8, FallbackActive: true,
		Outages: 1, StoreErrors: 6}); s != want { // 5 Allow and 1 Acquire tried Redis
		t.Fatalf("Stats() = %+v, want %+v", s, want)
	}
	if n := strings.Count(logs.String(), downLine); n != 1 {
		t.Fatalf("outage logged %d times, want once:\n%s", n, logs.String())
	}
	// The limiter's metrics export the same figures.
	got := metrictest.Values(t, l.Metrics()...)
	if want := map[string]float64{"wasmwiz_ratelimit_fallback_active": 1, "wasmwiz_ratelimit_fallbacks_total": 1,
		"wasmwiz_ratelimit_store_errors_total": 6}; !maps.Equal(got, want) {
		t.Fatalf("metrics %v, want %v", got, want)
	}
}

func TestRedisDownWithoutFallback(t *testing.T) {
	t.Parallel()
	c := newClient(t, "redis://"+tcpproxy.ClosedAddr(t))
	l := newLimiter(t, redis.Options{Client: c, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if _, err := l.Allow(context.Background(), "u1", minute(3)); wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Fatalf("Allow: %v, want EUNAVAILABLE", err)
	}
	if _, ok, err := l.Acquire(context.Background(), "u1", 1, time.Minute); ok || wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Fatalf("Acquire: %v, %v, want EUNAVAILABLE", ok, err)
	}
	if err := l.Ping(context.Background()); wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Fatalf("Ping: %v, want EUNAVAILABLE", err)
	}
}

// A caller that gives up is not an outage.
func TestCanceledCallerIsNotAnOutage(t *testing.T) {
	t.Parallel()
	c := newClient(t, testenv.RedisURL(t))
	l := newLimiter(t, redis.Options{Client: c, Prefix: testPrefix(t, c), Fallback: inmem.New(inmem.Options{})})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Allow(ctx, "u1", minute(3)); wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Fatalf("Allow with a canceled context: %v, want EUNAVAILABLE", err)
	}
	if s := l.Stats(); s.FallbackActive || s.Fallback != 0 {
		t.Fatalf("Stats() = %+v after a canceled call, want no fallback", s)
	}
	if err := l.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// Redis stops and starts again (through a proxy): no call fails, the
// fallback decides meanwhile, one probe per interval, and the shared counts
// are used again once Redis answers.
func TestRedisOutageAndRecovery(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	c, p := proxiedClient(t, url)
	clock := testenv.NewClock(limitertest.Start)
	logs := &testenv.Buffer{}
	l := newLimiter(t, redis.Options{
		Client: c, Prefix: testPrefix(t, newClient(t, url)), Now: clock.Now,
		Timeout: 2 * time.Second, ProbeInterval: 500 * time.Millisecond,
		Fallback: inmem.New(inmem.Options{Now: clock.Now}),
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
	})
	ctx := context.Background()
	check := func(what string, wantAllowed, wantFallback bool, wantRemaining int64) {
		t.Helper()
		d, err := l.Allow(ctx, "u1", minute(10))
		if err != nil || d.Allowed != wantAllowed || d.Fallback != wantFallback || d.Remaining != wantRemaining {
			t.Fatalf("%s: %+v, %v; want allowed=%v fallback=%v remaining=%d", what, d, err, wantAllowed, wantFallback, wantRemaining)
		}
	}
	check("redis up", true, false, 9)
	check("redis up", true, false, 8)

	p.Stop()
	check("redis stopped", true, true, 9) // the fallback's own count
	check("still down", true, true, 8)
	p.Start()
	check("back, before the next probe", true, true, 7)
	if s := l.Stats(); !s.FallbackActive || s.Fallback != 3 {
		t.Fatalf("Stats() during the outage = %+v", s)
	}
	clock.Add(500 * time.Millisecond)
	check("probe finds Redis", true, false, 7) // Redis's count: 2 before + this
	check("redis again", true, false, 6)
	if s := l.Stats(); s.FallbackActive || s.Fallback != 3 || s.Allowed != 7 || s.Outages != 1 || s.StoreErrors != 1 {
		t.Fatalf("Stats() after the outage = %+v", s)
	}
	if down, up := strings.Count(logs.String(), downLine), strings.Count(logs.String(), upLine); down != 1 || up != 1 {
		t.Fatalf("logged %d outage and %d recovery lines, want 1 and 1:\n%s", down, up, logs.String())
	}
}

// A Redis that takes longer than the timeout: the fallback decides, and the
// call does not wait for Redis's answer.
func TestSlowRedisFallsBack(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	c, p := proxiedClient(t, url)
	clock := testenv.NewClock(limitertest.Start)
	l := newLimiter(t, redis.Options{
		// A timeout the recovered call (a new connection, the script sent
		// again) does not come near on a loaded machine; the stalled calls
		// wait it out, since the stall holds Redis's answer indefinitely.
		Client: c, Prefix: testPrefix(t, newClient(t, url)), Now: clock.Now,
		Timeout: time.Second, ProbeInterval: time.Second,
		Fallback: inmem.New(inmem.Options{Now: clock.Now}),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil { // a warm connection through the proxy
		t.Fatal(err)
	}
	p.Stall()
	// Redis's answer is held back until unstall, which only this test calls
	// after Allow returns: a call that waited for it would never return.
	d, err := l.Allow(ctx, "u1", minute(2))
	if err != nil || !d.Allowed || !d.Fallback {
		t.Fatalf("Allow with Redis stalled: %+v, %v", d, err)
	}
	_, ok, err := l.Acquire(ctx, "u1", 1, time.Minute)
	if err != nil || !ok {
		t.Fatalf("Acquire with Redis stalled: %v, %v", ok, err)
	}
	p.Unstall()
	clock.Add(time.Second)
	d, err = l.Allow(ctx, "u1", minute(2))
	if err != nil || !d.Allowed || d.Fallback {
		t.Fatalf("Allow after Redis recovered: %+v, %v", d, err)
	}
	if s := l.Stats(); s.Fallback != 2 || s.FallbackActive || s.Outages != 1 || s.StoreErrors != 1 {
		t.Fatalf("Stats() = %+v, want 2 fallback decisions after 1 timeout, none active", s)
	}
}

// TestTimeoutSoonAfterAnAnswerIsNoOutage: a call that times out while Redis
// answered another within TripAfter is decided by the fallback alone, and the
// next call asks Redis again (under load one call can pass the timeout while
// the others are answered); past TripAfter without an answer, a timeout ends
// shared limits until a probe finds Redis, as any other failure does.
func TestTimeoutSoonAfterAnAnswerIsNoOutage(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	for _, tc := range []struct {
		name      string
		tripAfter time.Duration
		outage    bool
	}{
		{"within TripAfter", time.Hour, false},
		{"past TripAfter", time.Nanosecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, p := proxiedClient(t, url)
			clock := testenv.NewClock(limitertest.Start)
			l := newLimiter(t, redis.Options{
				// As in TestSlowRedisFallsBack: a timeout a loaded machine
				// does not reach on a call Redis answers.
				Client: c, Prefix: testPrefix(t, newClient(t, url)), Now: clock.Now,
				Timeout: time.Second, ProbeInterval: time.Hour, TripAfter: tc.tripAfter,
				Fallback: inmem.New(inmem.Options{Now: clock.Now}),
				Logger:   slog.New(slog.DiscardHandler),
			})
			ctx := context.Background()
			allow := func(what string, wantFallback bool, wantRemaining int64) {
				t.Helper()
				d, err := l.Allow(ctx, "u1", minute(10))
				if err != nil || !d.Allowed || d.Fallback != wantFallback || d.Remaining != wantRemaining {
					t.Fatalf("%s: %+v, %v; want fallback=%v remaining=%d", what, d, err, wantFallback, wantRemaining)
				}
			}
			allow("redis answers", false, 9)
			p.Stall()
			allow("redis stalled", true, 9) // the fallback's own count
			p.Unstall()
			if tc.outage {
				// The probe is an hour away: the fallback keeps deciding.
				allow("after the outage began", true, 8)
			} else {
				// Redis's count: the first call, the stalled one (the proxy
				// holds back answers, not requests) and this.
				allow("redis answers again", false, 7)
			}
			want := wasmwiz.RateLimitStats{Allowed: 3, StoreErrors: 1, Fallback: 1}
			if tc.outage {
				want.Fallback, want.FallbackActive, want.Outages = 2, true, 1
			}
			if s := l.Stats(); s != want {
				t.Fatalf("Stats() = %+v, want %+v", s, want)
			}
		})
	}
}

// An error reply (here: a key of the wrong type) is a failure like any
// other: the fallback decides, nothing is returned to the caller.
func TestErrorReplyFallsBack(t *testing.T) {
	t.Parallel()
	c := newClient(t, testenv.RedisURL(t))
	prefix := testPrefix(t, c)
	clock := testenv.NewClock(limitertest.Start)
	l := newLimiter(t, redis.Options{Client: c, Prefix: prefix, Now: clock.Now, Timeout: 5 * time.Second,
		Fallback: inmem.New(inmem.Options{Now: clock.Now}), Logger: slog.New(slog.DiscardHandler)})
	if err := c.Set(context.Background(), prefix+"{u1}:minute:60000", "not a list", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	d, err := l.Allow(context.Background(), "u1", minute(3))
	if err != nil || !d.Allowed || !d.Fallback {
		t.Fatalf("Allow on a clobbered key: %+v, %v", d, err)
	}
	if s := l.Stats(); s.StoreErrors != 1 || !s.FallbackActive {
		t.Fatalf("Stats() = %+v, want 1 store error and the fallback active", s)
	}
}

// TestReplicasShareAdmissions: two replicas admitting one user share its
// slots and quota exactly; an epoch published through one is the other's
// at its next admission; a slot released on one comes back for the other
// without any further call on the first.
func TestReplicasShareAdmissions(t *testing.T) {
	t.Parallel()
	a, b, clock := twoReplicas(t)
	ctx := context.Background()
	adm := func(l *redis.Limiter, epoch int64) wasmwiz.Admitted {
		t.Helper()
		return admitInRedis(t, l, wasmwiz.Admission{Key: "user:7", Quotas: minute(40), MaxConcurrent: 3, SlotTTL: time.Minute, Epoch: epoch})
	}
	const calls = 30
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for _, l := range []*redis.Limiter{a, b, a, b} {
		wg.Go(func() {
			for range calls {
				res, err := l.Admit(ctx, wasmwiz.Admission{Key: "user:7", Quotas: minute(40), MaxConcurrent: 3, SlotTTL: time.Minute})
				if err != nil {
					t.Errorf("Admit: %v", err)
					return
				}
				if res.OK() {
					admitted.Add(1)
					res.Release(false)
				}
			}
		})
	}
	testenv.Wait(t, "the concurrent admissions", wg.Wait)
	if admitted.Load() > 40 {
		t.Fatalf("%d admitted under a quota of 40", admitted.Load())
	}

	clock.Add(time.Minute) // a fresh quota
	if err := a.PublishCacheEpoch(ctx, 11); err != nil {
		t.Fatal(err)
	}
	before := adm(b, 0)
	before.Release(false)
	if err := a.PublishCacheEpoch(ctx, 12); err != nil {
		t.Fatal(err)
	}
	res := adm(b, before.Epoch)
	if !res.Stale || res.Epoch == before.Epoch || res.Epoch == 0 {
		t.Fatalf("replica b under epoch %d after 12 was published on a: %+v", before.Epoch, res)
	}
	epoch := res.Epoch

	// Every slot held through a; one released there is b's again.
	var held []wasmwiz.Admitted
	for range 3 {
		held = append(held, adm(a, epoch))
	}
	if res := adm(b, epoch); !res.Concurrency {
		t.Fatalf("replica b admitted a fourth run of 3: %+v", res)
	}
	held[0].Release(false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		res := adm(b, epoch)
		if res.OK() {
			break
		}
		if !res.Concurrency || time.Now().After(deadline) {
			t.Fatalf("replica b, after a released a slot: %+v", res)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAdmitFallsBack: while Redis is down an admission is decided by the
// fallback, whose epoch is the one published meanwhile.
func TestAdmitFallsBack(t *testing.T) {
	t.Parallel()
	c := newClient(t, "redis://"+tcpproxy.ClosedAddr(t))
	l := newLimiter(t, redis.Options{Client: c, Timeout: 200 * time.Millisecond, Fallback: inmem.New(inmem.Options{}),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx := context.Background()
	if err := l.PublishCacheEpoch(ctx, 4); wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Fatalf("PublishCacheEpoch with Redis down: %v, want EUNAVAILABLE", err)
	}
	res, err := l.Admit(ctx, wasmwiz.Admission{Key: "u1", Quotas: minute(3), MaxConcurrent: 1, SlotTTL: time.Minute})
	if err != nil || !res.OK() || !res.Fallback || !res.Decision.Fallback || res.Epoch == 0 {
		t.Fatalf("Admit with Redis down: %+v, %v", res, err)
	}
	if again, _ := l.Admit(ctx, wasmwiz.Admission{Key: "u1", Quotas: minute(3), MaxConcurrent: 1, SlotTTL: time.Minute}); !again.Concurrency {
		t.Fatalf("the fallback granted a second slot of 1: %+v", again)
	}
	res.Release(false)
	if again, _ := l.Admit(ctx, wasmwiz.Admission{Key: "u1", Quotas: minute(3), MaxConcurrent: 1, SlotTTL: time.Minute}); !again.OK() {
		t.Fatalf("the fallback's slot was not released: %+v", again)
	}
}

// TestReplicasShareNamedSlots: a named slot one replica admitted is held for
// every replica, and any replica gives it back by its holder's name (a
// background run admitted on one replica ends on another).
func TestReplicasShareNamedSlots(t *testing.T) {
	t.Parallel()
	a, b, _ := twoReplicas(t)
	ctx := context.Background()
	adm := func(l *redis.Limiter, holder string) wasmwiz.Admitted {
		t.Helper()
		return admitInRedis(t, l, wasmwiz.Admission{Key: "user:7", Quotas: minute(40), MaxConcurrent: 1, SlotTTL: time.Hour,
			SlotSet: "background", Holder: holder})
	}
	if res := adm(a, "run_1"); !res.OK() {
		t.Fatalf("the first background run: %+v", res)
	}
	if res := adm(b, "run_2"); !res.Concurrency {
		t.Fatalf("replica b admitted a second background run of 1: %+v", res)
	}
	if err := b.ReleaseSlot(ctx, "user:7", "background", "run_1"); err != nil {
		t.Fatal(err)
	}
	if res := adm(b, "run_2"); !res.OK() {
		t.Fatalf("replica b, after it gave back a's run by name: %+v", res)
	}
	if res := adm(a, "run_3"); !res.Concurrency {
		t.Fatalf("replica a admitted a second background run of 1: %+v", res)
	}
}

// TestReleaseSlotReachesTheFallback: a named slot the fallback admitted
// while Redis was away is given back there by ReleaseSlot.
func TestReleaseSlotReachesTheFallback(t *testing.T) {
	t.Parallel()
	c := newClient(t, "redis://"+tcpproxy.ClosedAddr(t))
	l := newLimiter(t, redis.Options{Client: c, Timeout: 200 * time.Millisecond, Fallback: inmem.New(inmem.Options{}),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx := context.Background()
	a := wasmwiz.Admission{Key: "u1", Quotas: minute(3), MaxConcurrent: 1, SlotTTL: time.Hour, SlotSet: "background", Holder: "run_1"}
	if res, err := l.Admit(ctx, a); err != nil || !res.OK() || !res.Fallback {
		t.Fatalf("Admit with Redis down: %+v, %v", res, err)
	}
	a.Holder = "run_2"
	if res, _ := l.Admit(ctx, a); !res.Concurrency {
		t.Fatalf("the fallback admitted a second background run of 1: %+v", res)
	}
	if err := l.ReleaseSlot(ctx, "u1", "background", "run_1"); err != nil {
		t.Fatalf("ReleaseSlot with Redis down: %v", err)
	}
	if res, _ := l.Admit(ctx, a); !res.OK() {
		t.Fatalf("the fallback's slot was not given back: %+v", res)
	}
}

// scriptCounter counts the scripts a client has Redis run (EVAL and
// EVALSHA; an EVALSHA that Redis answers NOSCRIPT, because another test
// flushed the script cache, runs nothing and is sent again as EVAL).
type scriptCounter struct{ n atomic.Int64 }

func (c *scriptCounter) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (c *scriptCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return next
}
func (c *scriptCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd)
		if name := cmd.Name(); (name == "evalsha" || name == "eval") && (err == nil || !strings.HasPrefix(err.Error(), "NOSCRIPT")) {
			c.n.Add(1)
		}
		return err
	}
}

// TestReleasesFoldIntoAdmissions: the release of a run whose caller had
// room to spare waits for the next admission on the replica, which carries
// it (one script per run); one whose caller was at its limit is sent at
// once on its own, so that no replica refuses that caller's next run.
func TestReleasesFoldIntoAdmissions(t *testing.T) {
	t.Parallel()
	c := newClient(t, testenv.RedisURL(t))
	counter := &scriptCounter{}
	c.AddHook(counter)
	prefix := testPrefix(t, c)
	// A window no test run comes near: a release that may wait is sent only
	// by an admission.
	l := newLimiter(t, redis.Options{Client: c, Prefix: prefix, Timeout: 5 * time.Second, FoldWindow: time.Hour})
	ctx := context.Background()
	roomy := wasmwiz.Admission{Key: "user:1", Quotas: minute(1000), MaxConcurrent: 10, SlotTTL: time.Minute}
	for range 20 {
		adm, err := l.Admit(ctx, roomy)
		if err != nil || !adm.OK() {
			t.Fatalf("Admit: %+v, %v", adm, err)
		}
		adm.Release(false)
	}
	if n := counter.n.Load(); n != 20 {
		t.Fatalf("%d scripts for 20 runs whose releases could fold into the next admission, want 20", n)
	}

	full := wasmwiz.Admission{Key: "user:2", Quotas: minute(1000), MaxConcurrent: 1, SlotTTL: time.Minute}
	adm, err := l.Admit(ctx, full)
	if err != nil || !adm.OK() {
		t.Fatalf("Admit: %+v, %v", adm, err)
	}
	before := counter.n.Load()
	adm.Release(false)
	testenv.WaitFor(t, "the release of a caller at its limit to be sent on its own", func() bool {
		return counter.n.Load() > before
	})
	// Another replica sees the slot free.
	other := newLimiter(t, redis.Options{Client: newClient(t, testenv.RedisURL(t)), Prefix: prefix, Timeout: 5 * time.Second})
	testenv.WaitFor(t, "the slot to be free on another replica", func() bool {
		a, err := other.Admit(ctx, full)
		if err != nil {
			t.Fatal(err)
		}
		if a.OK() {
			a.Release(false)
		}
		return a.OK()
	})
}

// TestKnownKeysShared: a key noted from a network by one replica is in
// that network's set as another replica reads it, and not in another
// network's, until its ttl passes or a replica forgets it; a set keeps at
// most MaxKnownKeys; Redis holds a hash of the digest, not the digest the
// stores keep; a limiter whose Redis does not answer says EUNAVAILABLE, and
// the HTTP layer then goes by its own.
func TestKnownKeysShared(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClient(t, testenv.RedisURL(t))
	prefix := testPrefix(t, c)
	a := newLimiter(t, redis.Options{Client: c, Prefix: prefix, Timeout: 5 * time.Second})
	b := newLimiter(t, redis.Options{Client: newClient(t, testenv.RedisURL(t)), Prefix: prefix, Timeout: 5 * time.Second})
	const network, other = "203.0.113.0/24", "2001:db8:1::/48"
	digest := sha256.Sum256([]byte("ww_key"))
	known := func(l *redis.Limiter, network string) map[string]bool {
		t.Helper()
		keys, err := l.KnownKeysOf(ctx, network)
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}
	if len(known(b, network)) != 0 {
		t.Fatal("a network no one noted a key from has known keys")
	}
	if err := a.NoteKnownKey(ctx, network, digest, time.Minute); err != nil {
		t.Fatal(err)
	}
	if !known(b, network)[wasmwiz.KnownKeyHash(digest)] || len(known(b, other)) != 0 {
		t.Fatalf("after A noted a key from %s: B reads %v there, %v from %s", network, known(b, network), known(b, other), other)
	}
	keys, err := c.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		for _, m := range c.SMembers(ctx, k).Val() {
			if strings.Contains(m, hex.EncodeToString(digest[:])) || strings.Contains(k, hex.EncodeToString(digest[:])) {
				t.Fatalf("Redis holds the key's digest itself: %s %s", k, m)
			}
		}
		if ttl := c.PTTL(ctx, k).Val(); ttl <= 0 || ttl > time.Minute {
			t.Fatalf("%s has ttl %v, want at most a minute", k, ttl)
		}
	}
	if err := b.ForgetKnownKey(ctx, network, digest); err != nil {
		t.Fatal(err)
	}
	if len(known(a, network)) != 0 {
		t.Fatal("a key B forgot is still known to A")
	}
	for i := range wasmwiz.MaxKnownKeys + 20 {
		if err := a.NoteKnownKey(ctx, other, sha256.Sum256([]byte(strconv.Itoa(i))), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(known(b, other)); n != wasmwiz.MaxKnownKeys {
		t.Fatalf("a network's set holds %d keys, want at most %d", n, wasmwiz.MaxKnownKeys)
	}
	if err := a.NoteKnownKey(ctx, network, digest, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the noted key's ttl to pass", func() bool { return len(known(b, network)) == 0 })

	down := newLimiter(t, redis.Options{Client: newClient(t, "redis://"+tcpproxy.ClosedAddr(t)), Timeout: 200 * time.Millisecond})
	if _, err := down.KnownKeysOf(ctx, network); wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Fatalf("KnownKeysOf with Redis down: %v, want EUNAVAILABLE", err)
	}
	if err := down.NoteKnownKey(ctx, network, digest, time.Minute); wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Fatalf("NoteKnownKey with Redis down: %v, want EUNAVAILABLE", err)
	}
}
