package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// epochKey is the cache epoch's key: one per prefix, that is per deployment.
func (l *Limiter) epochKey() string { return l.prefix + "epoch" }

// release is one run's release, waiting to reach Redis: its slot holder
// comes out of the caller's slots (a ZREM) and, for a refund, its event out
// of every quota log (an LREM of one event from the tail).
type release struct {
	slots, token string // the caller's slots and the holder's token
	// logs are the quota logs a refund takes the event stamp out of; nil
	// when the run is not refunded.
	logs   []string
	stamp  string
	at     time.Time // when it was queued
	caller string    // the caller's key base (Limiter.base): every key starts with it
	// carried counts the scripts in flight that carry the release; while
	// one does, admissions of other callers leave it out.
	carried int
}

// Bounds of the releases waiting for Redis.
const (
	// maxPending: past it the oldest are dropped; their slots expire by
	// their ttl, a dropped refund leaves one event counted.
	maxPending = 10_000
	// maxFold is the most releases one admission or flush carries.
	maxFold = 64
)

// pending holds the releases not yet applied in Redis. An admission takes
// every waiting release of its own caller into its script, so that on one
// replica a release is never applied after a later admission it could
// change; it also takes other callers' releases that no script in flight
// carries (those cannot change its decision, so once is enough: when every
// admission carried every release, 16 clients of one replica sent each
// release about 12 times). A background flush sends what no admission took.
type pending struct {
	mu       sync.Mutex
	list     []*release
	flushing bool // a flush goroutine is running
	timer    bool // a flush waits for foldWindow
}

// carry returns the releases an admission of caller takes: all of
// caller's (up to maxFold), and up to maxFold of other callers' that no
// script in flight carries; they count as carried until done or uncarry.
// caller "" (a background flush) takes only those no script carries.
func (p *pending) carry(caller string) []*release {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*release
	own, others := 0, 0
	for _, r := range p.list {
		switch {
		case caller != "" && r.caller == caller && own < maxFold:
			own++
		case r.carried == 0 && others < maxFold:
			others++
		default:
			continue
		}
		r.carried++
		out = append(out, r)
	}
	return out
}

// uncarriedLocked reports whether a release waits that no script carries.
func (p *pending) uncarriedLocked() bool {
	for _, r := range p.list {
		if r.carried == 0 {
			return true
		}
	}
	return false
}

// uncarry gives back releases a script that failed carried.
func (p *pending) uncarry(rs []*release) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range rs {
		r.carried--
	}
}

// snapshot returns up to maxFold waiting releases (they stay waiting until
// done removes them), carried or not.
func (p *pending) snapshot() []*release {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.list) > maxFold {
		return append([]*release(nil), p.list[:maxFold]...)
	}
	return append([]*release(nil), p.list...)
}

// done removes releases that reached Redis.
func (p *pending) done(rs []*release) {
	if len(rs) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := p.list[:0]
	for _, r := range p.list {
		applied := false
		for _, d := range rs {
			if r == d {
				applied = true
				break
			}
		}
		if !applied {
			kept = append(kept, r)
		}
	}
	clear(p.list[len(kept):])
	p.list = kept
}

// encodeOps appends rs's releases to keys and args as luaOps reads them:
// the releases without a refund grouped by slots key (one ZREM each), then
// each refund with its logs.
func encodeOps(keys []string, args []any, rs []*release) ([]string, []any) {
	// Each slots key once, in the order the releases came: a scan of the
	// keys already written (an admission carries at most maxFold releases,
	// mostly of one caller) rather than a map built on every admission.
	for i, r := range rs {
		if r.logs != nil || slices.ContainsFunc(rs[:i], func(o *release) bool { return o.logs == nil && o.slots == r.slots }) {
			continue
		}
		at := len(args) + 1 // the count's place
		keys = append(keys, r.slots)
		args = append(args, "Z", 0)
		for _, o := range rs[i:] {
			if o.logs == nil && o.slots == r.slots {
				args = append(args, o.token)
			}
		}
		args[at] = len(args) - at - 1
	}
	for _, r := range rs {
		if r.logs != nil {
			keys = append(keys, r.slots)
			keys = append(keys, r.logs...)
			args = append(args, "R", len(r.logs), r.token, r.stamp)
		}
	}
	return keys, args
}

