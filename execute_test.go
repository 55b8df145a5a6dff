package wasmwiz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/mock"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// executorFixture is an Executor on mocks that records what reached them.
type executorFixture struct {
	ex       *wasmwiz.Executor
	engine   *mock.Engine
	limiter  *mock.RateLimiter
	usage    *mock.UsageRecorder
	modules  *mock.ModuleService
	mu       sync.Mutex
	runs     []*wasmwiz.RunRequest
	keys     []string
	released int
}

func freeTier() *wasmwiz.Tier {
	for _, t := range wasmwiz.DefaultTiers() {
		if t.Name == wasmwiz.TierFree {
			return t
		}
	}
	panic("no free tier")
}

func newExecutorFixture(t *testing.T) *executorFixture {
	t.Helper()
	f := &executorFixture{usage: &mock.UsageRecorder{}}
	f.engine = &mock.Engine{RunFn: func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		f.mu.Lock()
		f.runs = append(f.runs, req)
		f.mu.Unlock()
		return &wasmwiz.Result{Status: wasmwiz.StatusOK, Stdout: []byte("hi"), Duration: 2 * time.Millisecond,
			MemoryPeakBytes: 65536, Module: wasmwiz.ModuleInfo{SHA256: "abc"}}, nil
	}}
	f.limiter = &mock.RateLimiter{
		AllowFn: func(ctx context.Context, key string, limits []wasmwiz.RateLimit) (wasmwiz.RateDecision, error) {
			f.mu.Lock()
			f.keys = append(f.keys, key)
			f.mu.Unlock()
			return wasmwiz.RateDecision{Allowed: true, Limit: limits[0].Limit, Remaining: limits[0].Limit - 1, ResetAfter: time.Minute}, nil
		},
		AcquireFn: func(ctx context.Context, key string, max int, ttl time.Duration) (func(), bool, error) {
			return func() { f.mu.Lock(); f.released++; f.mu.Unlock() }, true, nil
		},
	}
	f.modules = &mock.ModuleService{}
	tiers := &mock.TierService{FindTierFn: func(ctx context.Context, name string) (*wasmwiz.Tier, error) {
		for _, t := range wasmwiz.DefaultTiers() {
			if t.Name == name {
				return t, nil
			}
		}
		return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "tier %q not found", name)
	}}
	f.ex = &wasmwiz.Executor{Engine: f.engine, Modules: f.modules, Tiers: tiers, Limiter: f.limiter, Usage: f.usage}
	return f
}

func userCtx(id int64, tier string) context.Context {
	return wasmwiz.NewContextWithUser(context.Background(), &wasmwiz.User{ID: id, Email: "u@x.io", Role: wasmwiz.RoleUser, Tier: tier})
}

var wasmHeader = []byte("\x00asm\x01\x00\x00\x00")

func TestExecutorLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		max         wasmwiz.Limits
		req         wasmwiz.RunRequest
		wantTimeout time.Duration
		wantMemory  int64
	}{
		{name: "tier limits by default", wantTimeout: 5 * time.Second, wantMemory: 128 * wasmwiz.MiB},
		{name: "caller lowers both", req: wasmwiz.RunRequest{Limits: wasmwiz.Limits{Timeout: 500 * time.Millisecond, MaxMemoryBytes: 16 * wasmwiz.MiB}},
			wantTimeout: 500 * time.Millisecond, wantMemory: 16 * wasmwiz.MiB},
		{name: "caller cannot raise", req: wasmwiz.RunRequest{Limits: wasmwiz.Limits{Timeout: time.Hour, MaxMemoryBytes: 4 * wasmwiz.GiB}},
			wantTimeout: 5 * time.Second, wantMemory: 128 * wasmwiz.MiB},
		{name: "server clamps the tier", max: wasmwiz.Limits{Timeout: time.Second, MaxMemoryBytes: 32 * wasmwiz.MiB},
			wantTimeout: time.Second, wantMemory: 32 * wasmwiz.MiB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newExecutorFixture(t)
			f.ex.MaxLimits = tt.max
			req := tt.req
			req.Wasm = wasmHeader
			ex, err := f.ex.Execute(userCtx(7, wasmwiz.TierFree), nil, &req)
			if err != nil {
				t.Fatal(err)
			}
			if len(f.runs) != 1 {
				t.Fatalf("engine ran %d times, want 1", len(f.runs))
			}
			got := f.runs[0].Limits
			if got.Timeout != tt.wantTimeout || got.MaxMemoryBytes != tt.wantMemory {
				t.Errorf("limits = %v, %d; want %v, %d", got.Timeout, got.MaxMemoryBytes, tt.wantTimeout, tt.wantMemory)
			}
			if ex.Limits != got {
				t.Errorf("Execution.Limits = %+v, engine got %+v", ex.Limits, got)
			}
		})
	}
}

