package wasmwiz_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
	"github.com/wasmwiz/wasmwiz/internal/mock"
	"github.com/wasmwiz/wasmwiz/internal/postgres/pgtest"
	"github.com/wasmwiz/wasmwiz/internal/sqlite/sqlitetest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// asyncStore is what a background run's admission needs of a real store,
// and what the test sets up through it.
type asyncStore interface {
	wasmwiz.RunStore
	wasmwiz.TierService
	wasmwiz.ModuleService
	CreateUser(ctx context.Context, u *wasmwiz.User) error
}

// asyncStores opens each real store: SQLite, and PostgreSQL in a schema of
// the test's own (WASMWIZ_TEST_POSTGRES_URL; skipped, saying so, without
// it, unless WASMWIZ_TEST_REQUIRE_SERVICES=1).
var asyncStores = []struct {
	name string
	open func(t *testing.T) asyncStore
}{
	{"sqlite", func(t *testing.T) asyncStore { return sqlitetest.Open(t) }},
	{"postgres", func(t *testing.T) asyncStore { return pgtest.Open(t) }},
}

// countingStore counts what a background run's admission asks of the
// database: QueueRun (a write transaction: SQLite's one write connection,
// a PostgreSQL connection waiting on the caller's advisory lock), and the
// reads of a stored module and of the webhook secret.
type countingStore struct {
	asyncStore
	queueRuns, moduleReads, secretReads atomic.Int64
}

func (s *countingStore) QueueRun(ctx context.Context, r *wasmwiz.UsageRecord, in *wasmwiz.RunInput, maxActive int,
	enqueue func(ctx context.Context, tx any, rank int) error) error {
	s.queueRuns.Add(1)
	return s.asyncStore.QueueRun(ctx, r, in, maxActive, enqueue)
}

func (s *countingStore) FindModuleByID(ctx context.Context, id string) (*wasmwiz.Module, error) {
	s.moduleReads.Add(1)
	return s.asyncStore.FindModuleByID(ctx, id)
}

func (s *countingStore) WebhookSecret(ctx context.Context, userID int64) (string, error) {
	s.secretReads.Add(1)
	return s.asyncStore.WebhookSecret(ctx, userID)
}

