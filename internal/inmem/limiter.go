// Package inmem is the in-memory rate limiter: exact sliding windows for one
// process. It limits a single-node WasmWiz on its own, and it decides for a
// replica while Redis does not answer (the Redis limiter's Fallback).
package inmem

import (
	"context"
	"hash/maphash"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// shardCount spreads keys over this many independently locked maps so that
// callers with different keys rarely wait for each other.
const shardCount = 64

// Options configures a Limiter. The zero value is ready for production.
type Options struct {
	// Now is the clock; nil means time.Now. Tests pass a clock they advance.
	Now func() time.Time
	// SweepInterval is how often each shard drops keys whose events and
	// slots have all expired, so that memory follows the keys in use.
	// Zero means one minute.
	SweepInterval time.Duration
}

// Limiter implements wasmwiz.RateLimiter in memory with an exact
// sliding-window log per key and limit: at most Limit events in any Window,
// at millisecond resolution. It is safe for concurrent use.
type Limiter struct {
	now     func() time.Time
	sweepMS int64
	seed    maphash.Seed
	shards  [shardCount]shard
	tokens  atomic.Uint64

	epoch     atomic.Int64 // the cache epoch admissions compare; 0 until one is published
	epochMu   sync.Mutex   // guards published and changes of epoch
	published int64        // the database's epoch last published

	counts wasmwiz.RateLimitCounts
}

var _ wasmwiz.RateLimiter = (*Limiter)(nil)

type shard struct {
	mu        sync.Mutex
	keys      map[string]*bucket
	nextSweep int64 // ms
}

// bucket holds everything counted for one key.
type bucket struct {
	logs  map[logID]*eventLog
	slots map[uint64]int64            // holder token → expiry in ms
	sets  map[string]map[string]int64 // named sets of slots: set → holder → expiry in ms
	last  int64                       // latest event time recorded: the clock never runs backwards for a key
}

// empty reports whether b holds nothing: it may be dropped.
func (b *bucket) empty() bool { return len(b.slots) == 0 && len(b.logs) == 0 && len(b.sets) == 0 }

// logID names one quota of a key. The Limit is not part of it, so an admin
// changing a tier's limit keeps the events already counted.
type logID struct {
	name   string
	window int64 // ms
}

// eventLog is the times (ms) of the key's events still inside the window,
// oldest first: ts[head:].
type eventLog struct {
	ts   []int64
	head int
}

// New returns a Limiter.
func New(opts Options) *Limiter {
	l := &Limiter{now: opts.Now, seed: maphash.MakeSeed()}
	if l.now == nil {
		l.now = time.Now
	}
	sweep := opts.SweepInterval
	if sweep <= 0 {
		sweep = time.Minute
	}
	l.sweepMS = max(sweep.Milliseconds(), 1)
	for i := range l.shards {
		l.shards[i].keys = make(map[string]*bucket)
	}
	return l
}

// Allow implements wasmwiz.RateLimiter. It never returns EUNAVAILABLE.
func (l *Limiter) Allow(ctx context.Context, key string, limits []wasmwiz.RateLimit) (wasmwiz.RateDecision, error) {
	if err := wasmwiz.ValidateRateLimits(key, limits); err != nil {
		return wasmwiz.RateDecision{}, err
	}
	sh, b, now := l.lockBucket(key)
	defer sh.mu.Unlock()
	d, _ := l.allowLocked(b, now, limits)
	return d, nil
}

// bucket returns key's bucket, made if needed; the shard's lock is held.
func (sh *shard) bucket(key string) *bucket {
	b := sh.keys[key]
	if b == nil {
		b = &bucket{}
		sh.keys[key] = b
	}
	return b
}

// allowLocked decides one Allow on b and records the event when allowed,
// at the returned time (now, or the key's latest event if later); the
// shard's lock is held.
func (l *Limiter) allowLocked(b *bucket, now int64, limits []wasmwiz.RateLimit) (wasmwiz.RateDecision, int64) {
	now = max(now, b.last)

	// First look at every limit; only when all allow is anything recorded.
	windows := make([]wasmwiz.RateWindow, len(limits))
	allowed := true
	for i, lim := range limits {
		w := wasmwiz.RateWindow{Limit: lim.Limit, Size: lim.Window.Milliseconds()}
		if lg := b.logs[logID{lim.Name, w.Size}]; lg != nil {
			lg.trim(now - w.Size)
			events := lg.ts[lg.head:]
			w.Count = int64(len(events))
			if w.Count > 0 {
				w.Newest = events[len(events)-1]
			}
			if w.Count >= w.Limit {
				// The event that must leave before one more fits.
				w.Leaving = events[w.Count-w.Limit]
				allowed = false
			}
		}
		windows[i] = w
	}
	if allowed {
		if b.logs == nil {
			b.logs = make(map[logID]*eventLog, len(limits))
		}
		for i, lim := range limits {
			id := logID{lim.Name, windows[i].Size}
			lg := b.logs[id]
			if lg == nil {
				lg = &eventLog{}
				b.logs[id] = lg
			}
			lg.ts = append(lg.ts, now)
		}
		b.last = now
	}
	l.counts.Rate(allowed)
	return wasmwiz.DecideRate(now, allowed, windows), now
}

// unrecord removes one event at t from each of limits' logs of b: the
// refund of an admitted run that never started. The shard's lock is held.
func (b *bucket) unrecord(t int64, limits []wasmwiz.RateLimit) {
	for _, lim := range limits {
		lg := b.logs[logID{lim.Name, lim.Window.Milliseconds()}]
		if lg == nil {
			continue
		}
		for i := len(lg.ts) - 1; i >= lg.head; i-- {
			if lg.ts[i] == t {
				lg.ts = append(lg.ts[:i], lg.ts[i+1:]...)
				break
			}
			if lg.ts[i] < t {
				break
			}
		}
	}
}

// Admit implements wasmwiz.RateLimiter: Acquire and Allow of a.Key in one
// step under the key's lock, after the epoch check. It never returns
// EUNAVAILABLE.
func (l *Limiter) Admit(ctx context.Context, a wasmwiz.Admission) (wasmwiz.Admitted, error) {
	if err := wasmwiz.ValidateAdmission(a); err != nil {
		return wasmwiz.Admitted{}, err
	}
	epoch := l.epoch.Load()
	if a.Epoch != 0 && a.Epoch != epoch {
		l.counts.Stale()
		return wasmwiz.Admitted{Stale: true, Epoch: epoch}, nil
	}
	sh, b, now := l.lockBucket(a.Key)
	defer sh.mu.Unlock()
	full := false
	if a.SlotSet == "" {
		full = l.slotsFullLocked(b, now, a.MaxConcurrent)
	} else {
		full = l.namedFullLocked(b, a.SlotSet, now, a.MaxConcurrent)
	}
	if full {
		return wasmwiz.Admitted{Concurrency: true, Epoch: epoch}, nil
	}
	d, at := l.allowLocked(b, now, a.Quotas)
	if !d.Allowed {
		return wasmwiz.Admitted{Decision: d, Epoch: epoch}, nil
	}
	var release func()
	if a.SlotSet == "" {
		release = l.takeSlotLocked(sh, b, a.Key, now, a.SlotTTL)
	} else {
		release = l.holdNamedLocked(sh, b, a.Key, a.SlotSet, a.Holder, now, a.SlotTTL)
	}
	key, quotas := a.Key, a.Quotas
	var once sync.Once
	return wasmwiz.Admitted{Decision: d, Epoch: epoch, Release: func(refund bool) {
		once.Do(func() {
			if refund {
				sh.mu.Lock()
				if b := sh.keys[key]; b != nil {
					b.unrecord(at, quotas)
				}
				sh.mu.Unlock()
			}
			release()
		})
	}}, nil
}

// PublishCacheEpoch implements wasmwiz.RateLimiter: an epoch other than
// the last one published moves the limiter's epoch to one it never had. It
// never fails.
func (l *Limiter) PublishCacheEpoch(ctx context.Context, e int64) error {
	l.epochMu.Lock()
	defer l.epochMu.Unlock()
	if l.epoch.Load() != 0 && e == l.published {
		return nil
	}
	l.published = e
	l.epoch.Add(1)
	return nil
}

// trim drops the events at or before cutoff, and gives memory back once
// most of the slice is dropped events.
func (lg *eventLog) trim(cutoff int64) {
	events := lg.ts[lg.head:]
	lg.head += sort.Search(len(events), func(i int) bool { return events[i] > cutoff })
	if lg.head == len(lg.ts) {
		lg.ts, lg.head = lg.ts[:0], 0
		if cap(lg.ts) > 1024 {
			lg.ts = nil
		}
		return
	}
	if lg.head >= 64 && lg.head >= len(lg.ts)/2 {
		live := len(lg.ts) - lg.head
		if cap(lg.ts) > 4*live && cap(lg.ts) > 1024 {
			lg.ts = append(make([]int64, 0, 2*live), lg.ts[lg.head:]...)
		} else {
			lg.ts = lg.ts[:copy(lg.ts, lg.ts[lg.head:])]
		}
		lg.head = 0
	}
}

// Acquire implements wasmwiz.RateLimiter. The release it returns is never
// nil, also when ok is false, and may be called more than once. It never
// returns EUNAVAILABLE.
func (l *Limiter) Acquire(ctx context.Context, key string, maxSlots int, ttl time.Duration) (func(), bool, error) {
	if err := validateAcquire(key, maxSlots, ttl); err != nil {
		return func() {}, false, err
	}
	sh, b, now := l.lockBucket(key)
	defer sh.mu.Unlock()
	if l.slotsFullLocked(b, now, maxSlots) {
		return func() {}, false, nil
	}
	return l.takeSlotLocked(sh, b, key, now, ttl), true, nil
}

// lockBucket locks key's shard, which the caller unlocks, sweeps it, and
// returns it with key's bucket and the time in ms.
func (l *Limiter) lockBucket(key string) (sh *shard, b *bucket, now int64) {
	now = l.now().UnixMilli()
	sh = l.shard(key)
	sh.mu.Lock()
	sh.sweep(now, l.sweepMS)
	return sh, sh.bucket(key), now
}

// slotsFullLocked drops b's expired slot holders and reports, counting the
// refusal, whether maxSlots are still held; the shard's lock is held.
func (l *Limiter) slotsFullLocked(b *bucket, now int64, maxSlots int) bool {
	b.dropExpiredSlots(now)
	if len(b.slots) >= maxSlots {
		l.counts.Slot(false)
		return true
	}
	return false
}

// takeSlotLocked adds a slot holder to b and returns its release; the
// shard's lock is held.
func (l *Limiter) takeSlotLocked(sh *shard, b *bucket, key string, now int64, ttl time.Duration) func() {
	if b.slots == nil {
		b.slots = make(map[uint64]int64)
	}
	token := l.tokens.Add(1)
	b.slots[token] = now + ttl.Milliseconds()
	l.counts.Slot(true)
	return func() {
		sh.mu.Lock()
		defer sh.mu.Unlock()
		if b := sh.keys[key]; b != nil {
			delete(b.slots, token)
			if b.empty() {
				delete(sh.keys, key)
			}
		}
	}
}

// namedFullLocked is slotsFullLocked for b's named set.
func (l *Limiter) namedFullLocked(b *bucket, set string, now int64, maxSlots int) bool {
	held := b.sets[set]
	dropExpired(held, now)
	if len(held) >= maxSlots {
		l.counts.Slot(false)
		return true
	}
	return false
}

// holdNamedLocked adds holder to b, key's bucket, in its named set and
// returns its release (ReleaseSlot's). The shard's lock is held.
func (l *Limiter) holdNamedLocked(sh *shard, b *bucket, key, set, holder string, now int64, ttl time.Duration) func() {
	if b.sets == nil {
		b.sets = make(map[string]map[string]int64)
	}
	held := b.sets[set]
	if held == nil {
		held = make(map[string]int64)
		b.sets[set] = held
	}
	held[holder] = now + ttl.Milliseconds()
	l.counts.Slot(true)
	return func() { sh.releaseNamed(key, set, holder) }
}

// ReleaseSlot implements wasmwiz.RateLimiter. It never returns
// EUNAVAILABLE.
func (l *Limiter) ReleaseSlot(ctx context.Context, key, set, holder string) error {
	if err := wasmwiz.ValidateSlotHolder(key, set, holder); err != nil {
		return err
	}
	l.shard(key).releaseNamed(key, set, holder)
	return nil
}

// releaseNamed gives back the slot holder holds in key's set, if any.
func (sh *shard) releaseNamed(key, set, holder string) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if b := sh.keys[key]; b != nil {
		b.releaseNamed(set, holder)
		if b.empty() {
			delete(sh.keys, key)
		}
	}
}

