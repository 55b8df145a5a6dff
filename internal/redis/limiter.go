// Package redis is the rate limiter every replica shares: sliding-window logs
// and concurrency slots in Redis, each call one Lua script, so counts are
// exact across replicas. When Redis fails or answers slower than a short
// timeout, a call is decided at once by a fallback limiter (the in-memory
// one, passed in by the wiring), and Redis is probed again now and then.
package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wasmwiz/wasmwiz"
)

// Defaults of Options.
const (
	DefaultPrefix        = "wasmwiz:rl:"
	DefaultTimeout       = 50 * time.Millisecond
	DefaultProbeInterval = time.Second
	DefaultFoldWindow    = 2 * time.Millisecond
)

// Options configures a Limiter.
type Options struct {
	// Client is the Redis connection; required. A *goredis.Client must have
	// ContextTimeoutEnabled, or Timeout could not cut a slow call short;
	// NewClient makes one that has.
	Client goredis.UniversalClient
	// Prefix starts every key; default DefaultPrefix. Keys are
	// Prefix+"{"+key+"}:"+name+":"+windowMS for a quota and
	// Prefix+"{"+key+"}:slots" for concurrency slots (+":"+set for a named
	// set, Admission.SlotSet): the braces keep one key's quotas and slots
	// in one Redis Cluster slot, as the script needs.
	Prefix string
	// Timeout bounds every call to Redis; past it, the fallback decides.
	// Default DefaultTimeout.
	Timeout time.Duration
	// Fallback decides while Redis is down; nil makes those calls fail with
	// EUNAVAILABLE. The wiring passes an inmem.Limiter.
	Fallback wasmwiz.RateLimiter
	// ProbeInterval is how long, after a failure, calls go straight to the
	// fallback before one call tries Redis again. Default
	// DefaultProbeInterval.
	ProbeInterval time.Duration
	// Now, when set, is the clock of every decision, sent to the scripts in
	// ms; tests pass a clock they advance. Nil uses Redis's own clock (TIME)
	// inside the scripts, one clock for all replicas, and time.Now for the
	// probe schedule.
	Now func() time.Time
	// Logger receives one line when Redis stops answering and one when it
	// answers again; default slog.Default().
	Logger *slog.Logger
	// TripAfter is how long Redis must have answered no call of this
	// limiter before a call that timed out ends shared limits on this
	// replica (calls then go to the fallback until a probe finds Redis
	// again). A call that times out sooner after an answer is decided by
	// the fallback alone: on a loaded machine one call can pass Timeout
	// while Redis answers the others, and a second of decisions in memory
	// would follow from it. Any other failure (refused, reset, an error
	// reply) ends shared limits at once. Default Timeout: a call that
	// waited out its whole Timeout without Redis answering any other call
	// meanwhile ends them, as before.
	TripAfter time.Duration
	// FoldWindow is how long the release of a run whose caller had room to
	// spare (at most half its slots) waits for the next admission on this
	// replica to carry it, before it is sent on its own. Default
	// DefaultFoldWindow. Releases of callers near their limit never wait.
	FoldWindow time.Duration
}

// Limiter implements wasmwiz.RateLimiter on Redis. It is safe for concurrent
// use by any number of goroutines and replicas.
type Limiter struct {
	client        goredis.UniversalClient
	prefix        string
	timeout       time.Duration
	fallback      wasmwiz.RateLimiter
	probeInterval time.Duration
	tripAfter     time.Duration
	foldWindow    time.Duration
	now           func() time.Time // nil: Redis TIME
	clock         func() time.Time // probe schedule
	log           *slog.Logger

	down       atomic.Bool
	lastAnswer atomic.Int64 // time.Now().UnixNano() of Redis's last answer; 0: none yet
	mu         sync.Mutex   // guards the fields below
	downSince  time.Time
	nextProbe  time.Time
	probing    bool

	pending pending // releases on their way to Redis

	counts                          wasmwiz.RateLimitCounts
	fallbacks, outages, storeErrors atomic.Uint64
}

var _ wasmwiz.RateLimiter = (*Limiter)(nil)

// NewClient returns a client for a redis:// or rediss:// URL with the
// settings the limiter needs: context deadlines respected, so that a call
// never outlives Options.Timeout. EINVALID for a bad URL.
func NewClient(url string) (*goredis.Client, error) {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		return nil, wasmwiz.WrapError(wasmwiz.EINVALID, err, "invalid Redis URL")
	}
	opt.ContextTimeoutEnabled = true
	opt.DisableIdentity = true
	if opt.DialerRetries == 0 {
		// Dial retries cannot fit in a 50ms budget; the probe retries later.
		opt.DialerRetries = 1
	}
	return goredis.NewClient(opt), nil
}

