package wasmwiz_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/mock"
)

// cacheFixture is an Executor with a Directory over mock stores that count
// their reads, and a mock limiter with a cache epoch the test moves.
type cacheFixture struct {
	ex  *wasmwiz.Executor
	dir *wasmwiz.Directory

	mu       sync.Mutex
	now      time.Time
	epoch    int64
	fallback bool
	reads    map[string]int // store reads by kind
	tier     wasmwiz.Tier
	revoked  bool
	module   wasmwiz.Module
	admitted []wasmwiz.Admission
	refunds  int
	runs     []*wasmwiz.RunRequest
}

const cacheKey = "ww_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd"

func newCacheFixture(t *testing.T) *cacheFixture {
	t.Helper()
	f := &cacheFixture{now: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC), epoch: 5, reads: map[string]int{}}
	f.tier = *freeTier()
	f.tier.Name, f.tier.MaxStdinBytes = "custom", 10
	f.module = wasmwiz.Module{ID: wasmwiz.NewModuleID(), OwnerID: 1, Name: "m.wasm", SHA256: "feed", SizeBytes: 8, Public: true}
	read := func(kind string) {
		f.mu.Lock()
		f.reads[kind]++
		f.mu.Unlock()
	}
	keys := &mock.APIKeyService{AuthenticateFn: func(ctx context.Context, plaintext string) (*wasmwiz.User, *wasmwiz.APIKey, error) {
		read("key")
		f.mu.Lock()
		defer f.mu.Unlock()
		if plaintext != cacheKey || f.revoked {
			return nil, nil, wasmwiz.Errorf(wasmwiz.EUNAUTHORIZED, "invalid API key")
		}
		t := f.tier
		return &wasmwiz.User{ID: 2, Role: wasmwiz.RoleUser, Tier: t.Name, TierLimits: &t}, &wasmwiz.APIKey{ID: 9}, nil
	}}
	modules := &mock.ModuleService{
		FindModuleByIDFn: func(ctx context.Context, id string) (*wasmwiz.Module, error) {
			read("module")
			f.mu.Lock()
			defer f.mu.Unlock()
			u := wasmwiz.UserFromContext(ctx)
			if id != f.module.ID || !(f.module.Public || f.module.OwnerID == u.ID) {
				return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module not found")
			}
			m := f.module
			return &m, nil
		},
		FindModuleWasmFn: func(ctx context.Context, id string) (*wasmwiz.Module, error) {
			read("bytes")
			m := f.module
			m.Wasm = wasmHeader
			return &m, nil
		},
	}
	limiter := &mock.RateLimiter{AdmitFn: func(ctx context.Context, a wasmwiz.Admission) (wasmwiz.Admitted, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.admitted = append(f.admitted, a)
		if a.Epoch != 0 && a.Epoch != f.epoch {
			return wasmwiz.Admitted{Stale: true, Epoch: f.epoch, Fallback: f.fallback}, nil
		}
		return wasmwiz.Admitted{Epoch: f.epoch, Fallback: f.fallback,
			Decision: wasmwiz.RateDecision{Allowed: true, Limit: a.Quotas[0].Limit, Remaining: 1},
			Release: func(refund bool) {
				if refund {
					f.mu.Lock()
					f.refunds++
					f.mu.Unlock()
				}
			}}, nil
	}}
	engine := &mock.Engine{RunFn: func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		f.mu.Lock()
		f.runs = append(f.runs, req)
		f.mu.Unlock()
		return &wasmwiz.Result{Status: wasmwiz.StatusOK}, nil
	}}
	clock := func() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
	f.dir = &wasmwiz.Directory{Keys: keys, Modules: modules, Now: clock}
	f.ex = &wasmwiz.Executor{Engine: engine, Modules: modules, Limiter: limiter, Directory: f.dir, Now: clock}
	return f
}

