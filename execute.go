package wasmwiz

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"
)

// ExecuteRequest is one caller's request to run a module: either the bytes
// (Wasm) or the id of a stored module (ModuleID), never both.
type ExecuteRequest struct {
	ModuleID string // a stored module the caller may see
	Wasm     []byte // or the module itself
	Name     string // argv[0]; defaults to the stored module's name or "module.wasm"

	Stdin    []byte
	Args     []string
	Env      map[string]string
	Function string   // plain modules: the export to call; "" for the default entry
	Params   []string // the function's arguments as decimal numbers

	// Timeout and MaxMemoryBytes may lower the caller's tier limits for this
	// run; zero keeps the tier's. They never raise a limit.
	Timeout        time.Duration
	MaxMemoryBytes int64

	// ClientIP keys the rate limit of anonymous callers (auth off).
	ClientIP string
}

// Execution is what Execute did. Execute returns one even with an error, so
// that the caller can report the rate-limit decision that was made.
type Execution struct {
	ID        string        // the run's id, set once the run was admitted
	Tier      *Tier         // the tier that applied, once known
	Limits    Limits        // the limits the run had, once known
	RateLimit *RateDecision // nil when no rate decision was made
	Result    *Result       // set when the guest ran
	Record    *UsageRecord  // the usage record handed to the recorder, if any
}

// RetryAfterError says when a refused request may be retried. It travels as
// the Err of an *Error (ERATELIMIT, EUNAVAILABLE); use RetryAfter to read it.
type RetryAfterError struct {
	After time.Duration
}

// Error implements error.
func (e *RetryAfterError) Error() string { return "retry after " + e.After.String() }

// RetryAfter returns how long the caller should wait before retrying after
// err, and false when err carries no such hint.
func RetryAfter(err error) (time.Duration, bool) {
	var r *RetryAfterError
	if errors.As(err, &r) {
		return r.After, true
	}
	return 0, false
}

// ConcurrencyLimited reports whether err refused a run because the caller
// already had its tier's number of runs in flight (as opposed to a rate quota).
func ConcurrencyLimited(err error) bool {
	var c *concurrencyError
	return errors.As(err, &c)
}

type concurrencyError struct{ max int }

func (e *concurrencyError) Error() string { return "concurrency limit " + strconv.Itoa(e.max) }

// Executor runs modules for callers: it authorizes the caller, finds its
// tier, takes a slot of the tier's concurrency limit and of the replica's
// saturation gate, applies the tier's rate quotas, loads a stored module, runs it on the engine,
// and hands a usage record to the recorder. It is what every execute route
// calls; it imports nothing but the standard library.
type Executor struct {
	Engine  Engine
	Modules ModuleService // needed only for ModuleID requests
	Tiers   TierService
	Limiter RateLimiter
	Usage   UsageRecorder // nil: no usage records
	Gate    *RunGate      // nil: no replica-wide limit

	// MaxLimits clamps every tier (server config: max timeout and memory).
	MaxLimits Limits
	// AllowAnonymous lets callers without a user run inline modules under
	// AnonymousTier (default TierFree), rate-limited per ClientIP.
	AllowAnonymous bool
	AnonymousTier  string

	// Now returns the current time; nil uses time.Now.
	Now func() time.Time
}

func (e *Executor) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// CallerTier returns the tier that applies to the caller in ctx: its user's
// tier, or the anonymous tier when anonymous callers are allowed. It returns
// EUNAUTHORIZED without a caller (when anonymous runs are off) or for a
// disabled user, and the TierService's errors.
//
// An authenticated user's tier comes with the user (User.TierLimits, read by
// Authenticate in the same query as the key) when it is there and is the
// user's tier; only otherwise is it looked up, so an authenticated run costs
// one database round trip, not two. The tier is read on every request
// either way: a tier change applies to the next request of every replica.
func (e *Executor) CallerTier(ctx context.Context) (*Tier, error) {
	u := UserFromContext(ctx)
	if u == nil {
		if !e.AllowAnonymous {
			return nil, Errorf(EUNAUTHORIZED, "authentication required")
		}
		name := e.AnonymousTier
		if name == "" {
			name = TierFree
		}
		// Anonymous callers have no user to read tiers as.
		return e.Tiers.FindTier(SystemContext(ctx), name)
	}
	if u.Disabled {
		return nil, Errorf(EUNAUTHORIZED, "authentication required")
	}
	if t := u.TierLimits; t != nil && t.Name == u.Tier {
		// A copy: the caller may change what it gets without touching the
		// user in ctx, as with a tier FindTier returns.
		c := *t
		return &c, nil
	}
	return e.Tiers.FindTier(ctx, u.Tier)
}

