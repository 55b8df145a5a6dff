// Package limitertest is the conformance suite every wasmwiz.RateLimiter
// passes: the in-memory limiter and the Redis limiter run the same tests, so
// they keep one meaning. A behaviour change edits this suite first.
//
// Time is a Clock the test advances, so every expectation is exact to the
// millisecond and no test sleeps.
package limitertest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// Clock is the suite's manual clock: a limiter under test reads its time
// from Now.
type Clock = testenv.Clock

// Start is the time every suite clock starts at: on a minute boundary, so a
// fixed-window limiter would reset in the middle of the tests and fail them.
var Start = time.Date(2026, 3, 14, 15, 9, 0, 0, time.UTC)

// NewLimiterFunc returns a new, empty limiter that reads time from clock.
// Each call must return a limiter that shares no counts with earlier ones
// (for Redis: a key prefix of its own).
type NewLimiterFunc func(t *testing.T, clock *Clock) wasmwiz.RateLimiter

// Stater is implemented by limiters that count their decisions for metrics.
type Stater interface {
	Stats() wasmwiz.RateLimitStats
}

// Windows are a minute or longer: the Redis limiter expires its keys on
// Redis's own clock, which keeps running while the suite's clock stands.
var (
	perMinute = func(n int64) wasmwiz.RateLimit {
		return wasmwiz.RateLimit{Name: "minute", Limit: n, Window: time.Minute}
	}
	perDay = func(n int64) wasmwiz.RateLimit {
		return wasmwiz.RateLimit{Name: "day", Limit: n, Window: 24 * time.Hour}
	}
)

// Run runs the conformance suite against limiters made by newLimiter.
func Run(t *testing.T, newLimiter NewLimiterFunc) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, newLimiter NewLimiterFunc)
	}{
		{"AllowsLimitThenRefuses", testAllowsLimitThenRefuses},
		{"RefusedConsumesNothing", testRefusedConsumesNothing},
		{"MillisecondBoundary", testMillisecondBoundary},
		{"SlidingNotFixedWindow", testSlidingNotFixedWindow},
		{"ResetAfter", testResetAfter},
		{"SeveralLimitsMostRestrictive", testSeveralLimitsMostRestrictive},
		{"SeveralLimitsRefusedConsumesNone", testSeveralLimitsRefusedConsumesNone},
		{"KeysAreIndependent", testKeysAreIndependent},
		{"LimitChangeKeepsCount", testLimitChangeKeepsCount},
		{"ManyEventsLeaveExactly", testManyEventsLeaveExactly},
		{"ClockGoingBackwards", testClockGoingBackwards},
		{"ConcurrentAllowCountsExactly", testConcurrentAllowCountsExactly},
		{"InvalidInput", testInvalidInput},
		{"AcquireHoldsMaxSlots", testAcquireHoldsMaxSlots},
		{"AcquireFreesDeadHolders", testAcquireFreesDeadHolders},
		{"StaleReleaseFreesNothing", testStaleReleaseFreesNothing},
		{"ConcurrentAcquireCountsExactly", testConcurrentAcquireCountsExactly},
		{"AcquireAndAllowAreSeparate", testAcquireAndAllowAreSeparate},
		{"Stats", testStats},
		{"AdmitTakesSlotAndQuota", testAdmitTakesSlotAndQuota},
		{"AdmitConcurrencyRefusalConsumesNothing", testAdmitConcurrencyRefusalConsumesNothing},
		{"AdmitQuotaRefusalTakesNoSlot", testAdmitQuotaRefusalTakesNoSlot},
		{"AdmitReleaseAndRefund", testAdmitReleaseAndRefund},
		{"AdmitCacheEpoch", testAdmitCacheEpoch},
		{"ConcurrentAdmitCountsExactly", testConcurrentAdmitCountsExactly},
		{"AdmitInvalidInput", testAdmitInvalidInput},
		{"NamedSlotsCountedApart", testNamedSlotsCountedApart},
		{"ReleaseSlotByHolder", testReleaseSlotByHolder},
		{"NamedSlotsWithoutQuotas", testNamedSlotsWithoutQuotas},
		{"NamedSlotsFreeDeadHolders", testNamedSlotsFreeDeadHolders},
		{"NamedSlotsInvalidInput", testNamedSlotsInvalidInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newLimiter)
		})
	}
}

func setup(t *testing.T, newLimiter NewLimiterFunc) (wasmwiz.RateLimiter, *Clock) {
	t.Helper()
	clock := testenv.NewClock(Start)
	return newLimiter(t, clock), clock
}

// allow calls Allow and fails the test on an error.
func allow(t *testing.T, l wasmwiz.RateLimiter, key string, limits ...wasmwiz.RateLimit) wasmwiz.RateDecision {
	t.Helper()
	d, err := l.Allow(context.Background(), key, limits)
	if err != nil {
		t.Fatalf("Allow(%q): %v", key, err)
	}
	return d
}