// execute authenticates the cache key as the execute routes do and runs req.
func (f *cacheFixture) execute(t *testing.T, req *wasmwiz.RunRequest) error {
	t.Helper()
	ctx, err := f.dir.Authenticate(context.Background(), cacheKey, true)
	if err != nil {
		return err
	}
	c, err := f.ex.Caller(ctx, "")
	if err != nil {
		return err
	}
	_, err = f.ex.Execute(ctx, c, req)
	return err
}

func (f *cacheFixture) readsOf(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads[kind]
}

func (f *cacheFixture) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// warm runs until a request needs no store read, and fails if that takes
// more than a few.
func (f *cacheFixture) warm(t *testing.T, req *wasmwiz.RunRequest) {
	t.Helper()
	for i := 0; i < 3; i++ {
		before := f.readsOf("key") + f.readsOf("module")
		if err := f.execute(t, req); err != nil {
			t.Fatalf("warming: %v", err)
		}
		if f.readsOf("key")+f.readsOf("module") == before {
			return
		}
	}
	t.Fatal("three requests and every one still read the store")
}

// TestDirectoryWarmPathReadsNothing: once warm, an execute of a stored
// module reads neither the key, the tier, the module nor its bytes, and
// hands the limiter the epoch its cache was read under.
func TestDirectoryWarmPathReadsNothing(t *testing.T) {
	t.Parallel()
	f := newCacheFixture(t)
	req := &wasmwiz.RunRequest{ModuleID: f.module.ID}
	f.warm(t, req)
	keys, mods := f.readsOf("key"), f.readsOf("module")
	for range 5 {
		if err := f.execute(t, req); err != nil {
			t.Fatal(err)
		}
	}
	if f.readsOf("key") != keys || f.readsOf("module") != mods || f.readsOf("bytes") != 0 {
		t.Fatalf("warm requests read the store: %v", f.reads)
	}
	last := f.admitted[len(f.admitted)-1]
	if last.Epoch != 5 {
		t.Fatalf("the admission carried epoch %d, want the cache's 5", last.Epoch)
	}
	if run := f.runs[len(f.runs)-1]; run.SHA256 != "feed" || run.Wasm != nil || run.LoadWasm == nil || run.Name != "m.wasm" {
		t.Fatalf("the engine got %+v; want the module by digest", run)
	}
	if st := f.dir.Stats(); st.Hits == 0 || st.Stale != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestDirectoryStale: every change behind a new epoch applies to the next
// request, which reads again what it had cached and is admitted on that.
func TestDirectoryStale(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(f *cacheFixture)
		check  func(t *testing.T, f *cacheFixture, err error)
	}{
		{"key revoked", func(f *cacheFixture) { f.revoked = true }, func(t *testing.T, f *cacheFixture, err error) {
			if wasmwiz.ErrorCode(err) != wasmwiz.EUNAUTHORIZED {
				t.Fatalf("err %v, want EUNAUTHORIZED", err)
			}
		}},
		{"tier's quota changed", func(f *cacheFixture) { f.tier.RunsPerMinute = 77 }, func(t *testing.T, f *cacheFixture, err error) {
			if err != nil {
				t.Fatal(err)
			}
			if a := f.admitted[len(f.admitted)-1]; a.Quotas[0].Limit != 77 || a.Epoch != 0 {
				t.Fatalf("admitted under %+v, want the new quota read for this request", a)
			}
		}},
		{"module made private", func(f *cacheFixture) { f.module.Public = false }, func(t *testing.T, f *cacheFixture, err error) {
			if wasmwiz.ErrorCode(err) != wasmwiz.ENOTFOUND {
				t.Fatalf("err %v, want ENOTFOUND", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newCacheFixture(t)
			req := &wasmwiz.RunRequest{ModuleID: f.module.ID}
			f.warm(t, req)
			runs := len(f.runs)
			f.set(func() { tt.change(f); f.epoch = 6 })
			err := f.execute(t, req)
			tt.check(t, f, err)
			if err != nil && len(f.runs) != runs {
				t.Fatal("the refused request ran")
			}
			if f.dir.Stats().Stale == 0 {
				t.Fatal("no stale admission counted")
			}
		})
	}
}

// TestDirectoryCacheOnlySaysYes: a refusal that rests on cached data is
// checked against the store first: stdin over a cached limit that has since
// been raised runs, and one that is still over it is refused.
func TestDirectoryCacheOnlySaysYes(t *testing.T) {
	t.Parallel()
	f := newCacheFixture(t)
	req := &wasmwiz.RunRequest{Wasm: wasmHeader}
	f.warm(t, req)
	f.set(func() { f.tier.MaxStdinBytes = 100 }) // no epoch yet: the change is not published
	keys := f.readsOf("key")
	if err := f.execute(t, &wasmwiz.RunRequest{Wasm: wasmHeader, Stdin: make([]byte, 50)}); err != nil {
		t.Fatalf("stdin under the raised limit: %v", err)
	}
	if f.readsOf("key") != keys+1 {
		t.Fatalf("the refusal was not checked against the store")
	}
	err := f.execute(t, &wasmwiz.RunRequest{Wasm: wasmHeader, Stdin: make([]byte, 101)})
	if wasmwiz.ErrorCode(err) != wasmwiz.ETOOLARGE {
		t.Fatalf("stdin over the limit in the store: %v", err)
	}
}

// TestDirectoryFallbackMaxAge: while the limiter decides from its fallback,
// a cached entry older than FallbackMaxAge is read again (and the run its
// admission took is refunded), younger ones are used.
func TestDirectoryFallbackMaxAge(t *testing.T) {
	t.Parallel()
	f := newCacheFixture(t)
	req := &wasmwiz.RunRequest{ModuleID: f.module.ID}
	f.warm(t, req)
	f.set(func() { f.fallback = true; f.now = f.now.Add(500 * time.Millisecond) })
	keys := f.readsOf("key")
	if err := f.execute(t, req); err != nil {
		t.Fatal(err)
	}
	if f.readsOf("key") != keys {
		t.Fatal("an entry half a second old was read again")
	}
	f.set(func() { f.now = f.now.Add(wasmwiz.DefaultFallbackMaxAge) })
	if err := f.execute(t, req); err != nil {
		t.Fatal(err)
	}
	if f.readsOf("key") != keys+1 || f.readsOf("module") == 0 {
		t.Fatalf("an entry %v old was used while the fallback decides: %v", wasmwiz.DefaultFallbackMaxAge+500*time.Millisecond, f.reads)
	}
}

// TestExecutorGateRefusalRefunds: a run the replica's gate refuses gives
// its slot and its quota events back.
func TestExecutorGateRefusalRefunds(t *testing.T) {
	t.Parallel()
	f := newCacheFixture(t)
	f.ex.Gate = wasmwiz.NewRunGate(1, 0, time.Second)
	leave, err := f.ex.Gate.Enter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer leave()
	err = f.execute(t, &wasmwiz.RunRequest{Wasm: wasmHeader})
	if wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Fatalf("err %v, want EUNAVAILABLE", err)
	}
	if f.refunds != 1 {
		t.Fatalf("%d refunds, want 1", f.refunds)
	}
}

// TestDirectoryNothingCachedWithoutEpoch: until a limiter answered with an
// epoch, every request reads the store.
func TestDirectoryNothingCachedWithoutEpoch(t *testing.T) {
	t.Parallel()
	f := newCacheFixture(t)
	f.set(func() { f.epoch = 0 })
	for range 3 {
		if err := f.execute(t, &wasmwiz.RunRequest{Wasm: wasmHeader}); err != nil {
			t.Fatal(err)
		}
	}
	if f.readsOf("key") != 3 {
		t.Fatalf("%d key reads for 3 requests without an epoch, want 3", f.readsOf("key"))
	}
}