// TierLimits returns the run limits of tier t under the server's clamps.
func (e *Executor) TierLimits(t *Tier) Limits {
	return t.Limits.Clamp(e.MaxLimits)
}

// RateKey returns the key under which the caller's quotas are counted.
func RateKey(u *User, clientIP string) string {
	if u == nil {
		return "ip:" + clientIP
	}
	return "user:" + strconv.FormatInt(u.ID, 10)
}

// TierRateLimits returns the quotas of a tier in the order the limiter
// checks them.
func TierRateLimits(t *Tier) []RateLimit {
	return []RateLimit{
		{Name: "minute", Limit: t.RunsPerMinute, Window: time.Minute},
		{Name: "day", Limit: t.RunsPerDay, Window: 24 * time.Hour},
	}
}

// Execute runs req for the caller in ctx. tier may be nil (it is looked up)
// or the result of CallerTier when the caller already needed it, e.g. to
// bound the request body.
//
// Errors: EUNAUTHORIZED without a caller (or anonymous with a ModuleID),
// EINVALID for a malformed request or a module the engine refuses,
// ETOOLARGE for a module or stdin over the tier's limits, ENOTFOUND for a
// module the caller cannot see, ERATELIMIT when a quota or the caller's
// concurrency limit is exhausted (with a RetryAfter hint; ConcurrencyLimited
// tells which), EUNAVAILABLE when the replica is saturated (with a
// RetryAfter hint) or the limiter cannot decide, EINTERNAL otherwise. A guest
// outcome (trap, timeout, …) is a Result, not an error.
func (e *Executor) Execute(ctx context.Context, tier *Tier, req *ExecuteRequest) (*Execution, error) {
	ex := &Execution{}
	if e.Engine == nil || e.Tiers == nil || e.Limiter == nil {
		return ex, Errorf(EINTERNAL, "executor needs an engine, a tier service and a rate limiter")
	}
	user := UserFromContext(ctx)
	if user == nil && !e.AllowAnonymous {
		return ex, Errorf(EUNAUTHORIZED, "authentication required")
	}
	if err := e.validate(user, req); err != nil {
		return ex, err
	}
	if tier == nil {
		var err error
		if tier, err = e.CallerTier(ctx); err != nil {
			return ex, err
		}
	}
	ex.Tier = tier
	limits := e.TierLimits(tier).Clamp(Limits{Timeout: req.Timeout, MaxMemoryBytes: req.MaxMemoryBytes})
	ex.Limits = limits
	if limits.MaxModuleBytes > 0 && int64(len(req.Wasm)) > limits.MaxModuleBytes {
		return ex, Errorf(ETOOLARGE, "module is %s, over the %s limit of tier %s",
			FormatSize(int64(len(req.Wasm))), FormatSize(limits.MaxModuleBytes), tier.Name)
	}
	if int64(len(req.Stdin)) > limits.MaxStdinBytes {
		return ex, Errorf(ETOOLARGE, "stdin is %s, over the %s limit of tier %s",
			FormatSize(int64(len(req.Stdin))), FormatSize(limits.MaxStdinBytes), tier.Name)
	}

	// The caller's runs in flight and the replica's gate come before the
	// quota, because the limiter cannot give an event back: a run refused for
	// concurrency or saturation must not have used one of the caller's runs.
	// A slot whose holder died frees itself after the longest a run can take.
	key := RateKey(user, req.ClientIP)
	release, ok, err := e.Limiter.Acquire(ctx, "concurrency:"+key, tier.MaxConcurrent, limits.Timeout+time.Minute)
	if err != nil {
		return ex, WrapError(EUNAVAILABLE, err, "rate limiter unavailable; retry later")
	}
	if !ok {
		return ex, &Error{Code: ERATELIMIT,
			Message: fmt.Sprintf("too many runs in flight: tier %s allows %d at a time", tier.Name, tier.MaxConcurrent),
			Err:     errors.Join(&concurrencyError{max: tier.MaxConcurrent}, &RetryAfterError{After: time.Second})}
	}
	defer release()

	if e.Gate != nil {
		leave, err := e.Gate.Enter(ctx)
		if err != nil {
			return ex, err
		}
		defer leave()
	}

	// Quotas: a refused request consumes nothing.
	dec, err := e.Limiter.Allow(ctx, key, TierRateLimits(tier))
	if err != nil {
		return ex, WrapError(EUNAVAILABLE, err, "rate limiter unavailable; retry later")
	}
	ex.RateLimit = &dec
	if !dec.Allowed {
		return ex, &Error{Code: ERATELIMIT,
			Message: fmt.Sprintf("rate limit exceeded: tier %s allows %d runs per %s; retry in %s",
				tier.Name, dec.Limit, windowName(dec.Limit, tier), retryText(dec.RetryAfter)),
			Err: &RetryAfterError{After: dec.RetryAfter}}
	}

	// Admitted: from here on every outcome is a usage record.
	start := e.now()
	ex.ID = NewRunID(start)
	run := &UsageRecord{ID: ex.ID, ModuleID: req.ModuleID, Tier: tier.Name, StdinBytes: int64(len(req.Stdin)), CreatedAt: start.UTC()}
	if user != nil {
		run.UserID = user.ID
	}
	if k := APIKeyFromContext(ctx); k != nil {
		run.APIKeyID = k.ID
	}
	ex.Record = run
	res, err := e.run(ctx, req, limits, run)
	if err != nil {
		run.ErrorCode = ErrorCode(err)
		if res != nil { // stopped when the request ended: what it used
			run.DurationMS = float64(res.Duration.Microseconds()) / 1000
			run.MemoryPeakBytes = res.MemoryPeakBytes
			run.OutputBytes = int64(len(res.Stdout) + len(res.Stderr))
		}
	} else {
		ex.Result = res
		run.Status = res.Status
		run.ExitCode = res.ExitCode
		run.DurationMS = float64(res.Duration.Microseconds()) / 1000
		run.MemoryPeakBytes = res.MemoryPeakBytes
		run.OutputBytes = int64(len(res.Stdout) + len(res.Stderr))
		run.ModuleSHA256 = res.Module.SHA256
	}
	if e.Usage != nil {
		e.Usage.Record(run)
	}
	return ex, err
}