// want compares the fields of a decision that the suite pins down; Fallback
// is the Redis limiter's business.
func want(t *testing.T, what string, got, want wasmwiz.RateDecision) {
	t.Helper()
	got.Fallback = false
	if got != want {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func allowed(limit, remaining int64, reset time.Duration) wasmwiz.RateDecision {
	return wasmwiz.RateDecision{Allowed: true, Limit: limit, Remaining: remaining, ResetAfter: reset}
}

func refused(limit int64, reset, retry time.Duration) wasmwiz.RateDecision {
	return wasmwiz.RateDecision{Limit: limit, ResetAfter: reset, RetryAfter: retry}
}

func testAllowsLimitThenRefuses(t *testing.T, newLimiter NewLimiterFunc) {
	l, _ := setup(t, newLimiter)
	for i := range int64(5) {
		want(t, "event", allow(t, l, "u1", perMinute(5)), allowed(5, 4-i, time.Minute))
	}
	for range 3 {
		want(t, "event over the limit", allow(t, l, "u1", perMinute(5)), refused(5, time.Minute, time.Minute))
	}
}

func testRefusedConsumesNothing(t *testing.T, newLimiter NewLimiterFunc) {
	l, clock := setup(t, newLimiter)
	for i := range int64(3) {
		want(t, "spread event", allow(t, l, "u1", perMinute(3)), allowed(3, 2-i, time.Minute))
		clock.Add(10 * time.Second)
	}
	// Events at 0s, 10s, 20s; now 30s.
	for range 50 {
		want(t, "refused at 30s", allow(t, l, "u1", perMinute(3)), refused(3, 50*time.Second, 30*time.Second))
	}
	clock.Add(30*time.Second - time.Millisecond)
	want(t, "refused 1ms early", allow(t, l, "u1", perMinute(3)), refused(3, 20*time.Second+time.Millisecond, time.Millisecond))
	clock.Add(time.Millisecond)
	want(t, "allowed when the oldest leaves", allow(t, l, "u1", perMinute(3)), allowed(3, 0, time.Minute))
	// Events at 10s, 20s, 60s: the next room comes at 70s.
	want(t, "refused again", allow(t, l, "u1", perMinute(3)), refused(3, time.Minute, 10*time.Second))
}

func testMillisecondBoundary(t *testing.T, newLimiter NewLimiterFunc) {
	tests := []struct {
		name    string
		advance time.Duration
		want    wasmwiz.RateDecision
	}{
		{"same instant", 0, refused(1, time.Minute, time.Minute)},
		{"1ms after", time.Millisecond, refused(1, time.Minute-time.Millisecond, time.Minute-time.Millisecond)},
		{"1ms before the window ends", time.Minute - time.Millisecond, refused(1, time.Millisecond, time.Millisecond)},
		{"when the window ends", time.Minute, allowed(1, 0, time.Minute)},
		{"long after", 25 * time.Hour, allowed(1, 0, time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, clock := setup(t, newLimiter)
			want(t, "first", allow(t, l, "u1", perMinute(1)), allowed(1, 0, time.Minute))
			clock.Add(tt.advance)
			want(t, "second", allow(t, l, "u1", perMinute(1)), tt.want)
		})
	}
}

func testSlidingNotFixedWindow(t *testing.T, newLimiter NewLimiterFunc) {
	l, clock := setup(t, newLimiter)
	// Start is on a minute boundary. Two events in the last millisecond of
	// one calendar minute still count in the first 59.999s of the next.
	clock.Add(time.Minute - time.Millisecond)
	allow(t, l, "u1", perMinute(2))
	allow(t, l, "u1", perMinute(2))
	clock.Add(time.Millisecond)
	want(t, "new calendar minute", allow(t, l, "u1", perMinute(2)),
		refused(2, time.Minute-time.Millisecond, time.Minute-time.Millisecond))
	clock.Add(time.Minute - time.Millisecond)
	want(t, "window passed", allow(t, l, "u1", perMinute(2)), allowed(2, 1, time.Minute))
}

func testResetAfter(t *testing.T, newLimiter NewLimiterFunc) {
	l, clock := setup(t, newLimiter)
	want(t, "first", allow(t, l, "u1", perMinute(3)), allowed(3, 2, time.Minute))
	clock.Add(10 * time.Second)
	want(t, "second", allow(t, l, "u1", perMinute(3)), allowed(3, 1, time.Minute))
	clock.Add(10 * time.Second)
	want(t, "third", allow(t, l, "u1", perMinute(3)), allowed(3, 0, time.Minute))
	clock.Add(5 * time.Second)
	// Events at 0s, 10s, 20s; now 25s: room at 60s, empty at 80s.
	want(t, "refused", allow(t, l, "u1", perMinute(3)), refused(3, 55*time.Second, 35*time.Second))
}

func testSeveralLimitsMostRestrictive(t *testing.T, newLimiter NewLimiterFunc) {
	l, clock := setup(t, newLimiter)
	limits := []wasmwiz.RateLimit{perMinute(3), perDay(5)}
	want(t, "1st", allow(t, l, "u1", limits...), allowed(3, 2, time.Minute))
	// Ties on remaining go to the longer window.
	tie := []wasmwiz.RateLimit{perMinute(3), perDay(3)}
	want(t, "tie", allow(t, l, "u3", tie...), allowed(3, 2, 24*time.Hour))
	want(t, "2nd", allow(t, l, "u1", limits...), allowed(3, 1, time.Minute))
	want(t, "3rd", allow(t, l, "u1", limits...), allowed(3, 0, time.Minute))
	want(t, "minute full", allow(t, l, "u1", limits...), refused(3, time.Minute, time.Minute))
	clock.Add(time.Minute)
	// Day: 3 of 5 used. Minute: empty again.
	want(t, "4th", allow(t, l, "u1", limits...), allowed(5, 1, 24*time.Hour))
	want(t, "5th", allow(t, l, "u1", limits...), allowed(5, 0, 24*time.Hour))
	want(t, "day full", allow(t, l, "u1", limits...), refused(5, 24*time.Hour, 24*time.Hour-time.Minute))

	// Both refuse: the answer is the one that frees up last.
	both := []wasmwiz.RateLimit{{Name: "minute", Limit: 1, Window: time.Minute}, {Name: "hour", Limit: 1, Window: time.Hour}}
	want(t, "both first", allow(t, l, "u2", both...), allowed(1, 0, time.Hour))
	clock.Add(time.Second)
	want(t, "both full", allow(t, l, "u2", both...), refused(1, time.Hour-time.Second, time.Hour-time.Second))
	clock.Add(time.Minute)
	want(t, "hour still full", allow(t, l, "u2", both...), refused(1, time.Hour-time.Minute-time.Second, time.Hour-time.Minute-time.Second))
}

func testSeveralLimitsRefusedConsumesNone(t *testing.T, newLimiter NewLimiterFunc) {
	l, clock := setup(t, newLimiter)
	limits := []wasmwiz.RateLimit{perMinute(2), perDay(10)}
	allow(t, l, "u1", limits...)
	allow(t, l, "u1", limits...)
	for range 20 {
		if d := allow(t, l, "u1", limits...); d.Allowed {
			t.Fatalf("allowed over the minute limit: %+v", d)
		}
	}
	clock.Add(time.Minute)
	// Only the two allowed events count against the day.
	want(t, "day alone", allow(t, l, "u1", perDay(10)), allowed(10, 7, 24*time.Hour))
	// The refusal by the day limit consumes nothing of the minute limit.
	for range 7 {
		allow(t, l, "u1", perDay(10))
	}
	for range 5 {
		want(t, "refused by day", allow(t, l, "u1", limits...), refused(10, 24*time.Hour, 24*time.Hour-time.Minute))
	}
	want(t, "minute untouched", allow(t, l, "u1", perMinute(2)), allowed(2, 1, time.Minute))
}

func testKeysAreIndependent(t *testing.T, newLimiter NewLimiterFunc) {
	l, _ := setup(t, newLimiter)
	want(t, "u1", allow(t, l, "user:1", perMinute(1)), allowed(1, 0, time.Minute))
	want(t, "u1 again", allow(t, l, "user:1", perMinute(1)), refused(1, time.Minute, time.Minute))
	for _, key := range []string{"user:2", "ip:192.0.2.1", "ip:2001:db8::1", "user:1:", "{user:1}", "user 1 ünïcode"} {
		want(t, key, allow(t, l, key, perMinute(1)), allowed(1, 0, time.Minute))
	}
	// The same name with another window is another quota.
	want(t, "other window", allow(t, l, "user:1", wasmwiz.RateLimit{Name: "minute", Limit: 1, Window: time.Hour}),
		allowed(1, 0, time.Hour))
}

func testLimitChangeKeepsCount(t *testing.T, newLimiter NewLimiterFunc) {
	l, clock := setup(t, newLimiter)
	for range 4 {
		allow(t, l, "u1", perMinute(10))
		clock.Add(time.Second)
	}
	// Events at 0s..3s; now 4s. Lowered to 4: full; raised to 5: one more.
	want(t, "lowered", allow(t, l, "u1", perMinute(4)), refused(4, 59*time.Second, 56*time.Second))
	want(t, "lowered below", allow(t, l, "u1", perMinute(2)), refused(2, 59*time.Second, 58*time.Second))
	want(t, "raised", allow(t, l, "u1", perMinute(5)), allowed(5, 0, time.Minute))
}

// A day window with events spread through it: as time passes, exactly the
// events that left the window make room again, one or many at a time.
func testManyEventsLeaveExactly(t *testing.T, newLimiter NewLimiterFunc) {
	l, clock := setup(t, newLimiter)
	const limit = 300
	step := 24 * time.Hour / limit // 4m48s
	for i := range int64(limit) {
		want(t, "filling", allow(t, l, "u1", perDay(limit)), allowed(limit, limit-1-i, 24*time.Hour))
		clock.Add(step)
	}
	// Now one day after the first event: it has left, making room for one.
	want(t, "first left", allow(t, l, "u1", perDay(limit)), allowed(limit, 0, 24*time.Hour))
	want(t, "full", allow(t, l, "u1", perDay(limit)), refused(limit, 24*time.Hour, step))
	// Jumps of k steps free exactly k.
	for _, k := range []int{1, 2, 7, 1, 37, 3, 100, 1} {
		clock.Add(time.Duration(k) * step)
		for j := range k {
			if d := allow(t, l, "u1", perDay(limit)); !d.Allowed || d.Remaining != int64(k-1-j) {
				t.Fatalf("event %d after a jump of %d steps: %+v, want allowed with %d remaining", j, k, d, k-1-j)
			}
		}
		want(t, "full again", allow(t, l, "u1", perDay(limit)), refused(limit, 24*time.Hour, step))
	}
	clock.Add(24 * time.Hour)
	want(t, "all left", allow(t, l, "u1", perDay(limit)), allowed(limit, limit-1, 24*time.Hour))
}

// The clock running backwards (an NTP step, a replica whose clock is
// behind): a key's events count as at the latest time recorded, also in a
// log of the key that had none yet, and leave one window after it, exactly.
func testClockGoingBackwards(t *testing.T, newLimiter NewLimiterFunc) {
	l, clock := setup(t, newLimiter)
	both := []wasmwiz.RateLimit{perMinute(2), perDay(5)}
	want(t, "first", allow(t, l, "u1", both[0]), allowed(2, 1, time.Minute))
	clock.Add(-10 * time.Second)
	if d := allow(t, l, "u1", both...); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("second event, 10s earlier: %+v, want allowed with 0 remaining", d)
	}
	// Both events count as at the later time: room one window after it.
	clock.Add(10*time.Second + time.Minute - time.Millisecond)
	if d := allow(t, l, "u1", both...); d.Allowed || d.RetryAfter != time.Millisecond {
		t.Fatalf("1ms before the window ends: %+v, want refused for 1ms", d)
	}
	clock.Add(time.Millisecond)
	if d := allow(t, l, "u1", both...); !d.Allowed || d.Remaining != 1 {
		t.Fatalf("when the window ends: %+v, want allowed with 1 remaining (the minute's)", d)
	}
}

func testConcurrentAllowCountsExactly(t *testing.T, newLimiter NewLimiterFunc) {
	l, _ := setup(t, newLimiter)
	const goroutines, calls, limit = 8, 40, 100
	var ok, no atomic.Int64
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range calls {
				d, err := l.Allow(context.Background(), "hot", []wasmwiz.RateLimit{perMinute(limit), perDay(1000)})
				if err != nil {
					t.Errorf("Allow: %v", err)
					return
				}
				if d.Allowed {
					ok.Add(1)
				} else {
					no.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != limit || no.Load() != goroutines*calls-limit {
		t.Fatalf("allowed %d, refused %d; want %d and %d", ok.Load(), no.Load(), limit, goroutines*calls-limit)
	}
	want(t, "day after the rush", allow(t, l, "hot", perDay(1000)), allowed(1000, 1000-limit-1, 24*time.Hour))
}

func testInvalidInput(t *testing.T, newLimiter NewLimiterFunc) {
	l, _ := setup(t, newLimiter)
	long := string(make([]byte, 513))
	allowCases := []struct {
		name   string
		key    string
		limits []wasmwiz.RateLimit
	}{
		{"empty key", "", []wasmwiz.RateLimit{perMinute(1)}},
		{"key too long", long, []wasmwiz.RateLimit{perMinute(1)}},
		{"no limits", "u1", nil},
		{"zero limit", "u1", []wasmwiz.RateLimit{perMinute(0)}},
		{"negative limit", "u1", []wasmwiz.RateLimit{perMinute(-1)}},
		{"zero window", "u1", []wasmwiz.RateLimit{{Name: "x", Limit: 1}}},
		{"sub-millisecond window", "u1", []wasmwiz.RateLimit{{Name: "x", Limit: 1, Window: 999 * time.Microsecond}}},
		{"negative window", "u1", []wasmwiz.RateLimit{{Name: "x", Limit: 1, Window: -time.Minute}}},
		{"no name", "u1", []wasmwiz.RateLimit{{Limit: 1, Window: time.Minute}}},
		{"name twice", "u1", []wasmwiz.RateLimit{perMinute(1), perMinute(2)}},
	}
	for _, tt := range allowCases {
		t.Run("Allow/"+tt.name, func(t *testing.T) {
			_, err := l.Allow(context.Background(), tt.key, tt.limits)
			if code := wasmwiz.ErrorCode(err); code != wasmwiz.EINVALID {
				t.Fatalf("error %v (code %q), want EINVALID", err, code)
			}
		})
	}
	acquireCases := []struct {
		name string
		key  string
		max  int
		ttl  time.Duration
	}{
		{"empty key", "", 1, time.Minute},
		{"key too long", long, 1, time.Minute},
		{"zero max", "u1", 0, time.Minute},
		{"negative max", "u1", -3, time.Minute},
		{"zero ttl", "u1", 1, 0},
		{"sub-millisecond ttl", "u1", 1, time.Microsecond},
	}
	for _, tt := range acquireCases {
		t.Run("Acquire/"+tt.name, func(t *testing.T) {
			release, ok, err := l.Acquire(context.Background(), tt.key, tt.max, tt.ttl)
			if code := wasmwiz.ErrorCode(err); code != wasmwiz.EINVALID || ok {
				t.Fatalf("ok %v, error %v (code %q), want EINVALID", ok, err, code)
			}
			if release != nil {
				release()
			}
		})
	}
	// Nothing was counted by the refused input.
	want(t, "valid after invalid", allow(t, l, "u1", perMinute(1)), allowed(1, 0, time.Minute))
}

// acquire calls Acquire and fails the test on an error.
func acquire(t *testing.T, l wasmwiz.RateLimiter, key string, maxSlots int, ttl time.Duration) (func(), bool) {
	t.Helper()
	release, ok, err := l.Acquire(context.Background(), key, maxSlots, ttl)
	if err != nil {
		t.Fatalf("Acquire(%q): %v", key, err)
	}
	if release == nil {
		t.Fatalf("Acquire(%q) returned a nil release", key)
	}
	return release, ok
}

func testAcquireHoldsMaxSlots(t *testing.T, newLimiter NewLimiterFunc) {
	l, _ := setup(t, newLimiter)
	var releases []func()
	for i := range 3 {
		release, ok := acquire(t, l, "u1", 3, time.Minute)
		if !ok {
			t.Fatalf("slot %d refused", i+1)
		}
		releases = append(releases, release)
	}
	if release, ok := acquire(t, l, "u1", 3, time.Minute); ok {
		release()
		t.Fatal("4th slot of 3 granted")
	}
	if _, ok := acquire(t, l, "u2", 3, time.Minute); !ok {
		t.Fatal("another key's slot refused")
	}
	releases[0]()
	releases[0]() // a second release frees nothing more
	if _, ok := acquire(t, l, "u1", 3, time.Minute); !ok {
		t.Fatal("slot refused after a release")
	}
	if _, ok := acquire(t, l, "u1", 3, time.Minute); ok {
		t.Fatal("double release freed two slots")
	}
	// A lower max counts the slots already held.
	if _, ok := acquire(t, l, "u1", 2, time.Minute); ok {
		t.Fatal("slot granted over a lowered max")
	}
	if _, ok := acquire(t, l, "u1", 4, time.Minute); !ok {
		t.Fatal("slot refused under a raised max")
	}
}

func testAcquireFreesDeadHolders(t *testing.T, newLimiter NewLimiterFunc) {
	l, clock := setup(t, newLimiter)
	acquire(t, l, "u1", 2, 30*time.Second)
	clock.Add(10 * time.Second)
	acquire(t, l, "u1", 2, 30*time.Second)
	clock.Add(20*time.Second - time.Millisecond)
	if _, ok := acquire(t, l, "u1", 2, 30*time.Second); ok {
		t.Fatal("slot granted 1ms before the first holder's ttl")
	}
	clock.Add(time.Millisecond)
	if _, ok := acquire(t, l, "u1", 2, 30*time.Second); !ok {
		t.Fatal("dead holder's slot not freed at its ttl")
	}
	if _, ok := acquire(t, l, "u1", 2, 30*time.Second); ok {
		t.Fatal("second holder's slot freed before its ttl")
	}
}

func testStaleReleaseFreesNothing(t *testing.T, newLimiter NewLimiterFunc) {
	l, clock := setup(t, newLimiter)
	stale, _ := acquire(t, l, "u1", 1, 10*time.Second)
	clock.Add(10 * time.Second)
	if _, ok := acquire(t, l, "u1", 1, 10*time.Second); !ok {
		t.Fatal("expired slot not taken over")
	}
	stale() // the dead holder comes back: it must not free the new holder's slot
	if _, ok := acquire(t, l, "u1", 1, 10*time.Second); ok {
		t.Fatal("a stale release freed another holder's slot")
	}
}

func testConcurrentAcquireCountsExactly(t *testing.T, newLimiter NewLimiterFunc) {
	l, _ := setup(t, newLimiter)
	const goroutines, maxSlots = 32, 5
	var granted atomic.Int64
	var mu sync.Mutex
	var releases []func()
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			release, ok, err := l.Acquire(context.Background(), "hot", maxSlots, time.Minute)
			if err != nil {
				t.Errorf("Acquire: %v", err)
				return
			}
			if ok {
				granted.Add(1)
				mu.Lock()
				releases = append(releases, release)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if granted.Load() != maxSlots {
		t.Fatalf("granted %d slots, want %d", granted.Load(), maxSlots)
	}
	// Every holder releases: all slots are free again.
	for _, release := range releases {
		release()
	}
	for i := range maxSlots {
		if _, ok := acquire(t, l, "hot", maxSlots, time.Minute); !ok {
			t.Fatalf("slot %d refused after every holder released", i+1)
		}
	}
}

func testAcquireAndAllowAreSeparate(t *testing.T, newLimiter NewLimiterFunc) {
	l, _ := setup(t, newLimiter)
	acquire(t, l, "u1", 1, time.Minute)
	want(t, "allow beside a slot", allow(t, l, "u1", perMinute(1)), allowed(1, 0, time.Minute))
	if _, ok := acquire(t, l, "u1", 2, time.Minute); !ok {
		t.Fatal("an event took a slot")
	}
}

func testStats(t *testing.T, newLimiter NewLimiterFunc) {
	l, _ := setup(t, newLimiter)
	s, ok := l.(Stater)
	if !ok {
		t.Fatalf("%T has no Stats method", l)
	}
	for range 5 {
		allow(t, l, "u1", perMinute(3))
	}
	acquire(t, l, "u1", 1, time.Minute)
	acquire(t, l, "u1", 1, time.Minute)
	acquire(t, l, "u1", 1, time.Minute)
	got := s.Stats()
	wantStats := wasmwiz.RateLimitStats{Allowed: 3, Limited: 2, Acquired: 1, AcquireRefused: 2}
	if got != wantStats {
		t.Fatalf("Stats() = %+v, want %+v", got, wantStats)
	}
}

// admission is one run of key under quotas with max slots.
func admission(key string, maxSlots int, quotas ...wasmwiz.RateLimit) wasmwiz.Admission {
	return wasmwiz.Admission{Key: key, Quotas: quotas, MaxConcurrent: maxSlots, SlotTTL: time.Minute}
}

// admit calls Admit and fails the test on an error or a release missing
// from an admitted answer.
func admit(t *testing.T, l wasmwiz.RateLimiter, a wasmwiz.Admission) wasmwiz.Admitted {
	t.Helper()
	adm, err := l.Admit(context.Background(), a)
	if err != nil {
		t.Fatalf("Admit(%q): %v", a.Key, err)
	}
	if adm.OK() != (adm.Release != nil) {
		t.Fatalf("Admit(%q): admitted %v with release %v", a.Key, adm.OK(), adm.Release != nil)
	}
	return adm
}

// testAdmitTakesSlotAndQuota: an admitted run holds one of the key's slots
// (the ones Acquire counts) and one event of each quota (the ones Allow
// counts), decided as Allow decides.
func testAdmitTakesSlotAndQuota(t *testing.T, newLimiter NewLimiterFunc) {
	l, _ := setup(t, newLimiter)
	adm := admit(t, l, admission("u1", 2, perMinute(3), perDay(10)))
	if !adm.OK() || adm.Stale || adm.Concurrency {
		t.Fatalf("first admission: %+v", adm)
	}
	want(t, "first admission", adm.Decision, allowed(3, 2, time.Minute))
	if _, ok := acquire(t, l, "u1", 2, time.Minute); !ok {
		t.Fatal("the second of two slots refused beside one admission")
	}
	if _, ok := acquire(t, l, "u1", 2, time.Minute); ok {
		t.Fatal("an admission took no slot")
	}
	want(t, "allow after an admission", allow(t, l, "u1", perMinute(3), perDay(10)), allowed(3, 1, time.Minute))
}

// testAdmitConcurrencyRefusalConsumesNothing: with every slot taken an
// admission is refused for concurrency and takes no quota event.
func testAdmitConcurrencyRefusalConsumesNothing(t *testing.T, newLimiter NewLimiterFunc) {
	l, _ := setup(t, newLimiter)
	first := admit(t, l, admission("u1", 1, perMinute(2)))
	for range 5 {
		adm := admit(t, l, admission("u1", 1, perMinute(2)))
		if !adm.Concurrency || adm.OK() {
			t.Fatalf("admission over the slots: %+v", adm)
		}
	}
	first.Release(false)
	want(t, "after the release", admit(t, l, admission("u1", 1, perMinute(2))).Decision, allowed(2, 0, time.Minute))
}

// testAdmitQuotaRefusalTakesNoSlot: an admission a quota refuses holds no
// slot and records no event in any quota.
func testAdmitQuotaRefusalTakesNoSlot(t *testing.T, newLimiter NewLimiterFunc) {
	l, clock := setup(t, newLimiter)
	a := admit(t, l, admission("u1", 5, perMinute(1), perDay(10)))
	a.Release(false)
	clock.Add(10 * time.Second)
	for range 3 {
		adm := admit(t, l, admission("u1", 1, perMinute(1), perDay(10)))
		if adm.OK() || adm.Concurrency {
			t.Fatalf("admission over the minute quota: %+v", adm)
		}
		want(t, "refused by the minute", adm.Decision, refused(1, 50*time.Second, 50*time.Second))
	}
	if _, ok := acquire(t, l, "u1", 1, time.Minute); !ok {
		t.Fatal("a refused admission kept a slot")
	}
	want(t, "the day counts one event", allow(t, l, "u1", perDay(10)), allowed(10, 8, 24*time.Hour))
}

// testAdmitReleaseAndRefund: release frees the slot, once however often it
// is called; a refund also gives the quota events back.
func testAdmitReleaseAndRefund(t *testing.T, newLimiter NewLimiterFunc) {
	l, clock := setup(t, newLimiter)
	a := admit(t, l, admission("u1", 1, perMinute(2)))
	clock.Add(time.Second)
	b := admit(t, l, admission("u2", 1, perMinute(2)))
	a.Release(false)
	a.Release(true) // a second call changes nothing: no refund after a release
	want(t, "u1 after a release", admit(t, l, admission("u1", 2, perMinute(2))).Decision, allowed(2, 0, time.Minute))
	b.Release(true)
	b.Release(true)
	c := admit(t, l, admission("u2", 1, perMinute(2)))
	want(t, "u2 after a refund", c.Decision, allowed(2, 1, time.Minute))
	if adm := admit(t, l, admission("u2", 1, perMinute(2))); !adm.Concurrency {
		t.Fatalf("u2's slot is free while an admission holds it: %+v", adm)
	}
}

// testAdmitCacheEpoch: the limiter's epoch is none (0) until a database
// epoch is published, then changes with every other one published (to a
// value it never had, also when a database epoch comes back) and stays with
// the same one published again; an admission naming another epoch is stale
// and takes nothing; 0 checks nothing.
func testAdmitCacheEpoch(t *testing.T, newLimiter NewLimiterFunc) {
	l, _ := setup(t, newLimiter)
	ctx := context.Background()
	current := func() int64 {
		t.Helper()
		adm := admit(t, l, admission("probe", 1000, perDay(1_000_000)))
		adm.Release(true)
		return adm.Epoch
	}
	publish := func(e int64) {
		t.Helper()
		if err := l.PublishCacheEpoch(ctx, e); err != nil {
			t.Fatalf("PublishCacheEpoch(%d): %v", e, err)
		}
	}
	if e := current(); e != 0 {
		t.Fatalf("epoch %d before any was published", e)
	}
	seen := map[int64]bool{}
	publish(7)
	e7 := current()
	if e7 == 0 {
		t.Fatal("no epoch after one was published")
	}
	seen[e7] = true
	publish(7)
	if e := current(); e != e7 {
		t.Fatalf("the same database epoch published again moved the epoch from %d to %d", e7, e)
	}

	a := admission("u1", 1, perMinute(2))
	a.Epoch = e7 + 1000
	if adm := admit(t, l, a); !adm.Stale || adm.Epoch != e7 || adm.OK() {
		t.Fatalf("admission under another epoch: %+v", adm)
	}
	a.Epoch = e7
	adm := admit(t, l, a)
	if !adm.OK() || adm.Epoch != e7 {
		t.Fatalf("admission under the current epoch: %+v", adm)
	}
	want(t, "the stale admission took no event", adm.Decision, allowed(2, 1, time.Minute))
	adm.Release(false)

	for _, db := range []int64{8, 5, 7} { // 5 and 7: a database restored from a backup
		publish(db)
		e := current()
		if seen[e] || e == 0 {
			t.Fatalf("database epoch %d brought back limiter epoch %d (seen: %v)", db, e, seen)
		}
		seen[e] = true
		if stale := admit(t, l, a); !stale.Stale || stale.Epoch != e {
			t.Fatalf("admission under %d after %d was published: %+v", a.Epoch, db, stale)
		}
		a.Epoch = e
	}
	a.Epoch = 0
	if adm := admit(t, l, a); adm.Stale || adm.Epoch == 0 {
		t.Fatalf("admission with nothing to check: %+v", adm)
	}
}

// testConcurrentAdmitCountsExactly: admissions racing for one key take
// exactly the slots there are and never more events than the quota.
func testConcurrentAdmitCountsExactly(t *testing.T, newLimiter NewLimiterFunc) {
	l, _ := setup(t, newLimiter)
	const goroutines, maxSlots, quota = 32, 5, 20
	var held, refusedSlot, refusedQuota atomic.Int64
	var mu sync.Mutex
	var releases []func(bool)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range 3 {
				adm, err := l.Admit(context.Background(), admission("hot", maxSlots, perMinute(quota)))
				switch {
				case err != nil:
					t.Errorf("Admit: %v", err)
					return
				case adm.OK():
					held.Add(1)
					mu.Lock()
					releases = append(releases, adm.Release)
					mu.Unlock()
				case adm.Concurrency:
					refusedSlot.Add(1)
				default:
					refusedQuota.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if held.Load() != maxSlots {
		t.Fatalf("%d admitted with %d slots and no release", held.Load(), maxSlots)
	}
	for _, r := range releases {
		r(false)
	}
	n := int64(0)
	for {
		adm := admit(t, l, admission("hot", 1000, perMinute(quota)))
		if !adm.OK() {
			break
		}
		n++
	}
	if n+maxSlots != quota {
		t.Fatalf("after %d admissions %d more fit a quota of %d", maxSlots, n, quota)
	}
}

func testAdmitInvalidInput(t *testing.T, newLimiter NewLimiterFunc) {
	l, _ := setup(t, newLimiter)
	for name, a := range map[string]wasmwiz.Admission{
		"no key":         {Quotas: []wasmwiz.RateLimit{perMinute(1)}, MaxConcurrent: 1, SlotTTL: time.Minute},
		"no quota":       {Key: "u1", MaxConcurrent: 1, SlotTTL: time.Minute},
		"no slot":        {Key: "u1", Quotas: []wasmwiz.RateLimit{perMinute(1)}, SlotTTL: time.Minute},
		"no ttl":         {Key: "u1", Quotas: []wasmwiz.RateLimit{perMinute(1)}, MaxConcurrent: 1},
		"negative epoch": {Key: "u1", Quotas: []wasmwiz.RateLimit{perMinute(1)}, MaxConcurrent: 1, SlotTTL: time.Minute, Epoch: -1},
	} {
		if _, err := l.Admit(context.Background(), a); wasmwiz.ErrorCode(err) != wasmwiz.EINVALID {
			t.Errorf("%s: %v, want EINVALID", name, err)
		}
	}
}

// named is an admission of holder in key's set "background" with max slots
// under quotas.
func named(key, holder string, maxSlots int, quotas ...wasmwiz.RateLimit) wasmwiz.Admission {
	a := admission(key, maxSlots, quotas...)
	a.SlotSet, a.Holder = "background", holder
	return a
}

// releaseSlot calls ReleaseSlot and fails the test on an error.
func releaseSlot(t *testing.T, l wasmwiz.RateLimiter, key, set, holder string) {
	t.Helper()
	if err := l.ReleaseSlot(context.Background(), key, set, holder); err != nil {
		t.Fatalf("ReleaseSlot(%q, %q, %q): %v", key, set, holder, err)
	}
}

// testNamedSlotsCountedApart: a named set's slots are counted apart from
// the runs' (Acquire's) and from other sets, while the quotas are the
// key's, whichever set an admission takes its slot in; an admission
// refused for the named set's slots takes no event.
func testNamedSlotsCountedApart(t *testing.T, newLimiter NewLimiterFunc) {
	l, _ := setup(t, newLimiter)
	bg := admit(t, l, named("u1", "run_1", 1, perMinute(5)))
	want(t, "the first background admission", bg.Decision, allowed(5, 4, time.Minute))
	for range 3 {
		if adm := admit(t, l, named("u1", "run_2", 1, perMinute(5))); !adm.Concurrency || adm.OK() {
			t.Fatalf("a second background admission of 1: %+v", adm)
		}
	}
	run := admit(t, l, admission("u1", 1, perMinute(5)))
	want(t, "a run beside a background run", run.Decision, allowed(5, 3, time.Minute))
	if _, ok := acquire(t, l, "u1", 2, time.Minute); !ok {
		t.Fatal("the background run's slot counted among the runs'")
	}
	other := named("u1", "run_3", 1, perMinute(5))
	other.SlotSet = "other"
	want(t, "a set of another name", admit(t, l, other).Decision, allowed(5, 2, time.Minute))
	want(t, "another key's set", admit(t, l, named("u2", "run_1", 1, perMinute(5))).Decision, allowed(5, 4, time.Minute))
	want(t, "the refused admissions took no event", allow(t, l, "u1", perMinute(5)), allowed(5, 1, time.Minute))
}

// testReleaseSlotByHolder: ReleaseSlot gives back the slot its holder holds
// and no other (a holder released twice, of another set or key, or holding
// nothing frees nothing); Release of the admission does the same, and its
// refund gives the event back.
func testReleaseSlotByHolder(t *testing.T, newLimiter NewLimiterFunc) {
	l, _ := setup(t, newLimiter)
	admit(t, l, named("u1", "run_1", 2, perMinute(10)))
	admit(t, l, named("u1", "run_2", 2, perMinute(10)))
	if adm := admit(t, l, named("u1", "run_3", 2, perMinute(10))); !adm.Concurrency {
		t.Fatalf("a third background admission of 2: %+v", adm)
	}
	releaseSlot(t, l, "u1", "background", "run_9") // holds nothing
	releaseSlot(t, l, "u1", "other", "run_1")      // another set
	releaseSlot(t, l, "u2", "background", "run_1") // another key
	if adm := admit(t, l, named("u1", "run_3", 2, perMinute(10))); !adm.Concurrency {
		t.Fatalf("a release of another holder, set or key freed a slot: %+v", adm)
	}
	releaseSlot(t, l, "u1", "background", "run_1")
	releaseSlot(t, l, "u1", "background", "run_1")
	third := admit(t, l, named("u1", "run_3", 2, perMinute(10)))
	if !third.OK() {
		t.Fatalf("the slot given back by its holder's name was not free: %+v", third)
	}
	if adm := admit(t, l, named("u1", "run_4", 2, perMinute(10))); !adm.Concurrency {
		t.Fatalf("a release twice freed two slots: %+v", adm)
	}
	third.Release(true)
	fourth := admit(t, l, named("u1", "run_4", 2, perMinute(10)))
	want(t, "after a refund", fourth.Decision, allowed(10, 7, time.Minute))
	releaseSlot(t, l, "u1", "background", "run_4")
	fourth.Release(false) // after ReleaseSlot: frees nothing more
	admit(t, l, named("u1", "run_5", 2, perMinute(10)))
	if adm := admit(t, l, named("u1", "run_6", 2, perMinute(10))); !adm.Concurrency {
		t.Fatalf("Release after ReleaseSlot freed another slot: %+v", adm)
	}
}

// testNamedSlotsWithoutQuotas: an admission of a named set without quotas
// takes a slot and no event, and is allowed with no limit.
func testNamedSlotsWithoutQuotas(t *testing.T, newLimiter NewLimiterFunc) {
	l, _ := setup(t, newLimiter)
	want(t, "an event first", allow(t, l, "u1", perMinute(2)), allowed(2, 1, time.Minute))
	adm := admit(t, l, named("u1", "run_1", 1))
	if !adm.OK() {
		t.Fatalf("an admission without quotas: %+v", adm)
	}
	want(t, "an admission without quotas", adm.Decision, wasmwiz.RateDecision{Allowed: true})
	if adm := admit(t, l, named("u1", "run_2", 1)); !adm.Concurrency {
		t.Fatalf("a second admission without quotas of 1: %+v", adm)
	}
	want(t, "no event taken", allow(t, l, "u1", perMinute(2)), allowed(2, 0, time.Minute))
	adm.Release(true) // nothing to refund but the slot
	if adm := admit(t, l, named("u1", "run_2", 1)); !adm.OK() {
		t.Fatalf("after the release: %+v", adm)
	}
}

// testNamedSlotsFreeDeadHolders: a named slot whose holder was never given
// back frees itself after its ttl, exactly.
func testNamedSlotsFreeDeadHolders(t *testing.T, newLimiter NewLimiterFunc) {
	l, clock := setup(t, newLimiter)
	a := named("u1", "run_1", 1, perDay(100))
	a.SlotTTL = 30 * time.Second
	admit(t, l, a)
	clock.Add(30*time.Second - time.Millisecond)
	a.Holder = "run_2"
	if adm := admit(t, l, a); !adm.Concurrency {
		t.Fatalf("a slot freed 1ms before its holder's ttl: %+v", adm)
	}
	clock.Add(time.Millisecond)
	if adm := admit(t, l, a); !adm.OK() {
		t.Fatalf("a dead holder's slot not freed at its ttl: %+v", adm)
	}
	releaseSlot(t, l, "u1", "background", "run_1") // the dead holder comes back: frees nothing
	a.Holder = "run_3"
	if adm := admit(t, l, a); !adm.Concurrency {
		t.Fatalf("a dead holder's release freed its successor's slot: %+v", adm)
	}
}

func testNamedSlotsInvalidInput(t *testing.T, newLimiter NewLimiterFunc) {
	l, _ := setup(t, newLimiter)
	long := string(make([]byte, 257))
	for name, a := range map[string]wasmwiz.Admission{
		"set without holder": {Key: "u1", SlotSet: "background", MaxConcurrent: 1, SlotTTL: time.Minute},
		"holder without set": {Key: "u1", Holder: "run_1", Quotas: []wasmwiz.RateLimit{perMinute(1)}, MaxConcurrent: 1, SlotTTL: time.Minute},
		"long holder":        {Key: "u1", SlotSet: "background", Holder: long, MaxConcurrent: 1, SlotTTL: time.Minute},
		"no key":             {SlotSet: "background", Holder: "run_1", MaxConcurrent: 1, SlotTTL: time.Minute},
		"bad quota":          {Key: "u1", SlotSet: "background", Holder: "run_1", Quotas: []wasmwiz.RateLimit{perMinute(0)}, MaxConcurrent: 1, SlotTTL: time.Minute},
		"no slot":            {Key: "u1", SlotSet: "background", Holder: "run_1", SlotTTL: time.Minute},
		"no ttl":             {Key: "u1", SlotSet: "background", Holder: "run_1", MaxConcurrent: 1},
	} {
		if _, err := l.Admit(context.Background(), a); wasmwiz.ErrorCode(err) != wasmwiz.EINVALID {
			t.Errorf("Admit, %s: %v, want EINVALID", name, err)
		}
	}
	for name, args := range map[string][3]string{
		"no key":    {"", "background", "run_1"},
		"no set":    {"u1", "", "run_1"},
		"no holder": {"u1", "background", ""},
	} {
		if err := l.ReleaseSlot(context.Background(), args[0], args[1], args[2]); wasmwiz.ErrorCode(err) != wasmwiz.EINVALID {
			t.Errorf("ReleaseSlot, %s: %v, want EINVALID", name, err)
		}
	}
	if adm := admit(t, l, named("u1", "run_1", 1)); !adm.OK() {
		t.Fatalf("valid after invalid: %+v", adm)
	}
}
