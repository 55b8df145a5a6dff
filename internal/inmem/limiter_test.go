package inmem_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
	"github.com/wasmwiz/wasmwiz/internal/limitertest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	limitertest.Run(t, func(t *testing.T, clock *limitertest.Clock) wasmwiz.RateLimiter {
		return inmem.New(inmem.Options{Now: clock.Now})
	})
}

func TestHammerExactCounts(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(limitertest.Start)
	l := inmem.New(inmem.Options{Now: clock.Now})
	const keys, goroutines, calls, limit = 16, 32, 300, 137
	limits := []wasmwiz.RateLimit{
		{Name: "second", Limit: limit, Window: time.Second},
		{Name: "day", Limit: 1_000_000, Window: 24 * time.Hour},
	}
	var allowed [keys]atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range calls {
				k := (g + i) % keys
				d, err := l.Allow(context.Background(), fmt.Sprintf("user:%d", k), limits)
				if err != nil {
					t.Errorf("Allow: %v", err)
					return
				}
				if d.Allowed {
					allowed[k].Add(1)
				}
				if i%50 == 0 {
					if release, ok, err := l.Acquire(context.Background(), fmt.Sprintf("user:%d", k), 3, time.Minute); err != nil {
						t.Errorf("Acquire: %v", err)
					} else if ok {
						release()
					}
				}
			}
		})
	}
	testenv.Wait(t, "the concurrent callers", wg.Wait)
	total := int64(0)
	for k := range keys {
		if got := allowed[k].Load(); got != limit {
			t.Errorf("key %d: %d allowed, want exactly %d", k, got, limit)
		}
		total += allowed[k].Load()
	}
	if s := l.Stats(); s.Allowed != uint64(total) || s.Limited != uint64(goroutines*calls)-uint64(total) {
		t.Errorf("Stats() = %+v, want %d allowed and %d limited", s, total, goroutines*calls-int(total))
	}
}

func TestSweepBoundsMemory(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(limitertest.Start)
	l := inmem.New(inmem.Options{Now: clock.Now, SweepInterval: time.Second})
	minute := []wasmwiz.RateLimit{{Name: "minute", Limit: 5, Window: time.Minute}}
	for i := range 5000 {
		if _, err := l.Allow(context.Background(), fmt.Sprintf("ip:%d", i), minute); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := l.Acquire(context.Background(), "held", 1, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := l.Keys(); got != 5001 {
		t.Fatalf("Keys() = %d after 5001 keys, want 5001", got)
	}
	clock.Add(time.Minute)
	touchAllShards(t, l)
	if got := l.Keys(); got != 1 {
		t.Fatalf("Keys() = %d after the window passed, want 1 (the held slot)", got)
	}
	clock.Add(time.Minute)
	touchAllShards(t, l)
	if got := l.Keys(); got != 0 {
		t.Fatalf("Keys() = %d after the slot's ttl, want 0", got)
	}
}

// touchAllShards makes a call on enough keys that every shard sweeps; the
// calls take a slot and give it back, which leaves no state behind.
func touchAllShards(t *testing.T, l *inmem.Limiter) {
	t.Helper()
	for i := range 2000 {
		release, _, err := l.Acquire(context.Background(), fmt.Sprintf("probe:%d", i), 1, time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		release()
	}
}

// A day window with a large limit: the log is trimmed as events leave and
// the counts stay exact across compactions of its slice.
func TestLongLogStaysExact(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(limitertest.Start)
	l := inmem.New(inmem.Options{Now: clock.Now})
	const limit = 20_000
	day := []wasmwiz.RateLimit{{Name: "day", Limit: limit, Window: 24 * time.Hour}}
	step := 24 * time.Hour / limit // 4.32s
	for i := range limit {
		d, err := l.Allow(context.Background(), "big", day)
		if err != nil || !d.Allowed || d.Remaining != int64(limit-1-i) {
			t.Fatalf("event %d: %+v, %v", i, d, err)
		}
		clock.Add(step)
	}
	// Now exactly one day after the first event: every further step frees
	// exactly one event, so one is allowed and the next refused.
	for i := range 3 * limit {
		d, _ := l.Allow(context.Background(), "big", day)
		if !d.Allowed || d.Remaining != 0 {
			t.Fatalf("round %d: %+v, want allowed with 0 remaining", i, d)
		}
		d, _ = l.Allow(context.Background(), "big", day)
		if d.Allowed || d.RetryAfter != step {
			t.Fatalf("round %d: %+v, want refused for %v", i, d, step)
		}
		clock.Add(step)
	}
}