// TestAsyncRefusedAtItsBoundCostsNoDatabase: on each real store, a caller
// with its one background run queued (max_concurrent 1) sends 20 more
// background runs of a stored module, with a callback: each is refused
// 429 (a concurrency refusal, Retry-After 1s) by the limiter alone, before
// any QueueRun (no write transaction, no row), module read or webhook
// secret read, and spends no quota event; so is one whose quota events
// Executor.Admit took before its body was read (they are given back, and
// so is its runs' slot). The run's end gives its slot back, whichever
// replica ends it: cancelled, finished by another executor on the same
// limiter, failed by the sweeper. When the limiter lost the slot of a run
// the store still counts, the store refuses the next run itself, and that
// refusal keeps its quota event.
func TestAsyncRefusedAtItsBoundCostsNoDatabase(t *testing.T) {
	for _, st := range asyncStores {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), testenv.Patience)
			defer cancel()
			db := st.open(t)
			sys := wasmwiz.SystemContext(ctx)
			tier := *wasmwiz.DefaultTiers()[0]
			tier.Name, tier.MaxConcurrent, tier.RunsPerMinute, tier.RunsPerDay = "one_bg", 1, 5, 100
			if err := db.PutTier(sys, &tier); err != nil {
				t.Fatal(err)
			}
			u := &wasmwiz.User{Email: "bg@example.com", Tier: tier.Name}
			if err := db.CreateUser(sys, u); err != nil {
				t.Fatal(err)
			}
			uctx := wasmwiz.NewContextWithUser(ctx, u)
			mod := &wasmwiz.Module{Name: "m.wasm", Wasm: []byte("\x00asm\x01\x00\x00\x00")}
			if err := db.CreateModule(uctx, mod); err != nil {
				t.Fatal(err)
			}
			if _, err := db.RotateWebhookSecret(uctx); err != nil {
				t.Fatal(err)
			}

			store := &countingStore{asyncStore: db}
			clock := testenv.NewClock(time.Now())
			limiter := inmem.New(inmem.Options{Now: clock.Now}) // shared by both executors, as Redis is by replicas
			queue := &mock.RunQueue{}
			ex := &wasmwiz.Executor{Tiers: db, Modules: store, Runs: store, Queue: queue, Limiter: limiter, Now: clock.Now}
			req := &wasmwiz.RunRequest{ModuleID: mod.ID}
			const hook = "https://example.com/hook"
			admit := func(what string, wantRemaining int64) string {
				t.Helper()
				got, err := ex.ExecuteAsync(uctx, nil, req, hook)
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if got.RateLimit == nil || got.RateLimit.Remaining != wantRemaining {
					t.Fatalf("%s: rate decision %+v, want %d remaining", what, got.RateLimit, wantRemaining)
				}
				return got.ID
			}
			refusedAtBound := func(what string, c *wasmwiz.Caller) {
				t.Helper()
				_, err := ex.ExecuteAsync(uctx, c, req, hook)
				if after, ok := wasmwiz.RetryAfter(err); wasmwiz.ErrorCode(err) != wasmwiz.ERATELIMIT || !wasmwiz.ConcurrencyLimited(err) ||
					!ok || after != time.Second || !strings.Contains(wasmwiz.ErrorMessage(err), "queued or running") {
					t.Fatalf("%s: %v, want ERATELIMIT for the background runs in flight, retry after 1s", what, err)
				}
			}
			noDatabase := func(what string, queueRuns, reads int64) {
				t.Helper()
				if n := store.queueRuns.Load(); n != queueRuns {
					t.Fatalf("%s: %d QueueRun calls, want %d", what, n, queueRuns)
				}
				if m, s := store.moduleReads.Load(), store.secretReads.Load(); m != reads || s != reads {
					t.Fatalf("%s: %d module and %d webhook secret reads, want %d each", what, m, s, reads)
				}
				if counts, _, err := db.CountRuns(ctx); err != nil || counts[wasmwiz.RunQueued]+counts[wasmwiz.RunRunning] != 1 {
					t.Fatalf("%s: runs in flight %v (%v), want 1", what, counts, err)
				}
			}

			first := admit("the first background run", 4)
			noDatabase("the first background run", 1, 1)
			for i := range 20 {
				refusedAtBound(fmt.Sprintf("background run %d over the bound", i+1), nil)
			}
			noDatabase("20 runs refused at the bound", 1, 1)

			// Cancelled, the run gives its slot back; the refused ones
			// spent nothing: one event is gone, not 21.
			if _, err := ex.CancelRun(uctx, first); err != nil {
				t.Fatal(err)
			}
			second := admit("after the cancel", 3)

			// Admitted before its body was read: the quota event Admit took
			// and its runs' slot are given back with the refusal.
			c, err := ex.Caller(uctx, "")
			if err != nil {
				t.Fatal(err)
			}
			_, held, _, err := ex.Admit(uctx, c, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			refusedAtBound("a caller admitted before its body", held)
			held.Release()
			_, again, admitted, err := ex.Admit(uctx, c, time.Second)
			if err != nil || admitted.RateLimit.Remaining != 2 {
				t.Fatalf("Admit after a held refusal: %+v, %v; want its slot free and 2 events left", admitted.RateLimit, err)
			}
			again.Release() // a refund: nothing run
			noDatabase("a held caller refused at the bound", 2, 2)

			// The limiter lost the second run's slot (a lost release, a
			// Redis restart): the store refuses the next run itself, and
			// that refusal keeps its quota event.
			if err := limiter.ReleaseSlot(ctx, wasmwiz.RateKey(u, ""), wasmwiz.BackgroundSlots, second); err != nil {
				t.Fatal(err)
			}
			_, err = ex.ExecuteAsync(uctx, nil, req, hook)
			if wasmwiz.ErrorCode(err) != wasmwiz.ERATELIMIT || !strings.Contains(wasmwiz.ErrorMessage(err), "queued or running") {
				t.Fatalf("with the limiter's slot lost: %v, want the store's ERATELIMIT", err)
			}
			noDatabase("the store's refusal", 3, 3)
			if _, err := ex.CancelRun(uctx, second); err != nil {
				t.Fatal(err)
			}
			third := admit("after the store's refusal", 1) // 5 - run 1, run 2, the store's refusal, run 3
			refusedAtBound("over the bound again", nil)

			// Finished on another replica (an executor of its own on the
			// same limiter), the run gives its slot back there.
			other := &wasmwiz.Executor{Engine: &mock.Engine{RunFn: func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
				return &wasmwiz.Result{Status: wasmwiz.StatusOK}, nil
			}}, Tiers: db, Modules: db, Runs: db, Queue: queue, Limiter: limiter, Now: clock.Now}
			if err := other.RunQueued(ctx, third); err != nil {
				t.Fatal(err)
			}
			if rec, err := db.FindRunByID(sys, third); err != nil || rec.State != wasmwiz.RunDone {
				t.Fatalf("the third run: %+v, %v; want done", rec, err)
			}
			clock.Add(time.Minute) // a fresh minute quota
			fourth := admit("after the run ended on another replica", 4)

			// Failed by a sweeper (its replica stopped mid-run), the run
			// gives its slot back too.
			if _, _, err := db.StartRun(ctx, fourth); err != nil {
				t.Fatal(err)
			}
			refusedAtBound("with the fourth run running", nil)
			clock.Add(time.Minute)
			if n, err := other.FailStaleRuns(ctx, 30*time.Second); err != nil || n != 1 {
				t.Fatalf("FailStaleRuns: %d, %v; want the fourth run failed", n, err)
			}
			admit("after the sweeper failed the run", 4)
		})
	}
}