func (e *Executor) validate(user *User, req *ExecuteRequest) error {
	switch {
	case req.ModuleID != "" && len(req.Wasm) > 0:
		return Errorf(EINVALID, "send either a module or a module_id, not both")
	case req.ModuleID == "" && len(req.Wasm) == 0:
		return Errorf(EINVALID, "no module: send a wasm module or a module_id")
	case req.ModuleID != "" && user == nil:
		return Errorf(EUNAUTHORIZED, "stored modules need an API key")
	case req.ModuleID != "" && !ValidModuleID(req.ModuleID):
		return Errorf(ENOTFOUND, "module %q not found", req.ModuleID)
	case req.Timeout < 0:
		return Errorf(EINVALID, "timeout must be positive")
	case req.MaxMemoryBytes < 0:
		return Errorf(EINVALID, "memory must be positive")
	case len(req.Params) > 0 && req.Function == "":
		return Errorf(EINVALID, "params need a function name")
	case req.ModuleID != "" && req.Name != "":
		return Errorf(EINVALID, "a stored module runs under its own name: leave out name")
	case len(req.Name) > maxModuleNameBytes:
		return Errorf(EINVALID, "the module name is longer than %d bytes", maxModuleNameBytes)
	}
	return nil
}

// maxModuleNameBytes bounds a module's name, which is the guest's argv[0].
const maxModuleNameBytes = 255