// Admit implements wasmwiz.RateLimiter: one script, one round trip, which
// also carries the releases waiting on this replica. While Redis is down it
// answers from the fallback with Fallback set.
func (l *Limiter) Admit(ctx context.Context, a wasmwiz.Admission) (wasmwiz.Admitted, error) {
	if err := wasmwiz.ValidateAdmission(a); err != nil {
		return wasmwiz.Admitted{}, err
	}
	adm, fallback, err := decide(ctx, l, "admission abandoned",
		func() (wasmwiz.Admitted, error) { return l.admitRedis(ctx, a) },
		func() (wasmwiz.Admitted, error) { return l.fallback.Admit(ctx, a) })
	if err != nil {
		return adm, err
	}
	if fallback {
		adm.Fallback, adm.Decision.Fallback = true, true
	}
	l.countAdmit(adm)
	return adm, nil
}

func (l *Limiter) countAdmit(a wasmwiz.Admitted) {
	switch {
	case a.Stale:
		l.counts.Stale()
	case a.Concurrency:
		l.counts.Slot(false)
	case a.Decision.Allowed:
		l.counts.Slot(true)
		l.counts.Rate(true)
	default:
		l.counts.Rate(false)
	}
}

func (l *Limiter) admitRedis(ctx context.Context, a wasmwiz.Admission) (wasmwiz.Admitted, error) {
	base := l.base(a.Key)
	slots, token := base+"slots", a.Holder
	if a.SlotSet != "" {
		slots = l.namedSlots(base, a.SlotSet)
	} else {
		var b [16]byte
		_, _ = rand.Read(b[:]) // never fails (crypto/rand documents it)
		token = hex.EncodeToString(b[:])
	}
	n := len(a.Quotas)
	keys := make([]string, 2, 2+n+8)
	keys[0], keys[1] = l.epochKey(), slots
	args := make([]any, 6, 6+2*n+24)
	args[0], args[1], args[2], args[3], args[4], args[5] = l.nowArg(), a.Epoch, a.MaxConcurrent, a.SlotTTL.Milliseconds(), token, n
	quotaKeys := make([]string, n)
	for i, q := range a.Quotas {
		w := q.Window.Milliseconds()
		quotaKeys[i] = base + q.Name + ":" + strconv.FormatInt(w, 10)
		keys = append(keys, quotaKeys[i])
		args = append(args, q.Limit, w)
	}
	folded := l.pending.carry(base)
	keys, args = encodeOps(keys, args, folded)

	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	out, err := admitScript.Run(ctx, l.client, keys, args...).Int64Slice()
	if err != nil {
		l.pending.uncarry(folded)
		return wasmwiz.Admitted{}, err
	}
	l.pending.done(folded)
	if len(out) < 2 {
		return wasmwiz.Admitted{}, errors.New("admit script: unexpected reply of " + strconv.Itoa(len(out)) + " values")
	}
	status, epoch := out[0], out[1]
	switch status {
	case 0:
		return wasmwiz.Admitted{Stale: true, Epoch: epoch}, nil
	case 2:
		return wasmwiz.Admitted{Concurrency: true, Epoch: epoch}, nil
	case 1, 3:
	default:
		return wasmwiz.Admitted{}, errors.New("admit script: unknown status " + strconv.FormatInt(status, 10))
	}
	if len(out) != 4+3*n {
		return wasmwiz.Admitted{}, errors.New("admit script: unexpected reply of " + strconv.Itoa(len(out)) + " values")
	}
	now, held, allowed, full := out[2], out[3], status == 1, false
	ws := make([]wasmwiz.RateWindow, n)
	for i, q := range a.Quotas {
		r := out[4+3*i:]
		ws[i] = wasmwiz.RateWindow{Limit: q.Limit, Size: q.Window.Milliseconds(), Count: r[0], Newest: r[1], Leaving: r[2]}
		full = full || r[0] >= q.Limit
	}
	if allowed == full {
		return wasmwiz.Admitted{}, errors.New("admit script: reply contradicts itself")
	}
	adm := wasmwiz.Admitted{Decision: wasmwiz.DecideRate(now, allowed, ws), Epoch: epoch}
	if allowed {
		stamp := strconv.FormatInt(now, 10)
		// A caller that held at most half its slots can wait a little for
		// its release: the next admission on this replica most likely
		// carries it. One near its limit cannot: another replica could
		// refuse its next run meanwhile.
		roomy := 2*held <= int64(a.MaxConcurrent)
		var once sync.Once
		adm.Release = func(refund bool) {
			once.Do(func() {
				r := &release{slots: slots, token: token, caller: base}
				if refund {
					r.logs, r.stamp = quotaKeys, stamp
				}
				l.release(r, roomy && !refund)
			})
		}
	}
	return adm, nil
}

// namedSlots is the key of the named set of slots of the caller whose
// keys start with base: beside its runs' slots, in its Cluster slot.
func (l *Limiter) namedSlots(base, set string) string { return base + "slots:" + set }