// leavingStore is a store whose caller goes away (leave) as QueueRun starts.
type leavingStore struct {
	asyncStore
	leave func()
}

func (s *leavingStore) CancelRun(ctx context.Context, id string, webhooks wasmwiz.EnqueueWebhooks) (*wasmwiz.UsageRecord, error) {
	s.leave()
	return s.asyncStore.CancelRun(ctx, id, webhooks)
}

func (s *leavingStore) QueueRun(ctx context.Context, rec *wasmwiz.UsageRecord, in *wasmwiz.RunInput, maxInFlight int,
	enqueue func(context.Context, any, int) error) error {
	s.leave()
	return s.asyncStore.QueueRun(ctx, rec, in, maxInFlight, enqueue)
}

// TestAsyncQueueOutlastsTheCaller: on each real store, a caller that goes
// away while its background run is being written (its client disconnected)
// still has the run queued, and the answer says so: the write is not cut
// short, so that a commit whose outcome the executor did not learn cannot
// leave a run queued with its quota events given back. So with a cancel:
// the run is cancelled and its webhook queued.
func TestAsyncQueueOutlastsTheCaller(t *testing.T) {
	for _, st := range asyncStores {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			db := st.open(t)
			u := &wasmwiz.User{Email: "gone@example.com", Tier: wasmwiz.TierFree}
			if err := db.CreateUser(wasmwiz.SystemContext(context.Background()), u); err != nil {
				t.Fatal(err)
			}
			uctx := wasmwiz.NewContextWithUser(context.Background(), u)
			if _, err := db.RotateWebhookSecret(uctx); err != nil {
				t.Fatal(err)
			}
			ctx, leave := context.WithCancel(uctx)
			defer leave()
			queue := &mock.RunQueue{}
			ex := &wasmwiz.Executor{Tiers: db, Modules: db, Runs: &leavingStore{asyncStore: db, leave: leave}, Queue: queue,
				Limiter: inmem.New(inmem.Options{})}
			got, err := ex.ExecuteAsync(ctx, nil, &wasmwiz.RunRequest{Wasm: []byte("\x00asm\x01\x00\x00\x00")}, "https://example.com/hook")
			if err != nil {
				t.Fatalf("a run whose caller left while it was queued: %v", err)
			}
			rec, err := db.FindRunByID(uctx, got.ID)
			if err != nil || rec.State != wasmwiz.RunQueued {
				t.Fatalf("the run: %+v, %v, want queued", rec, err)
			}
			ctx, leave = context.WithCancel(uctx)
			defer leave()
			ex.Runs = &leavingStore{asyncStore: db, leave: leave}
			if rec, err := ex.CancelRun(ctx, got.ID); err != nil || rec.State != wasmwiz.RunCancelled {
				t.Fatalf("a cancel whose caller left: %+v, %v", rec, err)
			}
			if n := queue.Webhooks.Load(); n != 1 {
				t.Fatalf("%d webhooks queued for the cancelled run, want 1", n)
			}
		})
	}
}