func TestExecutorRecordsUsage(t *testing.T) {
	t.Parallel()
	f := newExecutorFixture(t)
	ctx := wasmwiz.NewContextWithAPIKey(userCtx(7, wasmwiz.TierBasic), &wasmwiz.APIKey{ID: 3})
	ex, err := f.ex.Execute(ctx, nil, &wasmwiz.RunRequest{Wasm: wasmHeader, Stdin: []byte("abc")})
	if err != nil {
		t.Fatal(err)
	}
	if !wasmwiz.ValidRunID(ex.ID) {
		t.Errorf("id %q is not a run id", ex.ID)
	}
	runs := f.usage.Runs()
	if len(runs) != 1 {
		t.Fatalf("%d usage records, want 1", len(runs))
	}
	r := runs[0]
	if r.ID != ex.ID || r.UserID != 7 || r.APIKeyID != 3 || r.Tier != wasmwiz.TierBasic || r.Status != wasmwiz.StatusOK ||
		r.StdinBytes != 3 || r.OutputBytes != 2 || r.ModuleSHA256 != wasmwiz.ModuleDigest(wasmHeader) || r.MemoryPeakBytes != 65536 || r.DurationMS != 2 {
		t.Errorf("record = %+v", r)
	}
	if f.runs[0].SHA256 != r.ModuleSHA256 {
		t.Errorf("the engine got digest %q, the record %q: computed twice?", f.runs[0].SHA256, r.ModuleSHA256)
	}
	if f.keys[0] != "user:7" {
		t.Errorf("rate key = %q, want user:7", f.keys[0])
	}
	if f.released != 1 {
		t.Errorf("concurrency slot released %d times, want 1", f.released)
	}
}

// TestExecutorRecordsAStoppedRun: a run stopped because its request ended
// (the engine returns its error with what the run used) is recorded with
// that error and with the time and output it used, not as if it cost
// nothing.
func TestExecutorRecordsAStoppedRun(t *testing.T) {
	t.Parallel()
	f := newExecutorFixture(t)
	f.engine.RunFn = func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		return &wasmwiz.Result{Duration: 1500 * time.Millisecond, Stdout: []byte("partial")},
			wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "the request ended before the run did")
	}
	ex, err := f.ex.Execute(userCtx(7, wasmwiz.TierBasic), nil, &wasmwiz.RunRequest{Wasm: wasmHeader})
	if wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE || ex.Result != nil {
		t.Fatalf("Execute: %+v, %v", ex, err)
	}
	runs := f.usage.Runs()
	if len(runs) != 1 || runs[0].ErrorCode != wasmwiz.EUNAVAILABLE || runs[0].DurationMS != 1500 || runs[0].OutputBytes != 7 {
		t.Fatalf("records %+v, want one with the error, 1500ms and 7 output bytes", runs)
	}
}

func TestExecutorRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		ctx         context.Context
		anonymous   bool
		req         wasmwiz.RunRequest
		allow       *wasmwiz.RateDecision
		slotFull    bool
		wantCode    string
		wantRetry   bool
		wantConc    bool
		wantLimiter bool // the limiter was asked
	}{
		{name: "no caller", ctx: context.Background(), req: wasmwiz.RunRequest{Wasm: wasmHeader}, wantCode: wasmwiz.EUNAUTHORIZED},
		{name: "anonymous stored module", ctx: context.Background(), anonymous: true,
			req: wasmwiz.RunRequest{ModuleID: wasmwiz.NewModuleID()}, wantCode: wasmwiz.EUNAUTHORIZED},
		{name: "no module", ctx: userCtx(1, "free"), wantCode: wasmwiz.EINVALID},
		{name: "module and id", ctx: userCtx(1, "free"), req: wasmwiz.RunRequest{Wasm: wasmHeader, ModuleID: wasmwiz.NewModuleID()}, wantCode: wasmwiz.EINVALID},
		{name: "params without function", ctx: userCtx(1, "free"), req: wasmwiz.RunRequest{Wasm: wasmHeader, Params: []string{"1"}}, wantCode: wasmwiz.EINVALID},
		{name: "stdin over tier", ctx: userCtx(1, "free"), req: wasmwiz.RunRequest{Wasm: wasmHeader, Stdin: make([]byte, wasmwiz.MiB+1)}, wantCode: wasmwiz.ETOOLARGE},
		{name: "module over tier", ctx: userCtx(1, "free"), req: wasmwiz.RunRequest{Wasm: make([]byte, 10*wasmwiz.MiB+1)}, wantCode: wasmwiz.ETOOLARGE},
		{name: "args over the count cap", ctx: userCtx(1, "free"), req: wasmwiz.RunRequest{Wasm: wasmHeader, Args: make([]string, wasmwiz.MaxArgs+1)}, wantCode: wasmwiz.ETOOLARGE},
		{name: "env with NUL", ctx: userCtx(1, "free"), req: wasmwiz.RunRequest{Wasm: wasmHeader, Env: map[string]string{"A": "\x00"}}, wantCode: wasmwiz.EINVALID},
		// A NUL in what the record keeps made PostgreSQL refuse the record's
		// detail as jsonb, and with it the stale-run sweep over every run.
		{name: "function with NUL", ctx: userCtx(1, "free"), req: wasmwiz.RunRequest{Wasm: wasmHeader, Function: "f\x00g"}, wantCode: wasmwiz.EINVALID},
		{name: "param with NUL", ctx: userCtx(1, "free"), req: wasmwiz.RunRequest{Wasm: wasmHeader, Function: "f", Params: []string{"1", "2\x00"}}, wantCode: wasmwiz.EINVALID},
		{name: "quota exhausted", ctx: userCtx(1, "free"), req: wasmwiz.RunRequest{Wasm: wasmHeader},
			allow:    &wasmwiz.RateDecision{Allowed: false, Limit: 10, RetryAfter: 1500 * time.Millisecond},
			wantCode: wasmwiz.ERATELIMIT, wantRetry: true, wantLimiter: true},
		{name: "too many in flight", ctx: userCtx(1, "free"), req: wasmwiz.RunRequest{Wasm: wasmHeader}, slotFull: true,
			// The quota is not asked, so the refusal consumes none of it.
			wantCode: wasmwiz.ERATELIMIT, wantRetry: true, wantConc: true, wantLimiter: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newExecutorFixture(t)
			f.ex.AllowAnonymous = tt.anonymous
			if tt.allow != nil {
				d := *tt.allow
				f.limiter.AllowFn = func(ctx context.Context, key string, limits []wasmwiz.RateLimit) (wasmwiz.RateDecision, error) {
					f.keys = append(f.keys, key)
					return d, nil
				}
			}
			if tt.slotFull {
				f.limiter.AcquireFn = func(ctx context.Context, key string, max int, ttl time.Duration) (func(), bool, error) {
					return nil, false, nil
				}
			}
			req := tt.req
			ex, err := f.ex.Execute(tt.ctx, nil, &req)
			if code := wasmwiz.ErrorCode(err); code != tt.wantCode {
				t.Fatalf("code = %q (%v), want %q", code, err, tt.wantCode)
			}
			if ex == nil {
				t.Fatal("Execute returned a nil Execution")
			}
			if _, ok := wasmwiz.RetryAfter(err); ok != tt.wantRetry {
				t.Errorf("RetryAfter present = %v, want %v", ok, tt.wantRetry)
			}
			if got := wasmwiz.ConcurrencyLimited(err); got != tt.wantConc {
				t.Errorf("ConcurrencyLimited = %v, want %v", got, tt.wantConc)
			}
			if (len(f.keys) > 0) != tt.wantLimiter {
				t.Errorf("limiter asked = %v, want %v", len(f.keys) > 0, tt.wantLimiter)
			}
			if (ex.RateLimit != nil) != tt.wantLimiter {
				t.Errorf("Execution.RateLimit set = %v, want %v", ex.RateLimit != nil, tt.wantLimiter)
			}
			if len(f.runs) != 0 {
				t.Error("the engine ran a refused request")
			}
			if n := len(f.usage.Runs()); n != 0 {
				t.Errorf("%d usage records for a refused request, want 0", n)
			}
		})
	}
}