// New returns a Limiter. EINVALID when Client is missing or a *goredis.Client
// ignores context deadlines.
func New(opts Options) (*Limiter, error) {
	if opts.Client == nil {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "redis limiter needs a client")
	}
	if c, ok := opts.Client.(*goredis.Client); ok && !c.Options().ContextTimeoutEnabled {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "redis limiter needs a client with ContextTimeoutEnabled (see NewClient)")
	}
	l := &Limiter{
		client:        opts.Client,
		prefix:        opts.Prefix,
		timeout:       opts.Timeout,
		fallback:      opts.Fallback,
		probeInterval: opts.ProbeInterval,
		tripAfter:     opts.TripAfter,
		foldWindow:    opts.FoldWindow,
		now:           opts.Now,
		clock:         opts.Now,
		log:           opts.Logger,
	}
	if l.prefix == "" {
		l.prefix = DefaultPrefix
	}
	if l.timeout <= 0 {
		l.timeout = DefaultTimeout
	}
	if l.probeInterval <= 0 {
		l.probeInterval = DefaultProbeInterval
	}
	if l.tripAfter <= 0 {
		l.tripAfter = l.timeout
	}
	if l.foldWindow <= 0 {
		l.foldWindow = DefaultFoldWindow
	}
	if l.clock == nil {
		l.clock = time.Now
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	return l, nil
}

// Allow implements wasmwiz.RateLimiter. While Redis is down it answers from
// the fallback with Fallback set, and fails (EUNAVAILABLE) only without a
// fallback or when ctx ends first.
func (l *Limiter) Allow(ctx context.Context, key string, limits []wasmwiz.RateLimit) (wasmwiz.RateDecision, error) {
	if err := wasmwiz.ValidateRateLimits(key, limits); err != nil {
		return wasmwiz.RateDecision{}, err
	}
	d, fallback, err := decide(ctx, l, "rate limit check abandoned",
		func() (wasmwiz.RateDecision, error) { return l.allowRedis(ctx, key, limits) },
		func() (wasmwiz.RateDecision, error) { return l.fallback.Allow(ctx, key, limits) })
	if err != nil {
		return d, err
	}
	if fallback {
		d.Fallback = true
	}
	l.counts.Rate(d.Allowed)
	return d, nil
}

// decide makes one call of the limiter: on Redis (viaRedis) when route lets
// it, else, or when Redis fails, on the fallback (viaFallback), whose use it
// counts and reports. The call fails EUNAVAILABLE (abandoned, its message)
// when ctx ends during the Redis call, and without a fallback; a failure of
// the fallback is returned with its answer.
func decide[T any](ctx context.Context, l *Limiter, abandoned string, viaRedis, viaFallback func() (T, error)) (v T, fallback bool, err error) {
	var zero T
	if try, probe := l.route(); try {
		v, err := viaRedis()
		if err == nil {
			l.succeeded(probe)
			return v, false, nil
		}
		if ctx.Err() != nil {
			l.abandoned(probe)
			return zero, false, wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, err, "%s", abandoned)
		}
		l.failed(err, probe)
	}
	if l.fallback == nil {
		return zero, false, wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "rate limiter unavailable")
	}
	if v, err = viaFallback(); err != nil {
		return v, true, err
	}
	l.fallbacks.Add(1)
	return v, true, nil
}