// releaseNamed deletes holder from b's set; the shard's lock is held.
func (b *bucket) releaseNamed(set, holder string) {
	held := b.sets[set]
	delete(held, holder)
	if len(held) == 0 {
		delete(b.sets, set)
	}
}

func validateAcquire(key string, maxSlots int, ttl time.Duration) error {
	switch {
	case key == "" || len(key) > 512:
		return wasmwiz.Errorf(wasmwiz.EINVALID, "concurrency key must be 1-512 bytes")
	case maxSlots < 1:
		return wasmwiz.Errorf(wasmwiz.EINVALID, "concurrency limit must be at least 1")
	case ttl < time.Millisecond:
		return wasmwiz.Errorf(wasmwiz.EINVALID, "slot ttl must be at least 1ms")
	}
	return nil
}

func (b *bucket) dropExpiredSlots(now int64) {
	dropExpired(b.slots, now)
	for set, held := range b.sets {
		if dropExpired(held, now); len(held) == 0 {
			delete(b.sets, set)
		}
	}
}

// dropExpired deletes the holders whose expiry is at or before now.
func dropExpired[K comparable](held map[K]int64, now int64) {
	for h, expiry := range held {
		if expiry <= now {
			delete(held, h)
		}
	}
}

// Stats returns the decisions made since New. FallbackActive and Fallback
// are always zero: this limiter has no shared store to lose.
func (l *Limiter) Stats() wasmwiz.RateLimitStats { return l.counts.Stats() }

// Keys returns how many keys the limiter holds state for, including keys
// whose events expired since the last sweep of their shard.
func (l *Limiter) Keys() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.keys)
		sh.mu.Unlock()
	}
	return n
}

func (l *Limiter) shard(key string) *shard {
	return &l.shards[maphash.String(l.seed, key)%shardCount]
}

// sweep drops, at most once per interval, the keys of the shard that hold
// nothing alive: every event outside its window and every slot expired.
func (sh *shard) sweep(now, interval int64) {
	if now < sh.nextSweep {
		return
	}
	sh.nextSweep = now + interval
	for key, b := range sh.keys {
		for id, lg := range b.logs {
			if n := len(lg.ts); n == 0 || lg.ts[n-1] <= now-id.window {
				delete(b.logs, id)
			}
		}
		b.dropExpiredSlots(now)
		if b.empty() {
			delete(sh.keys, key)
		}
	}
}