func TestExecutorRetryAfterIsTheLimitersWait(t *testing.T) {
	t.Parallel()
	f := newExecutorFixture(t)
	f.limiter.AllowFn = func(ctx context.Context, key string, limits []wasmwiz.RateLimit) (wasmwiz.RateDecision, error) {
		return wasmwiz.RateDecision{Allowed: false, Limit: 10, RetryAfter: 1234 * time.Millisecond}, nil
	}
	_, err := f.ex.Execute(userCtx(1, "free"), nil, &wasmwiz.RunRequest{Wasm: wasmHeader})
	if d, _ := wasmwiz.RetryAfter(err); d != 1234*time.Millisecond {
		t.Errorf("RetryAfter = %v, want 1.234s", d)
	}
}

func TestExecutorAnonymous(t *testing.T) {
	t.Parallel()
	f := newExecutorFixture(t)
	f.ex.AllowAnonymous = true
	var tierCaller *wasmwiz.User
	f.ex.Tiers = &mock.TierService{FindTierFn: func(ctx context.Context, name string) (*wasmwiz.Tier, error) {
		tierCaller = wasmwiz.UserFromContext(ctx)
		if name != wasmwiz.TierFree {
			t.Errorf("anonymous tier = %q, want free", name)
		}
		return freeTier(), nil
	}}
	c, err := f.ex.Caller(context.Background(), "192.0.2.7")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := f.ex.Execute(context.Background(), c, &wasmwiz.RunRequest{Wasm: wasmHeader})
	if err != nil {
		t.Fatal(err)
	}
	if ex.Tier.Name != wasmwiz.TierFree || f.keys[0] != "ip:192.0.2.7" {
		t.Errorf("tier %q key %q; want free and ip:192.0.2.7", ex.Tier.Name, f.keys[0])
	}
	if !tierCaller.IsAdmin() {
		t.Error("the anonymous tier lookup did not run as the system")
	}
	if r := f.usage.Runs(); len(r) != 1 || r[0].UserID != 0 {
		t.Errorf("records = %+v, want one with user 0", r)
	}
}

func TestExecutorStoredModule(t *testing.T) {
	t.Parallel()
	f := newExecutorFixture(t)
	id := wasmwiz.NewModuleID()
	var loads int
	f.modules.FindModuleByIDFn = func(ctx context.Context, mid string) (*wasmwiz.Module, error) {
		if mid != id {
			return nil, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module not found")
		}
		return &wasmwiz.Module{ID: mid, Name: "hello.wasm", SHA256: "feed", SizeBytes: int64(len(wasmHeader))}, nil
	}
	f.modules.FindModuleWasmFn = func(ctx context.Context, mid string) (*wasmwiz.Module, error) {
		loads++
		return &wasmwiz.Module{ID: mid, Name: "hello.wasm", SHA256: "feed", Wasm: wasmHeader}, nil
	}
	if _, err := f.ex.Execute(userCtx(1, "free"), nil, &wasmwiz.RunRequest{ModuleID: id}); err != nil {
		t.Fatal(err)
	}
	got := f.runs[0]
	if got.SHA256 != "feed" || got.Name != "hello.wasm" || got.Wasm != nil || got.LoadWasm == nil {
		t.Fatalf("engine got %+v; want the module by digest, with a loader and no bytes", got)
	}
	if loads != 0 {
		t.Fatal("the bytes were read before the engine asked for them")
	}
	if b, err := got.ModuleWasm(context.Background()); err != nil || string(b) != string(wasmHeader) || loads != 1 {
		t.Fatalf("LoadWasm: %q, %v, %d loads", b, err, loads)
	}
	if r := f.usage.Runs()[0]; r.ModuleID != id || r.ModuleSHA256 != "feed" {
		t.Errorf("record = %+v", r)
	}

	// Another module id: ENOTFOUND before the limiter is asked, so it costs
	// no quota and leaves no record.
	asked := len(f.keys)
	_, err := f.ex.Execute(userCtx(1, "free"), nil, &wasmwiz.RunRequest{ModuleID: wasmwiz.NewModuleID()})
	if wasmwiz.ErrorCode(err) != wasmwiz.ENOTFOUND {
		t.Fatalf("err = %v, want ENOTFOUND", err)
	}
	if len(f.keys) != asked || len(f.usage.Runs()) != 1 {
		t.Errorf("a module the caller cannot see was admitted or recorded")
	}
}