func (l *Limiter) allowRedis(ctx context.Context, key string, limits []wasmwiz.RateLimit) (wasmwiz.RateDecision, error) {
	l.flushNow(ctx)
	keys := make([]string, len(limits))
	args := make([]any, 1, 1+2*len(limits))
	args[0] = l.nowArg()
	base := l.base(key)
	for i, lim := range limits {
		w := lim.Window.Milliseconds()
		keys[i] = base + lim.Name + ":" + strconv.FormatInt(w, 10)
		args = append(args, lim.Limit, w)
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	out, err := allowScript.Run(ctx, l.client, keys, args...).Int64Slice()
	if err != nil {
		return wasmwiz.RateDecision{}, err
	}
	if len(out) != 2+3*len(limits) {
		return wasmwiz.RateDecision{}, errors.New("rate limit script: unexpected reply of " + strconv.Itoa(len(out)) + " values")
	}
	now, allowed, full := out[1], out[0] == 1, false
	ws := make([]wasmwiz.RateWindow, len(limits))
	for i, lim := range limits {
		r := out[2+3*i:]
		ws[i] = wasmwiz.RateWindow{Limit: lim.Limit, Size: lim.Window.Milliseconds(), Count: r[0], Newest: r[1], Leaving: r[2]}
		full = full || r[0] >= lim.Limit
	}
	if allowed == full {
		return wasmwiz.RateDecision{}, errors.New("rate limit script: reply contradicts itself")
	}
	return wasmwiz.DecideRate(now, allowed, ws), nil
}

// nowArg is the time the scripts decide at: the configured clock in ms, or
// -1 for Redis's own.
func (l *Limiter) nowArg() int64 {
	if l.now == nil {
		return -1
	}
	return l.now().UnixMilli()
}

func (l *Limiter) base(key string) string { return l.prefix + "{" + key + "}:" }

// Acquire implements wasmwiz.RateLimiter. The release it returns is never
// nil, also when ok is false, and may be called more than once; a slot taken
// from the fallback is given back to the fallback. A release that cannot
// reach Redis leaves the slot to expire after ttl.
func (l *Limiter) Acquire(ctx context.Context, key string, maxSlots int, ttl time.Duration) (func(), bool, error) {
	noop := func() {}
	switch {
	case key == "" || len(key) > 512:
		return noop, false, wasmwiz.Errorf(wasmwiz.EINVALID, "concurrency key must be 1-512 bytes")
	case maxSlots < 1:
		return noop, false, wasmwiz.Errorf(wasmwiz.EINVALID, "concurrency limit must be at least 1")
	case ttl < time.Millisecond:
		return noop, false, wasmwiz.Errorf(wasmwiz.EINVALID, "slot ttl must be at least 1ms")
	}
	type slot struct {
		release func()
		ok      bool
	}
	s, _, err := decide(ctx, l, "concurrency check abandoned",
		func() (slot, error) {
			release, ok, err := l.acquireRedis(ctx, key, maxSlots, ttl)
			return slot{release, ok}, err
		},
		func() (slot, error) {
			release, ok, err := l.fallback.Acquire(ctx, key, maxSlots, ttl)
			return slot{release, ok}, err
		})
	if err != nil {
		return noop, false, err
	}
	l.counts.Slot(s.ok)
	return s.release, s.ok, nil
}

func (l *Limiter) acquireRedis(ctx context.Context, key string, maxSlots int, ttl time.Duration) (func(), bool, error) {
	l.flushNow(ctx)
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documents it)
	token := hex.EncodeToString(b[:])
	slots := l.base(key) + "slots"
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	got, err := acquireScript.Run(ctx, l.client, []string{slots}, l.nowArg(), maxSlots, ttl.Milliseconds(), token).Int64()
	if err != nil {
		return nil, false, err
	}
	if got != 1 {
		return func() {}, false, nil
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
			defer cancel()
			if err := l.client.ZRem(ctx, slots, token).Err(); err != nil {
				l.storeErrors.Add(1)
				l.log.Debug("rate limiter: slot release did not reach Redis; it expires by itself",
					"key", key, "ttl", ttl, "err", err)
			}
		})
	}, true, nil
}

