package wasmwiz

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

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

// RetryLater returns an error of code (ERATELIMIT or EUNAVAILABLE) whose
// answer tells the caller to retry after after (Retry-After).
func RetryLater(code string, after time.Duration, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: &RetryAfterError{After: after}}
}

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

// Executor runs modules for callers; it is what every execute route calls,
// and it imports nothing but the standard library. Its contract, for the
// routes and for whatever builds on it (asynchronous runs, compiles that
// count against a caller):
//
//  1. Caller decides, once per request, who calls and what applies: the
//     user and key, the tier, the tier's run limits under the server's
//     clamps (Caller.Limits, which the HTTP layer also uses to bound the
//     request body) and the key its runs are counted under.
//  2. Execute validates the request, resolves a stored module to its
//     digest and size (through the Directory: no database round trip when
//     cached, never the bytes), computes the digest of inline bytes once,
//     lowers the limits by what the caller asked, and checks the module and
//     stdin sizes.
//  3. It asks the RateLimiter to Admit the run: a concurrency slot and one
//     event of each quota, together or not at all, and in the same call
//     (one Redis round trip) whether the cache epoch its cached data was
//     read under is still current. Stale data is read again and the run
//     asked for once more; nothing was taken.
//  4. Then the replica's RunGate (a refusal gives the slot and the quota
//     events back), Engine.Run with the request naming its module by
//     digest (RunRequest.LoadWasm reads the bytes only if the engine lacks
//     them), the slot's release (not waited for), and the usage record.
//
// A refused request consumes nothing; an admitted one always leaves a usage
// record, also when it then fails.
type Executor struct {
	Engine    Engine
	Modules   ModuleService // needed only for ModuleID requests
	Tiers     TierService
	Limiter   RateLimiter
	Usage     UsageRecorder // nil: no usage records
	Gate      *RunGate      // nil: no replica-wide limit
	Directory *Directory    // nil: nothing is cached, every request reads the stores

	// MaxLimits clamps every tier (server config: max timeout, memory and
	// file write).
	MaxLimits Limits
	// AllowAnonymous lets callers without a user run inline modules under
	// AnonymousTier (default TierFree), rate-limited per client IP.
	AllowAnonymous bool
	AnonymousTier  string

	// Background runs (async.go): nil Runs or Queue refuses them.
	Runs   RunStore
	Queue  RunQueue
	Events RunEvents // nil: no live events
	// HeartbeatInterval is how often a background run's replica says it is
	// alive and looks for a cancel (default 2s).
	HeartbeatInterval time.Duration

	// StoredRuns counts the run output users keep, for the tiers'
	// max_stored_run_bytes (storedruns.go); nil uses Runs, and with neither
	// the quota is not enforced. StoredRunsMaxAge is how long a count read
	// is trusted (default DefaultStoredRunsMaxAge).
	StoredRuns       RunService
	StoredRunsMaxAge time.Duration

	// Now returns the current time; nil uses time.Now.
	Now func() time.Time

	storedRuns   storedRunCache
	staleBatches Batches // FailStaleRuns's
}

func (e *Executor) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// Caller is who sends an execute request and what applies to them, decided
// once per request by Executor.Caller and carried from the HTTP layer to
// Execute.
type Caller struct {
	User    *User   // nil for an anonymous caller (auth off)
	Key     *APIKey // the key the caller used; nil when anonymous
	Tier    *Tier
	Limits  Limits // the tier's run limits under the server's clamps
	RateKey string // whose runs are counted: RateKey(User, client IP)

	tag      cacheTag // where User and Tier came from: the Directory, or the stores
	clientIP string
	held     *heldAdmission // Admit's, until a run takes it over or Release gives it back
}

// heldAdmission is what Executor.Admit took for a request whose body is
// still to be read.
type heldAdmission struct {
	adm   Admitted
	taken atomic.Bool // a run took it over, or Release gave it back
}

// take hands the admission to a run, once.
func (h *heldAdmission) take() (Admitted, bool) {
	if h == nil || !h.taken.CompareAndSwap(false, true) {
		return Admitted{}, false
	}
	return h.adm, true
}

// Release gives back what Admit took for c when no run took it over: the
// concurrency slot and the quota events, as if nothing had been asked. It
// may be called more than once, and on a caller Admit did not return.
func (c *Caller) Release() {
	if c == nil {
		return
	}
	if adm, ok := c.held.take(); ok {
		adm.Release(true)
	}
}