func TestExecutorLimiterDown(t *testing.T) {
	t.Parallel()
	f := newExecutorFixture(t)
	f.limiter.AllowFn = func(ctx context.Context, key string, limits []wasmwiz.RateLimit) (wasmwiz.RateDecision, error) {
		return wasmwiz.RateDecision{}, errors.New("connection refused")
	}
	_, err := f.ex.Execute(userCtx(1, "free"), nil, &wasmwiz.RunRequest{Wasm: wasmHeader})
	if wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Fatalf("err = %v, want EUNAVAILABLE", err)
	}
	if wasmwiz.ErrorMessage(err) == "connection refused" {
		t.Error("internal detail in the message")
	}
}

func TestExecutorUnconfigured(t *testing.T) {
	t.Parallel()
	ex := &wasmwiz.Executor{}
	res, err := ex.Execute(userCtx(1, "free"), nil, &wasmwiz.RunRequest{Wasm: wasmHeader})
	if wasmwiz.ErrorCode(err) != wasmwiz.EINTERNAL || res == nil {
		t.Fatalf("Execute on a zero Executor: %v, %v; want EINTERNAL and an Execution", res, err)
	}
}

func TestRunGate(t *testing.T) {
	t.Parallel()
	g := wasmwiz.NewRunGate(1, 1, time.Hour)
	release, err := g.Enter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if g.InFlight() != 1 {
		t.Errorf("InFlight = %d, want 1", g.InFlight())
	}

	// The second caller queues; it gets the slot when the first leaves.
	entered := make(chan error, 1)
	go func() {
		rel, err := g.Enter(context.Background())
		if err == nil {
			rel() // before the send: the test reads the counts once it has it
		}
		entered <- err
	}()
	testenv.WaitFor(t, "the second Enter to queue", func() bool { return g.Queued() == 1 })

	// The queue is full: the third is refused at once with a retry hint.
	_, err = g.Enter(context.Background())
	if wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Fatalf("third Enter: %v, want EUNAVAILABLE", err)
	}
	if _, ok := wasmwiz.RetryAfter(err); !ok {
		t.Error("saturation refusal has no RetryAfter")
	}
	if g.Rejected() != 1 {
		t.Errorf("Rejected = %d, want 1", g.Rejected())
	}

	release()
	release() // twice is harmless
	if err := testenv.Recv(t, entered, "the queued Enter"); err != nil {
		t.Fatalf("queued Enter: %v", err)
	}
	if g.InFlight() != 0 || g.Queued() != 0 {
		t.Errorf("after all left: in flight %d, queued %d", g.InFlight(), g.Queued())
	}
}

func TestRunGateWaitEnds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		timeout time.Duration
		cancel  bool
	}{
		{name: "queue timeout", timeout: time.Millisecond},
		{name: "request ends", timeout: time.Hour, cancel: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := wasmwiz.NewRunGate(1, 4, tt.timeout)
			release, err := g.Enter(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer release()
			ctx, cancel := context.WithCancel(context.Background())
			if tt.cancel {
				cancel()
			} else {
				defer cancel()
			}
			_, err = g.Enter(ctx)
			if wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
				t.Fatalf("err = %v, want EUNAVAILABLE", err)
			}
			if g.Queued() != 0 {
				t.Errorf("Queued = %d after the waiter left", g.Queued())
			}
		})
	}
}