// run loads a stored module if needed and runs it on the engine.
func (e *Executor) run(ctx context.Context, req *ExecuteRequest, limits Limits, run *UsageRecord) (*Result, error) {
	rr := &RunRequest{
		Wasm: req.Wasm, Name: req.Name,
		Args: req.Args, Env: req.Env, Stdin: req.Stdin,
		Function: req.Function, Params: req.Params,
		Limits: limits,
	}
	if req.ModuleID != "" {
		if e.Modules == nil {
			return nil, Errorf(EINTERNAL, "no module store configured")
		}
		m, err := e.Modules.FindModuleWasm(ctx, req.ModuleID)
		if err != nil {
			return nil, err
		}
		rr.Wasm, rr.SHA256 = m.Wasm, m.SHA256
		run.ModuleSHA256 = m.SHA256
		if rr.Name == "" {
			rr.Name = m.Name
		}
	}
	if rr.Name == "" {
		rr.Name = "module.wasm"
	}
	res, err := e.Engine.Run(ctx, rr)
	if err != nil {
		return res, err // a Result here says what a stopped run used
	}
	if res == nil {
		return nil, Errorf(EINTERNAL, "engine returned no result")
	}
	return res, nil
}

func windowName(limit int64, t *Tier) string {
	if limit == t.RunsPerMinute && limit != t.RunsPerDay {
		return "minute"
	}
	if limit == t.RunsPerDay && limit != t.RunsPerMinute {
		return "day"
	}
	return "window"
}

// retryText writes a wait rounded up to the millisecond.
func retryText(d time.Duration) string {
	return d.Round(time.Millisecond).String()
}

// RunGate bounds the runs in flight on one replica: at most max run at once,
// at most queue more wait up to timeout for a slot, and everyone else is
// refused at once with EUNAVAILABLE, so that a saturated replica answers
// quickly instead of falling over.
type RunGate struct {
	slots      chan struct{}
	waiting    chan struct{}
	timeout    time.Duration
	retryAfter time.Duration
	inFlight   atomic.Int64
	rejected   atomic.Int64
}

// NewRunGate returns a gate for slots concurrent runs with a queue of queue
// waiters, each waiting at most timeout. slots below 1 is taken as 1.
func NewRunGate(slots, queue int, timeout time.Duration) *RunGate {
	slots = max(slots, 1)
	queue = max(queue, 0)
	return &RunGate{
		slots:      make(chan struct{}, slots),
		waiting:    make(chan struct{}, queue),
		timeout:    timeout,
		retryAfter: time.Second,
	}
}

// Enter takes a slot, waiting in the queue when all are taken. It returns
// EUNAVAILABLE (with a RetryAfter hint) when the queue is full or the wait
// times out, and the context's error wrapped as EUNAVAILABLE when ctx ends.
func (g *RunGate) Enter(ctx context.Context) (release func(), err error) {
	select {
	case g.slots <- struct{}{}:
		return g.admitted(), nil
	default:
	}
	select {
	case g.waiting <- struct{}{}:
	default:
		return nil, g.refuse("server is saturated; retry later")
	}
	defer func() { <-g.waiting }()
	var timer <-chan time.Time
	if g.timeout > 0 {
		t := time.NewTimer(g.timeout)
		defer t.Stop()
		timer = t.C
	}
	select {
	case g.slots <- struct{}{}:
		return g.admitted(), nil
	case <-timer:
		return nil, g.refuse("server is saturated; retry later")
	case <-ctx.Done():
		return nil, WrapError(EUNAVAILABLE, ctx.Err(), "request ended while waiting for a run slot")
	}
}

func (g *RunGate) admitted() func() {
	g.inFlight.Add(1)
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			g.inFlight.Add(-1)
			<-g.slots
		}
	}
}

func (g *RunGate) refuse(msg string) error {
	g.rejected.Add(1)
	return &Error{Code: EUNAVAILABLE, Message: msg, Err: &RetryAfterError{After: g.retryAfter}}
}

// InFlight returns the runs holding a slot now.
func (g *RunGate) InFlight() int64 { return g.inFlight.Load() }

// Queued returns the runs waiting for a slot now.
func (g *RunGate) Queued() int { return len(g.waiting) }

// Capacity returns the number of slots.
func (g *RunGate) Capacity() int { return cap(g.slots) }

// Rejected returns how many runs the gate has refused since it was made.
func (g *RunGate) Rejected() int64 { return g.rejected.Load() }
