package http_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// TestFindRunWaitIsBounded: a run id carries its creation time, and a run
// younger than a few seconds that the store lacks is waited for (its record
// may be in another replica's write batch). A caller writes any time into
// an id it makes up: one dated in the year 9999 must not hold its request,
// polling the store, until the client goes away. It is waited for as a run
// made now, then answered 404, on the record route and the event stream.
func TestFindRunWaitIsBounded(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		at   time.Time // the id's time
		path string    // after /api/v1/runs/{id}
	}{
		{"record, id from the far future", time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), ""},
		{"events, id from the far future", time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), "/events"},
		{"record, id made now", base, ""},
	}
	// Each store read moves the clock one second: the wait of
	// runRecordWait (5 s) is over after five reads, whatever the id says.
	// Past giveUp reads the request is cancelled, as a client going away
	// would: the unbounded wait ends there instead of hanging the test.
	const giveUp = 50
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := testenv.NewClock(base)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var mu sync.Mutex
			reads := 0
			f := newFixture(t, func(o *wwhttp.Options) { o.Now = clock.Now })
			f.runs.FindRunByIDFn = func(context.Context, string) (*wasmwiz.UsageRecord, error) {
				mu.Lock()
				defer mu.Unlock()
				if reads++; reads >= giveUp {
					cancel()
				}
				clock.Add(time.Second)
				return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "not found")
			}
			id := wasmwiz.NewRunID(tt.at)
			res := f.do(request{method: "GET", path: "/api/v1/runs/" + id + tt.path, key: userKey, ctx: ctx})
			mu.Lock()
			n := reads
			mu.Unlock()
			if n >= giveUp {
				t.Fatalf("the store was read %d times and the request only ended when its client went away", n)
			}
			if res.status != 404 || res.errorCode(t) != wasmwiz.ENOTFOUND {
				t.Fatalf("answer %d %s, want 404 ENOTFOUND", res.status, res.body)
			}
			if n < 2 {
				t.Fatalf("the store was read %d times: a fresh run's record was not waited for", n)
			}
		})
	}
}

// TestFindRunPollsLessAsItWaits: a run id made up by the caller, dated now,
// is waited for runRecordWait (5 s) before it answers 404, on the record
// route and the event stream; meanwhile the store is asked again less
// often as the wait goes on, a handful of times in all rather than every
// 50 ms (100 reads). The clock is the real one: the count holds on a slow
// machine too, which can only read less often.
func TestFindRunPollsLessAsItWaits(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"", "/events"} {
		t.Run("route"+path, func(t *testing.T) {
			t.Parallel()
			var reads atomic.Int64
			f := newFixture(t, nil)
			f.runs.FindRunByIDFn = func(context.Context, string) (*wasmwiz.UsageRecord, error) {
				reads.Add(1)
				return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "not found")
			}
			id := wasmwiz.NewRunID(time.Now())
			res := f.do(request{method: "GET", path: "/api/v1/runs/" + id + path, key: userKey})
			if res.status != 404 || res.errorCode(t) != wasmwiz.ENOTFOUND {
				t.Fatalf("answer %d %s, want 404 ENOTFOUND", res.status, res.body)
			}
			// 50 ms doubling to 1 s over 5 s: reads at 0, 0.05, 0.15, 0.35,
			// 0.75, 1.55, 2.55, 3.55, 4.55 and 5 s.
			if n := reads.Load(); n < 2 || n > 12 {
				t.Fatalf("the store was read %d times for a made-up id, want a handful (2 to 12)", n)
			}
		})
	}
}