// TestExecutorTierFromAuthenticate: the tier Authenticate read with the user
// (User.TierLimits) is the one that applies, without a FindTier; without it,
// or when it is not the user's tier, the tier is looked up.
func TestExecutorTierFromAuthenticate(t *testing.T) {
	t.Parallel()
	// Limits no default tier has, so that the test sees which tier applied.
	custom := func(name string) *wasmwiz.Tier {
		return &wasmwiz.Tier{Name: name, RunsPerMinute: 3, RunsPerDay: 33, MaxConcurrent: 2, Limits: wasmwiz.Limits{MaxMemoryBytes: 2 * wasmwiz.MiB, Timeout: 1500 * time.Millisecond, MaxModuleBytes: wasmwiz.MiB, MaxStdinBytes: 10, MaxOutputBytes: 20}}
	}
	free := freeTier()
	tests := []struct {
		name      string
		user      *wasmwiz.User
		wantFinds []string // the FindTier calls, by name
		want      *wasmwiz.Tier
		code      string
	}{
		{"tier read with the user", &wasmwiz.User{ID: 1, Tier: wasmwiz.TierFree, TierLimits: custom(wasmwiz.TierFree)},
			nil, custom(wasmwiz.TierFree), ""},
		{"no tier with the user", &wasmwiz.User{ID: 2, Tier: wasmwiz.TierFree},
			[]string{wasmwiz.TierFree}, free, ""},
		{"a tier that is not the user's", &wasmwiz.User{ID: 3, Tier: wasmwiz.TierFree, TierLimits: custom(wasmwiz.TierPro)},
			[]string{wasmwiz.TierFree}, free, ""},
		{"an unknown tier not read with the user", &wasmwiz.User{ID: 4, Tier: "gone"},
			[]string{"gone"}, nil, wasmwiz.ENOTFOUND},
		{"a disabled user", &wasmwiz.User{ID: 5, Tier: wasmwiz.TierFree, TierLimits: custom(wasmwiz.TierFree), Disabled: true},
			nil, nil, wasmwiz.EUNAUTHORIZED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newExecutorFixture(t)
			var finds []string
			lookup := f.ex.Tiers
			f.ex.Tiers = &mock.TierService{FindTierFn: func(ctx context.Context, name string) (*wasmwiz.Tier, error) {
				f.mu.Lock()
				finds = append(finds, name)
				f.mu.Unlock()
				return lookup.FindTier(ctx, name)
			}}
			var allowed []wasmwiz.RateLimit
			allow := f.limiter.AllowFn
			f.limiter.AllowFn = func(ctx context.Context, key string, limits []wasmwiz.RateLimit) (wasmwiz.RateDecision, error) {
				f.mu.Lock()
				allowed = append(allowed, limits...)
				f.mu.Unlock()
				return allow(ctx, key, limits)
			}
			ctx := wasmwiz.NewContextWithUser(context.Background(), tt.user)

			ex, err := f.ex.Execute(ctx, nil, &wasmwiz.RunRequest{Wasm: wasmHeader})
			f.mu.Lock()
			defer f.mu.Unlock()
			if !slices.Equal(finds, tt.wantFinds) {
				t.Fatalf("FindTier calls %q, want %q", finds, tt.wantFinds)
			}
			if tt.code != "" {
				if wasmwiz.ErrorCode(err) != tt.code {
					t.Fatalf("Execute: %v, want %s", err, tt.code)
				}
				if len(f.runs) != 0 {
					t.Fatal("the module ran without a tier")
				}
				return
			}
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			if *ex.Tier != *tt.want {
				t.Fatalf("tier %+v, want %+v", *ex.Tier, *tt.want)
			}
			if len(f.runs) != 1 || f.runs[0].Limits != tt.want.Limits {
				t.Fatalf("the engine got %d runs, limits %+v; want one with %+v", len(f.runs), f.runs, tt.want.Limits)
			}
			if len(allowed) != 2 || allowed[0].Limit != tt.want.RunsPerMinute || allowed[1].Limit != tt.want.RunsPerDay {
				t.Fatalf("quotas %+v, want %d/min and %d/day", allowed, tt.want.RunsPerMinute, tt.want.RunsPerDay)
			}
			if tt.user.TierLimits != nil && ex.Tier == tt.user.TierLimits {
				t.Fatal("CallerTier handed out the user's own tier, not a copy")
			}
		})
	}
}