// Cached reports whether the caller's user or tier came from the
// Directory's cache: a refusal that rests on them must be confirmed by
// reading them again (Executor.Recheck).
func (c *Caller) Cached() bool { return c.tag.cached() }

// Caller returns the caller of ctx for the execute path: its user's tier
// (read with the user, or looked up through the Directory), or the anonymous
// tier when anonymous callers are allowed, the tier's limits under the
// server's clamps, and its rate key. EUNAUTHORIZED without a caller (when
// anonymous runs are off) or for a disabled user; the TierService's errors.
func (e *Executor) Caller(ctx context.Context, clientIP string) (*Caller, error) {
	return e.caller(ctx, clientIP, true)
}

func (e *Executor) caller(ctx context.Context, clientIP string, cached bool) (*Caller, error) {
	u := UserFromContext(ctx)
	c := &Caller{User: u, Key: APIKeyFromContext(ctx), RateKey: RateKey(u, clientIP), clientIP: clientIP}
	if cred := credentialFrom(ctx); cred != nil && cached {
		c.tag = cred.tag
	}
	t, tag, err := e.callerTier(ctx, cached)
	if err != nil {
		return nil, err
	}
	c.Tier, c.tag = t, c.tag.merge(tag)
	c.Limits = e.TierLimits(t)
	return c, nil
}

// CallerTier returns the tier that applies to the caller in ctx, read from
// the stores (never the cache): its user's tier, or the anonymous tier when
// anonymous callers are allowed. It returns EUNAUTHORIZED without a caller
// (when anonymous runs are off) or for a disabled user, and the
// TierService's errors.
//
// An authenticated user's tier comes with the user (User.TierLimits, read
// by Authenticate in the same query as the key) when it is there and is the
// user's tier; only otherwise is it looked up.
func (e *Executor) CallerTier(ctx context.Context) (*Tier, error) {
	t, _, err := e.callerTier(ctx, false)
	return t, err
}

func (e *Executor) callerTier(ctx context.Context, cached bool) (*Tier, cacheTag, error) {
	u := UserFromContext(ctx)
	if u == nil {
		if !e.AllowAnonymous {
			return nil, cacheTag{}, Errorf(EUNAUTHORIZED, "authentication required")
		}
		name := e.AnonymousTier
		if name == "" {
			name = TierFree
		}
		return e.findTier(ctx, name, cached)
	}
	if u.Disabled {
		return nil, cacheTag{}, Errorf(EUNAUTHORIZED, "authentication required")
	}
	if t := u.TierLimits; t != nil && t.Name == u.Tier {
		// A copy: the caller may change what it gets without touching the
		// user in ctx, as with a tier FindTier returns.
		c := *t
		return &c, cacheTag{}, nil
	}
	return e.findTier(ctx, u.Tier, cached)
}

func (e *Executor) findTier(ctx context.Context, name string, cached bool) (*Tier, cacheTag, error) {
	if e.Directory != nil {
		return e.Directory.tier(ctx, name, cached)
	}
	if e.Tiers == nil {
		return nil, cacheTag{}, Errorf(EINTERNAL, "executor needs a tier service")
	}
	t, err := e.Tiers.FindTier(SystemContext(ctx), name)
	return t, cacheTag{}, err
}

// Recheck reads a cached caller again from the stores, so that a refusal
// that rests on the cache (a body over a cached limit) is confirmed before it
// is answered. For a caller read from the stores it returns c and ctx as
// they are.
func (e *Executor) Recheck(ctx context.Context, c *Caller) (context.Context, *Caller, error) {
	if !c.Cached() || e.Directory == nil {
		return ctx, c, nil
	}
	e.Directory.stale.Add(1)
	ctx, err := e.Directory.reauthenticate(ctx)
	if err != nil {
		return ctx, nil, err
	}
	fresh, err := e.caller(ctx, c.clientIP, false)
	if fresh != nil {
		fresh.held = c.held
	}
	return ctx, fresh, err
}