// ReleaseSlot implements wasmwiz.RateLimiter: the release waits for Redis
// as an admission's does (the next admission on this replica carries it,
// or a flush sends it at once), and the fallback gives the slot back too,
// in case it admitted the holder while Redis was away. It never returns
// EUNAVAILABLE: a release that cannot reach Redis waits for it, and one
// dropped leaves its slot to expire by its ttl.
func (l *Limiter) ReleaseSlot(ctx context.Context, key, set, holder string) error {
	if err := wasmwiz.ValidateSlotHolder(key, set, holder); err != nil {
		return err
	}
	if l.fallback != nil {
		_ = l.fallback.ReleaseSlot(ctx, key, set, holder)
	}
	base := l.base(key)
	l.release(&release{slots: l.namedSlots(base, set), token: holder, caller: base}, false)
	return nil
}

// release queues r for Redis: the next admission on this replica carries
// it. Unless it may wait (a caller far from its limit), a flush starts at
// once in the background if none is running, so the slot comes back within
// about a round trip of the run's end; one that may wait is flushed after
// Options.FoldWindow when no admission took it first.
func (l *Limiter) release(r *release, wait bool) {
	p := &l.pending
	p.mu.Lock()
	if len(p.list) >= maxPending {
		clear(p.list[:1])
		p.list = p.list[1:]
		l.storeErrors.Add(1) // a release lost: its slot waits for its ttl
	}
	r.at = time.Now()
	p.list = append(p.list, r)
	start := !p.flushing && !wait
	if start {
		p.flushing = true
	}
	arm := wait && !p.flushing && !p.timer
	if arm {
		p.timer = true
	}
	p.mu.Unlock()
	switch {
	case start:
		go l.flush()
	case arm:
		time.AfterFunc(l.foldWindow, l.flushLater)
	}
}

// flushLater flushes the waiting releases once the oldest has waited
// FoldWindow (admissions usually carried the older ones), unless a flush
// is running (it takes everything waiting) or nothing is left.
func (l *Limiter) flushLater() {
	p := &l.pending
	p.mu.Lock()
	p.timer = false
	if p.flushing || len(p.list) == 0 {
		p.mu.Unlock()
		return
	}
	if wait := l.foldWindow - time.Since(p.list[0].at); wait > 0 {
		p.timer = true
		p.mu.Unlock()
		time.AfterFunc(wait, l.flushLater)
		return
	}
	p.flushing = true
	p.mu.Unlock()
	l.flush()
}

// flush sends waiting releases that no admission in flight carries until
// none is left, or Redis fails (the next admission or release tries again).
func (l *Limiter) flush() {
	p := &l.pending
	for {
		rs := p.carry("")
		if len(rs) == 0 {
			break
		}
		keys, args := encodeOps(nil, nil, rs)
		ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
		err := opsScript.Run(ctx, l.client, keys, args...).Err()
		cancel()
		if err != nil {
			p.uncarry(rs)
			l.storeErrors.Add(1)
			l.log.Debug("rate limiter: releasing slots did not reach Redis; the next call carries them", "err", err)
			break
		}
		p.done(rs)
	}
	p.mu.Lock()
	p.flushing = false
	again := p.uncarriedLocked() && !l.down.Load()
	if again {
		p.flushing = true
	}
	p.mu.Unlock()
	if again {
		// A release queued after the last snapshot: go on, without
		// recursion growing the stack.
		go l.flush()
	}
}

// flushNow sends the waiting releases before a call that does not carry
// them (Allow, Acquire), so that on one replica a release is never applied
// after a later call. Failures are left to the background flush.
func (l *Limiter) flushNow(ctx context.Context) {
	rs := l.pending.snapshot()
	if len(rs) == 0 {
		return
	}
	keys, args := encodeOps(nil, nil, rs)
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	if err := opsScript.Run(ctx, l.client, keys, args...).Err(); err == nil {
		l.pending.done(rs)
	}
}

// PublishCacheEpoch implements wasmwiz.RateLimiter: the fallback's epoch
// is raised always, Redis's when it answers.
func (l *Limiter) PublishCacheEpoch(ctx context.Context, e int64) error {
	if l.fallback != nil {
		_ = l.fallback.PublishCacheEpoch(ctx, e)
	}
	try, probe := l.route()
	if !try {
		return wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "Redis is away: the cache epoch is published in memory only")
	}
	cctx, cancel := context.WithTimeout(ctx, max(l.timeout, time.Second))
	defer cancel()
	if err := publishScript.Run(cctx, l.client, []string{l.epochKey()}, e).Err(); err != nil {
		if ctx.Err() != nil {
			l.abandoned(probe)
		} else {
			l.failed(err, probe)
		}
		return wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, err, "cannot publish the cache epoch to Redis")
	}
	l.succeeded(probe)
	return nil
}