// TestExecutorRecordsTheRun: the record keeps what the run was asked (env
// names, never values; stdin's digest, not stdin) and its output cut at the
// tier's max_stored_output_bytes, saying so.
func TestExecutorRecordsTheRun(t *testing.T) {
	t.Parallel()
	f := newExecutorFixture(t)
	big := bytes.Repeat([]byte("x"), int(freeTier().MaxStoredOutputBytes)+10)
	f.engine.RunFn = func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		return &wasmwiz.Result{Status: wasmwiz.StatusExit, ExitCode: 3, Stdout: big, Stderr: []byte("e"),
			Duration: time.Millisecond, CPUTime: 1500 * time.Microsecond, Module: wasmwiz.ModuleInfo{SHA256: "abc"}}, nil
	}
	_, err := f.ex.Execute(userCtx(7, wasmwiz.TierFree), nil, &wasmwiz.RunRequest{Wasm: wasmHeader,
		Stdin: []byte("abc"), Args: []string{"-n", "2"}, Env: map[string]string{"TOKEN": "s3cret", "A": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	r := f.usage.Runs()[0]
	if r.State != wasmwiz.RunDone || r.ExitCode != 3 || r.CPUMS != 1.5 || !slices.Equal(r.Args, []string{"-n", "2"}) ||
		!slices.Equal(r.EnvNames, []string{"A", "TOKEN"}) || r.StdinSHA256 != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" ||
		r.Limits["timeout_ms"] != 5000 || r.StartedAt == nil || r.FinishedAt == nil {
		t.Fatalf("record = %+v", r)
	}
	if int64(len(r.Stdout)) != freeTier().MaxStoredOutputBytes || !r.StdoutTruncated || string(r.Stderr) != "e" || r.StderrTruncated {
		t.Fatalf("stored output: %d bytes (truncated %v), stderr %q (truncated %v)", len(r.Stdout), r.StdoutTruncated, r.Stderr, r.StderrTruncated)
	}
	if r.OutputBytes != int64(len(big)+1) {
		t.Fatalf("output_bytes %d counts what the guest wrote, want %d", r.OutputBytes, len(big)+1)
	}
	if j, _ := json.Marshal(r); bytes.Contains(j, []byte("s3cret")) {
		t.Fatal("an env value reached the record")
	}
}

// TestExecutorRecordsTheCompile: a run's usage record carries its compile
// time beside its guest's, from the result or from a run stopped early.
func TestExecutorRecordsTheCompile(t *testing.T) {
	t.Parallel()
	f := newExecutorFixture(t)
	f.engine.RunFn = func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		return &wasmwiz.Result{Status: wasmwiz.StatusOK, Duration: 2 * time.Millisecond, CompileDuration: 1250 * time.Millisecond}, nil
	}
	if _, err := f.ex.Execute(userCtx(7, wasmwiz.TierBasic), nil, &wasmwiz.RunRequest{Wasm: wasmHeader}); err != nil {
		t.Fatal(err)
	}
	f.engine.RunFn = func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		return &wasmwiz.Result{CompileDuration: 300 * time.Millisecond}, wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "the request ended before the run did")
	}
	_, _ = f.ex.Execute(userCtx(7, wasmwiz.TierBasic), nil, &wasmwiz.RunRequest{Wasm: wasmHeader})
	runs := f.usage.Runs()
	if len(runs) != 2 || runs[0].CompileMS != 1250 || runs[0].DurationMS != 2 || runs[1].CompileMS != 300 {
		t.Fatalf("records %+v, want compile 1250ms and 300ms", runs)
	}
}