// Admit takes for the caller, before its request's body is read, what
// Execute takes for a run: one of its tier's concurrency slots and one event
// of each quota, so that a caller makes the server read and decode at most
// its max_concurrent large bodies at once, and the body of a refused caller
// is never read. The run then takes the admission over: Execute runs on it,
// ExecuteAsync spends its quota events and gives the slot back. The caller
// Admit returns (read again when what was cached was stale) carries it;
// call its Release when the request ends, which gives the slot and the
// quota events back when no run took them. bodyTime is how long the body
// may take to arrive: the slot's ttl covers it and the run.
//
// Errors: ERATELIMIT for a quota or the caller's concurrency limit (with
// a RetryAfter hint), EUNAVAILABLE when the limiter cannot decide, and
// Recheck's. The Execution carries the tier and the rate decision.
func (e *Executor) Admit(ctx context.Context, c *Caller, bodyTime time.Duration) (context.Context, *Caller, *Execution, error) {
	ex := &Execution{Tier: c.Tier, Limits: c.Limits}
	if e.Limiter == nil {
		return ctx, c, ex, Errorf(EINTERNAL, "executor needs a rate limiter")
	}
	for attempt := 0; ; attempt++ {
		adm, err := e.Limiter.Admit(ctx, Admission{Key: c.RateKey, Quotas: TierRateLimits(c.Tier),
			MaxConcurrent: c.Tier.MaxConcurrent, SlotTTL: bodyTime + c.Limits.Timeout + slotMargin, Epoch: c.tag.epoch})
		if err != nil {
			return ctx, c, ex, WrapError(EUNAVAILABLE, err, "rate limiter unavailable; retry later")
		}
		if e.Directory != nil {
			e.Directory.Observe(adm.Epoch, adm.Fallback)
		}
		stale := adm.Stale || adm.Fallback && c.tag.cached() &&
			e.now().Sub(c.tag.loaded) > e.Directory.fallbackMaxAge()
		if !stale {
			if !adm.Concurrency {
				dec := adm.Decision
				ex.RateLimit = &dec
			}
			if err := refusal(c.Tier, &adm); err != nil {
				return ctx, c, ex, err
			}
			held := *c
			held.held = &heldAdmission{adm: adm}
			admitted(ctx)
			return ctx, &held, ex, nil
		}
		if adm.OK() {
			adm.Release(true)
		}
		if attempt > 0 {
			return ctx, c, ex, Errorf(EINTERNAL, "cached data stayed stale after it was read again")
		}
		if ctx, c, err = e.Recheck(ctx, c); err != nil {
			return ctx, c, ex, err
		}
		ex.Tier, ex.Limits = c.Tier, c.Limits
	}
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

// slotMargin is added to a run's wall time for the ttl of its concurrency
// slot: a slot whose holder died frees itself after the longest a run takes.
const slotMargin = time.Minute

// Execute runs req for the caller c in ctx (from Caller; nil asks Caller
// with no client IP). req is the caller's request: its Limits' Timeout and
// MaxMemoryBytes may lower the tier's (zero keeps them; other fields are
// ignored). Execute does not change req; the engine gets a copy completed
// with the module's digest and the run's limits.
//
// Errors: EUNAUTHORIZED without a caller (or anonymous with a ModuleID),
// EINVALID for a malformed request or a module the engine refuses,
// ETOOLARGE for a module or stdin over the tier's limits, ENOTFOUND for a
// module the caller cannot see, ERATELIMIT when a quota or the caller's
// concurrency limit is exhausted (with a RetryAfter hint; ConcurrencyLimited
// tells which), EUNAVAILABLE when the replica is saturated (with a
// RetryAfter hint) or the limiter cannot decide, EINTERNAL otherwise. A guest
// outcome (trap, timeout, …) is a Result, not an error.
//
// A caller that Admit returned runs on the slot and quota events Admit
// took, once; its sizes are checked as any run's.
//
// The answer carries the whole output; the run's usage record keeps what
// its tier allows: max_stored_output_bytes of each stream, within what is
// left of the caller's max_stored_run_bytes (storedruns.go).
func (e *Executor) Execute(ctx context.Context, c *Caller, req *RunRequest) (*Execution, error) {
	ex := &Execution{}
	if e.Engine == nil || e.Limiter == nil || (e.Tiers == nil && e.Directory == nil) {
		return ex, Errorf(EINTERNAL, "executor needs an engine, a tier service and a rate limiter")
	}
	if c == nil {
		var err error
		if c, err = e.Caller(ctx, ""); err != nil {
			return ex, err
		}
	}
	if err := e.validate(c.User, req); err != nil {
		return ex, err
	}
	run := *req
	var mod *Module
	var modTag cacheTag
	if req.ModuleID != "" {
		var err error
		if mod, modTag, err = e.module(ctx, req.ModuleID, true); err != nil {
			return ex, err
		}
		run.SHA256, run.Wasm, run.LoadWasm = mod.SHA256, nil, e.loader(mod)
		if run.Name == "" {
			run.Name = mod.Name
		}
	} else {
		run.SHA256 = ModuleDigest(req.Wasm) // once: the engine trusts it
	}
	if run.Name == "" {
		run.Name = "module.wasm"
	}
	moduleBytes := int64(len(req.Wasm))
	// sizes sets the run's limits from c's and checks the request's sizes
	// under them.
	sizes := func() error {
		if mod != nil {
			moduleBytes = mod.SizeBytes
		}
		ex.Tier = c.Tier
		run.Limits = c.Limits.Clamp(Limits{Timeout: req.Limits.Timeout, MaxMemoryBytes: req.Limits.MaxMemoryBytes})
		ex.Limits = run.Limits
		err := run.Limits.CheckSizes(moduleBytes, int64(len(req.Stdin)), c.Tier.Name)
		if err == nil {
			run.Files, err = checkedFiles(req.Files, run.Limits)
		}
		return err
	}

	adm, held := c.held.take()
	if held {
		// Admitted before the body was read (Admit), on a current cache
		// epoch; the module, looked up since, is read from the stores.
		var err error
		if ctx, err = e.heldRun(ctx, &c, req, &run, &mod, sizes); err != nil {
			adm.Release(true)
			return ex, err
		}
	}
	// Admission, at most twice: a second time when the first found the
	// cached caller or module stale, on what was read again.
	for attempt := 0; !held; attempt++ {
		tag := c.tag.merge(modTag)
		sizeErr := sizes()
		if sizeErr == nil {
			var err error
			adm, err = e.Limiter.Admit(ctx, Admission{Key: c.RateKey, Quotas: TierRateLimits(c.Tier),
				MaxConcurrent: c.Tier.MaxConcurrent, SlotTTL: run.Limits.Timeout + slotMargin, Epoch: tag.epoch})
			if err != nil {
				return ex, WrapError(EUNAVAILABLE, err, "rate limiter unavailable; retry later")
			}
			if e.Directory != nil {
				e.Directory.Observe(adm.Epoch, adm.Fallback)
			}
			// While the fallback decides, the epoch only knows this
			// replica's changes: old entries are read again.
			stale := adm.Stale || adm.Fallback && tag.cached() &&
				e.now().Sub(tag.loaded) > e.Directory.fallbackMaxAge()
			if !stale {
				break
			}
			if adm.OK() {
				adm.Release(true)
			}
		} else if !tag.cached() {
			return ex, sizeErr // a refusal on what the stores said
		}
		if attempt > 0 {
			return ex, Errorf(EINTERNAL, "cached data stayed stale after it was read again")
		}
		// The cache said something that may no longer hold: read it again.
		var err error
		if ctx, c, err = e.Recheck(ctx, c); err != nil {
			return ex, err
		}
		if mod != nil && modTag.cached() {
			if mod, modTag, err = e.module(ctx, req.ModuleID, false); err != nil {
				return ex, err
			}
			run.SHA256, run.LoadWasm = mod.SHA256, e.loader(mod)
			if req.Name == "" {
				run.Name = mod.Name
			}
		}
	}

	if !adm.Concurrency {
		dec := adm.Decision
		ex.RateLimit = &dec
	}
	if err := refusal(c.Tier, &adm); err != nil {
		return ex, err
	}
	admitted(ctx) // the run holds its tier's slot (NewContextWithAdmitted)
	if e.Gate != nil {
		leave, err := e.Gate.Enter(ctx)
		if err != nil {
			// Saturation is no use of the caller's quota.
			adm.Release(true)
			return ex, err
		}
		defer leave()
	}
	defer adm.Release(false)

	// Admitted: from here on every outcome is a usage record.
	start := e.now()
	ex.ID = NewRunID(start)
	rec := &UsageRecord{ID: ex.ID, ModuleID: req.ModuleID, ModuleSHA256: run.SHA256, Tier: c.Tier.Name,
		StdinBytes: int64(len(req.Stdin)), CreatedAt: start.UTC()}
	if c.User != nil {
		rec.UserID = c.User.ID
	}
	if c.Key != nil {
		rec.APIKeyID = c.Key.ID
	}
	ex.Record = rec
	rec.describe(&run)
	res, err := e.Engine.Run(NewContextWithOwner(ctx, c.RateKey), &run)
	if err == nil && res == nil {
		err = Errorf(EINTERNAL, "engine returned no result")
	}
	if err != nil {
		rec.ErrorCode = ErrorCode(err)
		rec.State = RunDone // refused by the engine: the caller's mistake
		if code := rec.ErrorCode; code == EINTERNAL || code == EUNAVAILABLE {
			rec.setFailed(err, e.now())
		}
		if res != nil { // stopped when the request ended: what it used
			rec.DurationMS = float64(res.Duration.Microseconds()) / 1000
			rec.CompileMS = float64(res.CompileDuration.Microseconds()) / 1000
			rec.MemoryPeakBytes = res.MemoryPeakBytes
			rec.OutputBytes = int64(len(res.Stdout) + len(res.Stderr))
		}
	} else {
		ex.Result = res
		e.outputKeep(ctx, rec.UserID, c.Tier).keep(rec, res)
		e.chargeStoredRun(rec.UserID, rec)
	}
	if e.Usage != nil {
		e.Usage.Record(rec)
	}
	return ex, err
}

// heldRun prepares a run admitted by Admit: its stored module read from
// the stores, its sizes checked under the caller's limits, and, when they
// refuse it on a cached caller, under the caller read again.
func (e *Executor) heldRun(ctx context.Context, c **Caller, req *RunRequest, run *RunRequest, mod **Module, sizes func() error) (context.Context, error) {
	if *mod != nil {
		m, _, err := e.module(ctx, req.ModuleID, false)
		if err != nil {
			return ctx, err
		}
		*mod = m
		run.SHA256, run.LoadWasm = m.SHA256, e.loader(m)
		if req.Name == "" {
			run.Name = m.Name
		}
	}
	err := sizes()
	if err == nil || !(*c).Cached() {
		return ctx, err
	}
	ctx, fresh, err := e.Recheck(ctx, *c)
	if err != nil {
		return ctx, err
	}
	*c = fresh
	return ctx, sizes()
}

// refusal returns the error of an admission that took nothing: every slot
// of the caller's tier in use, or a quota spent; nil when adm is OK.
func refusal(t *Tier, adm *Admitted) error {
	if adm.Concurrency {
		return &Error{Code: ERATELIMIT,
			Message: fmt.Sprintf("too many runs in flight: tier %s allows %d at a time", t.Name, t.MaxConcurrent),
			Err:     errors.Join(&concurrencyError{max: t.MaxConcurrent}, &RetryAfterError{After: time.Second})}
	}
	if dec := adm.Decision; !dec.Allowed {
		return RetryLater(ERATELIMIT, dec.RetryAfter, "rate limit exceeded: tier %s allows %d runs per %s; retry in %s",
			t.Name, dec.Limit, windowName(dec.Limit, t), retryText(dec.RetryAfter))
	}
	return nil
}

// Inspect compiles and inspects wasm for the caller in ctx, as an upload
// does before it stores a module: compiling untrusted code is work, so it is
// admitted like a run. It holds one of the caller's concurrency slots, takes
// one event of each of the tier's run quotas (an upload counts as a run
// against them; it leaves no usage record, since nothing ran), passes the
// replica's run gate, and inspects under the tier's limits, whose wall time
// and memory bound the compile. The caller and its tier are read from the
// stores, not the cache: uploads are not the hot path. The Execution
// carries the tier, the limits and the rate decision (for the answer's
// headers).
//
// Errors: those of Execute's admission (ERATELIMIT with a RetryAfter hint,
// EUNAVAILABLE), ETOOLARGE for a module over the tier's size, and those of
// Engine.Inspect (EINVALID, ETOOLARGE for a module too costly to compile).
func (e *Executor) Inspect(ctx context.Context, wasm []byte) (*Inspection, *Execution, error) {
	return e.InspectAdmitted(ctx, nil, wasm)
}

// InspectAdmitted is Inspect for an upload whose caller was admitted before
// its body was read (Admit; nil: none): it compiles on the slot and the
// quota events that admission took, once.
func (e *Executor) InspectAdmitted(ctx context.Context, held *Caller, wasm []byte) (*Inspection, *Execution, error) {
	ex := &Execution{}
	if e.Engine == nil || e.Limiter == nil || (e.Tiers == nil && e.Directory == nil) {
		return nil, ex, Errorf(EINTERNAL, "executor needs an engine, a tier service and a rate limiter")
	}
	c, err := e.caller(ctx, "", false)
	if err != nil {
		return nil, ex, err
	}
	ex.Tier, ex.Limits = c.Tier, c.Limits
	if err := c.Limits.CheckSizes(int64(len(wasm)), 0, c.Tier.Name); err != nil {
		return nil, ex, err
	}
	var adm Admitted
	var ok bool
	if held != nil {
		adm, ok = held.held.take()
	}
	if !ok {
		if adm, err = e.Limiter.Admit(ctx, Admission{Key: c.RateKey, Quotas: TierRateLimits(c.Tier),
			MaxConcurrent: c.Tier.MaxConcurrent, SlotTTL: c.Limits.Timeout + slotMargin}); err != nil {
			return nil, ex, WrapError(EUNAVAILABLE, err, "rate limiter unavailable; retry later")
		}
	}
	if !adm.Concurrency {
		dec := adm.Decision
		ex.RateLimit = &dec
	}
	if err := refusal(c.Tier, &adm); err != nil {
		return nil, ex, err
	}
	if e.Gate != nil {
		leave, err := e.Gate.Enter(ctx)
		if err != nil {
			adm.Release(true)
			return nil, ex, err
		}
		defer leave()
	}
	defer adm.Release(false)
	insp, err := e.Engine.Inspect(ctx, wasm, c.Limits)
	return insp, ex, err
}

// module returns the stored module id (without its bytes) if the caller in
// ctx may run it.
func (e *Executor) module(ctx context.Context, id string, cached bool) (*Module, cacheTag, error) {
	if e.Directory != nil {
		return e.Directory.module(ctx, id, cached)
	}
	if e.Modules == nil {
		return nil, cacheTag{}, Errorf(EINTERNAL, "no module store configured")
	}
	m, err := e.Modules.FindModuleByID(ctx, id)
	return m, cacheTag{}, err
}

// loader returns the RunRequest.LoadWasm of a stored module: it reads the
// bytes (under the same visibility rule) and checks that they are the ones
// the digest names.
func (e *Executor) loader(m *Module) func(ctx context.Context) ([]byte, error) {
	id, sha := m.ID, m.SHA256
	return func(ctx context.Context) ([]byte, error) {
		if e.Modules == nil {
			return nil, Errorf(EINTERNAL, "no module store configured")
		}
		full, err := e.Modules.FindModuleWasm(ctx, id)
		if err != nil {
			return nil, err
		}
		if full.SHA256 != sha {
			return nil, Errorf(ENOTFOUND, "module %q not found", id)
		}
		return full.Wasm, nil
	}
}

func (e *Executor) validate(user *User, req *RunRequest) error {
	switch {
	case req.ModuleID != "" && len(req.Wasm) > 0:
		return Errorf(EINVALID, "send either a module or a module_id, not both")
	case req.ModuleID == "" && len(req.Wasm) == 0:
		return Errorf(EINVALID, "no module: send a wasm module or a module_id")
	case req.ModuleID != "" && user == nil:
		return Errorf(EUNAUTHORIZED, "stored modules need an API key")
	case req.ModuleID != "" && !ValidModuleID(req.ModuleID):
		return Errorf(ENOTFOUND, "module %q not found", req.ModuleID)
	case req.Limits.Timeout < 0:
		return Errorf(EINVALID, "timeout must be positive")
	case req.Limits.MaxMemoryBytes < 0:
		return Errorf(EINVALID, "memory must be positive")
	case len(req.Params) > 0 && req.Function == "":
		return Errorf(EINVALID, "params need a function name")
	case req.ModuleID != "" && req.Name != "":
		return Errorf(EINVALID, "a stored module runs under its own name: leave out name")
	case len(req.Name) > maxModuleNameBytes:
		return Errorf(EINVALID, "the module name is longer than %d bytes", maxModuleNameBytes)
	case len(req.Function) > maxFunctionNameBytes:
		return Errorf(EINVALID, "the function name is longer than %d bytes", maxFunctionNameBytes)
	}
	// The record keeps the function and the params: PostgreSQL's jsonb,
	// which reads the record's detail, refuses a NUL.
	if err := CheckText("the function name", req.Function); err != nil {
		return err
	}
	for i, p := range req.Params {
		if strings.IndexByte(p, 0) >= 0 {
			return Errorf(EINVALID, "param %d contains a NUL byte", i+1)
		}
	}
	return CheckArgv(req.Name, req.Args, req.Env)
}

// maxModuleNameBytes bounds a module's name, which is the guest's argv[0].
const maxModuleNameBytes = 255

// maxFunctionNameBytes bounds the name of the function a request calls,
// which its record keeps whole.
const maxFunctionNameBytes = 1 << 10

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