// route says whether a call tries Redis. While Redis is down, one call per
// ProbeInterval does (the probe); the others go to the fallback at once.
func (l *Limiter) route() (try, probe bool) {
	if !l.down.Load() {
		return true, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.down.Load() {
		return true, false
	}
	if l.probing || l.clock().Before(l.nextProbe) {
		return false, false
	}
	l.probing = true
	return true, true
}

// succeeded records that Redis answered, ending an outage.
func (l *Limiter) succeeded(probe bool) {
	l.lastAnswer.Store(time.Now().UnixNano())
	if !probe && !l.down.Load() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if probe {
		l.probing = false
	}
	if l.down.Load() {
		l.down.Store(false)
		l.log.Info("rate limiter: Redis answers again; shared limits are back",
			"outage", l.clock().Sub(l.downSince).Round(time.Millisecond), "fallback_decisions", l.fallbacks.Load())
	}
}

// failed records that Redis did not answer in time, starting an outage
// (logged once) or putting the next probe off; a timeout within TripAfter
// of Redis's last answer only counts as a store error.
func (l *Limiter) failed(err error, probe bool) {
	if !probe && !l.down.Load() && isTimeout(err) {
		if last := l.lastAnswer.Load(); last != 0 && time.Since(time.Unix(0, last)) < l.tripAfter {
			l.storeErrors.Add(1)
			l.log.Debug("rate limiter: a Redis call timed out; the fallback decided it alone", "err", err, "timeout", l.timeout)
			return
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock()
	if probe {
		l.probing = false
	}
	l.nextProbe = now.Add(l.probeInterval)
	l.storeErrors.Add(1)
	if !l.down.Load() {
		l.down.Store(true)
		l.outages.Add(1)
		l.downSince = now
		l.log.Warn("rate limiter: Redis does not answer; deciding in memory on this replica until it does",
			"err", err, "timeout", l.timeout, "probe_interval", l.probeInterval)
	}
}

// isTimeout reports whether err is a call that ran out of time (its
// context's deadline, or the connection's).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// abandoned ends a probe that the caller gave up on, without a verdict.
func (l *Limiter) abandoned(probe bool) {
	if probe {
		l.mu.Lock()
		l.probing = false
		l.mu.Unlock()
	}
}

var _ wasmwiz.KnownKeys = (*Limiter)(nil)

// knownKey is the Redis key of network's known set.
func (l *Limiter) knownKey(network string) string { return l.prefix + "known:{" + network + "}" }

// known makes one call of a known set on Redis within the limiter's
// timeout, as the other calls do: while Redis is down it is not tried (no
// probe is spent on it) and fails EUNAVAILABLE, and a failure counts
// toward an outage. The fallback keeps no known sets: each replica's own
// is the HTTP layer's.
func (l *Limiter) known(ctx context.Context, call func(ctx context.Context) error) error {
	try, probe := l.route()
	if !try {
		return wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "the known keys are shared through Redis, which does not answer")
	}
	cctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	err := call(cctx)
	switch {
	case err == nil:
		l.succeeded(probe)
		return nil
	case ctx.Err() != nil:
		l.abandoned(probe)
	default:
		l.failed(err, probe)
	}
	return wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, err, "the known keys: redis: %v", err)
}

// noteKnownScript adds a key to a network's set, renews the set's ttl, and
// drops members at random past the bound.
var noteKnownScript = goredis.NewScript(`
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local over = redis.call('SCARD', KEYS[1]) - tonumber(ARGV[3])
if over > 0 then redis.call('SPOP', KEYS[1], over) end
return 0`)

// NoteKnownKey implements wasmwiz.KnownKeys.
func (l *Limiter) NoteKnownKey(ctx context.Context, network string, digest [32]byte, ttl time.Duration) error {
	return l.known(ctx, func(ctx context.Context) error {
		return noteKnownScript.Run(ctx, l.client, []string{l.knownKey(network)},
			wasmwiz.KnownKeyHash(digest), ttl.Milliseconds(), wasmwiz.MaxKnownKeys).Err()
	})
}

// KnownKeysOf implements wasmwiz.KnownKeys.
func (l *Limiter) KnownKeysOf(ctx context.Context, network string) (map[string]bool, error) {
	var members []string
	err := l.known(ctx, func(ctx context.Context) (err error) {
		members, err = l.client.SRandMemberN(ctx, l.knownKey(network), wasmwiz.MaxKnownKeys).Result()
		return err
	})
	if err != nil {
		return nil, err
	}
	keys := make(map[string]bool, len(members))
	for _, m := range members {
		keys[m] = true
	}
	return keys, nil
}

// ForgetKnownKey implements wasmwiz.KnownKeys.
func (l *Limiter) ForgetKnownKey(ctx context.Context, network string, digest [32]byte) error {
	return l.known(ctx, func(ctx context.Context) error {
		return l.client.SRem(ctx, l.knownKey(network), wasmwiz.KnownKeyHash(digest)).Err()
	})
}

// Stats returns the decisions made since New. Allowed, Limited, Acquired and
// AcquireRefused count every decision, the fallback's included; Fallback
// counts the Allow and Acquire calls the fallback decided; FallbackActive
// reports an outage in progress, Outages how many began, and StoreErrors
// the Redis calls that failed or timed out (a slot release included).
func (l *Limiter) Stats() wasmwiz.RateLimitStats {
	st := l.counts.Stats()
	st.Fallback = l.fallbacks.Load()
	st.FallbackActive = l.down.Load()
	st.Outages = l.outages.Load()
	st.StoreErrors = l.storeErrors.Load()
	return st
}

// Ping reports whether Redis answers within a second (or ctx), for
// readiness checks: nil, or EUNAVAILABLE.
func (l *Limiter) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := l.client.Ping(ctx).Err(); err != nil {
		return wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, err, "redis does not answer")
	}
	return nil
}