// TestExecutorInspectIsAdmitted: compiling an upload is work admitted like
// a run: it takes a concurrency slot (released after) and one event of the
// tier's run quotas, it compiles under the tier's limits, and a refusal
// (slot, quota, size) reaches no engine and leaves no usage record.
func TestExecutorInspectIsAdmitted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		wasm     []byte
		allow    *wasmwiz.RateDecision
		slotFull bool
		wantCode string
		wantConc bool
	}{
		{name: "admitted", wasm: wasmHeader},
		{name: "quota spent", wasm: wasmHeader, allow: &wasmwiz.RateDecision{Allowed: false, Limit: 10, RetryAfter: time.Second},
			wantCode: wasmwiz.ERATELIMIT},
		{name: "slot taken", wasm: wasmHeader, slotFull: true, wantCode: wasmwiz.ERATELIMIT, wantConc: true},
		{name: "over the tier's module size", wasm: make([]byte, 10*wasmwiz.MiB+1), wantCode: wasmwiz.ETOOLARGE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newExecutorFixture(t)
			var inspected []wasmwiz.Limits
			f.engine.InspectFn = func(ctx context.Context, wasm []byte, l wasmwiz.Limits) (*wasmwiz.Inspection, error) {
				f.mu.Lock()
				inspected = append(inspected, l)
				f.mu.Unlock()
				return &wasmwiz.Inspection{SHA256: wasmwiz.ModuleDigest(wasm)}, nil
			}
			if tt.allow != nil {
				d := *tt.allow
				f.limiter.AllowFn = func(ctx context.Context, key string, limits []wasmwiz.RateLimit) (wasmwiz.RateDecision, error) {
					return d, nil
				}
			}
			if tt.slotFull {
				f.limiter.AcquireFn = func(ctx context.Context, key string, max int, ttl time.Duration) (func(), bool, error) {
					return nil, false, nil
				}
			}
			insp, ex, err := f.ex.Inspect(userCtx(7, wasmwiz.TierFree), tt.wasm)
			if wasmwiz.ErrorCode(err) != tt.wantCode {
				t.Fatalf("Inspect: %v, want %q", err, tt.wantCode)
			}
			if wasmwiz.ConcurrencyLimited(err) != tt.wantConc {
				t.Errorf("ConcurrencyLimited = %v", wasmwiz.ConcurrencyLimited(err))
			}
			if n := len(f.usage.Runs()); n != 0 {
				t.Errorf("%d usage records for an upload, want none", n)
			}
			if tt.wantCode != "" {
				if len(inspected) != 0 || insp != nil {
					t.Errorf("a refused upload reached the engine")
				}
				return
			}
			if len(inspected) != 1 || inspected[0] != ex.Limits || inspected[0].Timeout != 5*time.Second || inspected[0].MaxMemoryBytes != 128*wasmwiz.MiB {
				t.Errorf("inspected under %+v, want the free tier's limits %+v", inspected, ex.Limits)
			}
			if f.released != 1 || ex.RateLimit == nil || !ex.RateLimit.Allowed {
				t.Errorf("slot released %d times, decision %+v; want the slot given back and the quota counted", f.released, ex.RateLimit)
			}
		})
	}
}

// TestExecutorRunsAsTheCaller: the engine hears whose run it is, the
// caller's RateKey (an anonymous caller's address included), by which it
// shares its compile caches among owners (wasmwiz.NewContextWithOwner).
func TestExecutorRunsAsTheCaller(t *testing.T) {
	t.Parallel()
	f := newExecutorFixture(t)
	f.ex.AllowAnonymous = true
	var owners []string
	f.engine.RunFn = func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		owners = append(owners, wasmwiz.OwnerFromContext(ctx))
		return &wasmwiz.Result{Status: wasmwiz.StatusOK}, nil
	}
	if _, err := f.ex.Execute(userCtx(7, wasmwiz.TierFree), nil, &wasmwiz.RunRequest{Wasm: wasmHeader}); err != nil {
		t.Fatal(err)
	}
	anon, err := f.ex.Caller(context.Background(), "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ex.Execute(context.Background(), anon, &wasmwiz.RunRequest{Wasm: wasmHeader}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"user:7", "ip:192.0.2.1"}; !slices.Equal(owners, want) {
		t.Fatalf("the engine ran for %q, want %q", owners, want)
	}
}
