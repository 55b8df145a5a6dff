package wasmwiz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync/atomic"
	"time"
)

// RateLimit is one quota: at most Limit events in any Window (a sliding
// window counted in whole milliseconds, not a calendar minute or day).
type RateLimit struct {
	Name   string // "minute", "day": used in headers and metrics
	Limit  int64
	Window time.Duration
}

// RateDecision is the answer to one Allow. When several limits are checked,
// it describes the most restrictive one (the one that refused, or the one
// with the fewest remaining).
type RateDecision struct {
	Allowed    bool
	Limit      int64         // X-RateLimit-Limit
	Remaining  int64         // events still allowed now, after this one (X-RateLimit-Remaining)
	ResetAfter time.Duration // until the window is full again: every counted event has left it (X-RateLimit-Reset)
	RetryAfter time.Duration // when refused: exactly until one more event would be allowed (Retry-After); 0 when allowed
	Fallback   bool          // decided by the in-memory fallback, not the shared store
}

// RateLimiter counts events per key against quotas, exactly at millisecond
// resolution, and concurrent runs per key. Implementations: in-memory (one
// node) and Redis (all replicas). It also holds the cache epoch (see
// Directory) so that one call admits a run and checks that what the replica
// cached is current: on Redis that is one round trip per execute.
type RateLimiter interface {
	// Admit takes, atomically, one of a.MaxConcurrent slots of a.Key (of its
	// runs, or of the set a.SlotSet names) and one event of every quota, or
	// nothing: a run refused for concurrency or by
	// a quota consumes nothing. When a.Epoch is set and differs from the
	// limiter's cache epoch it takes nothing and answers Stale, so that the
	// caller reads its data again and asks once more. Every answer carries
	// the current epoch. Errors: EINVALID for an unusable Admission (as
	// Allow and Acquire), EUNAVAILABLE for a limiter that cannot decide (the
	// Redis limiter falls back instead when it has a fallback).
	Admit(ctx context.Context, a Admission) (Admitted, error)
	// PublishCacheEpoch tells the limiter the database's cache epoch e
	// (CacheEpochService). When e is not the one last published the
	// limiter's own epoch, the one Admit compares, moves to a value it never
	// had, so that every replica's next Admit under the old one is Stale;
	// publishing the same e again changes nothing. Writers publish after a
	// change commits (the database's epoch grew with it); serve also
	// publishes every second, which repairs a publication that was lost.
	// EUNAVAILABLE when the shared store does not answer (the fallback's
	// epoch moves all the same).
	PublishCacheEpoch(ctx context.Context, e int64) error

	// Allow records one event for key if every limit allows it; a refused
	// event consumes nothing. Limits are told apart by Name and Window, so a
	// changed Limit keeps the events already counted. Errors: EINVALID for an
	// empty key, no limits, a limit below 1, a window below 1ms or two limits
	// with one name; EUNAVAILABLE for a limiter that cannot decide (the Redis
	// limiter falls back instead of failing when it has a fallback).
	Allow(ctx context.Context, key string, limits []RateLimit) (RateDecision, error)
	// Acquire takes one of max concurrent slots for key; ok is false when all
	// are taken. release gives the slot back and may be called more than
	// once; a slot whose holder died is freed after ttl. Errors: EINVALID for
	// an empty key, max below 1 or ttl below 1ms; EUNAVAILABLE as for Allow.
	Acquire(ctx context.Context, key string, max int, ttl time.Duration) (release func(), ok bool, err error)
	// ReleaseSlot gives back the slot that holder holds in the set of key's
	// slots named set (an Admission's Key, SlotSet and Holder), from any
	// replica: the one that admitted it need not be the one that sees its
	// work end. A holder that holds no slot (given back already, expired)
	// is no error. Like Admitted.Release it does not wait for a shared
	// store: the Redis limiter sends it with the next call, or at once in
	// the background, and gives it back in its fallback too. Errors:
	// EINVALID for an empty key, set or holder.
	ReleaseSlot(ctx context.Context, key, set, holder string) error
}

// Admission is what one execute asks of the RateLimiter before it runs.
type Admission struct {
	Key           string        // whose runs are counted: RateKey
	Quotas        []RateLimit   // the tier's quotas: TierRateLimits
	MaxConcurrent int           // the tier's concurrent runs
	SlotTTL       time.Duration // a slot whose holder died frees itself after this
	// SlotSet names the set of Key's slots the admission takes one of: ""
	// is the runs' set (the slots Acquire counts); another name is a set of
	// its own, counted apart (BackgroundSlots: background runs queued or
	// running). In a named set every slot has a Holder, a name unique among
	// the set's holders (a background run's id), so that whichever replica
	// sees its work end can give it back (RateLimiter.ReleaseSlot). An
	// admission of a named set may take no quota event (Quotas empty: they
	// were spent by an earlier admission of the same request); its Decision
	// then allows, with no limit.
	SlotSet, Holder string
	// Epoch is the cache epoch under which the caller's cached data was
	// read (Directory); 0 when everything was read from the store for this
	// request, and nothing needs checking.
	Epoch int64
}

// Admitted is a RateLimiter's answer to Admit.
type Admitted struct {
	// Stale: Admission.Epoch is not the current epoch; nothing was taken.
	Stale bool
	// Concurrency: every slot was taken; nothing was taken.
	Concurrency bool
	// Decision is the quota decision, made when the epoch was current and a
	// slot was free; when it refuses, the slot was not taken either.
	Decision RateDecision
	// Epoch is the limiter's cache epoch at this answer; 0 when it has none
	// yet (nothing published, or Redis lost it): then nothing may be cached.
	Epoch int64
	// Fallback: decided by the in-memory fallback, not the shared store; the
	// epoch then only reflects what this replica was told.
	Fallback bool
	// Release gives the slot back once the run is over; with refund true
	// also the quota events (for a run that never started). Set, and safe to
	// call more than once, when the run was admitted (Decision.Allowed). It
	// does not wait for a shared store: the Redis limiter sends it with the
	// next call, or at once in the background.
	Release func(refund bool)
}

// OK reports whether the run may go ahead: a slot and every quota
// event were taken.
func (a *Admitted) OK() bool { return !a.Stale && !a.Concurrency && a.Decision.Allowed }

// ValidateAdmission returns EINVALID for an Admission no limiter can decide:
// those of ValidateRateLimits (no quotas is valid in a named SlotSet),
// MaxConcurrent below 1, SlotTTL below 1ms, a negative Epoch, a SlotSet
// without a Holder or a Holder without a SlotSet, or either longer than
// 256 bytes. Both limiters check their input with it.
func ValidateAdmission(a Admission) error {
	named := a.SlotSet != "" || a.Holder != ""
	if named {
		if err := ValidateSlotHolder(a.Key, a.SlotSet, a.Holder); err != nil {
			return err
		}
	}
	if !named || len(a.Quotas) > 0 {
		if err := ValidateRateLimits(a.Key, a.Quotas); err != nil {
			return err
		}
	}
	switch {
	case a.MaxConcurrent < 1:
		return Errorf(EINVALID, "concurrency limit must be at least 1")
	case a.SlotTTL < time.Millisecond:
		return Errorf(EINVALID, "slot ttl must be at least 1ms")
	case a.Epoch < 0:
		return Errorf(EINVALID, "cache epoch must not be negative")
	}
	return nil
}

// ValidateSlotHolder returns EINVALID unless key is 1-512 bytes and set
// and holder are 1-256 bytes each: a slot of a named set
// (Admission.SlotSet, RateLimiter.ReleaseSlot).
func ValidateSlotHolder(key, set, holder string) error {
	switch {
	case key == "" || len(key) > 512:
		return Errorf(EINVALID, "rate limit key must be 1-512 bytes")
	case set == "" || len(set) > 256:
		return Errorf(EINVALID, "a slot holder needs a set of slots of 1-256 bytes")
	case holder == "" || len(holder) > 256:
		return Errorf(EINVALID, "a set of slots needs a holder of 1-256 bytes")
	}
	return nil
}

// RateLimitCounts counts a limiter's decisions for its Stats: both limiters
// count with it, the same way. The zero value is ready; it is safe for
// concurrent use.
type RateLimitCounts struct {
	allowed, limited, acquired, acquireRefused, stale atomic.Uint64
}

// Rate counts one quota decision (Allow, or an Admit that got a slot).
func (c *RateLimitCounts) Rate(allowed bool) {
	if allowed {
		c.allowed.Add(1)
	} else {
		c.limited.Add(1)
	}
}

// Slot counts one concurrency decision (Acquire, or an Admit).
func (c *RateLimitCounts) Slot(taken bool) {
	if taken {
		c.acquired.Add(1)
	} else {
		c.acquireRefused.Add(1)
	}
}

// Stale counts an Admit answered Stale.
func (c *RateLimitCounts) Stale() { c.stale.Add(1) }

// Stats returns the counts; the fields of a shared store are left zero.
func (c *RateLimitCounts) Stats() RateLimitStats {
	return RateLimitStats{
		Allowed:        c.allowed.Load(),
		Limited:        c.limited.Load(),
		Acquired:       c.acquired.Load(),
		AcquireRefused: c.acquireRefused.Load(),
		Stale:          c.stale.Load(),
	}
}

// KnownKeys is what a RateLimiter shared by replicas (Redis) also offers:
// for each client network (an IPv4 /24, an IPv6 /48: the HTTP layer's
// network bound on keys that do not authenticate), the API keys that
// authenticated from it lately. The HTTP layer blocks, for a minute, the
// keys of an address or network that sent too many keys that do not
// authenticate, except keys known good; a replica that never saw a
// tenant's key authenticate (it just started, or the tenant's requests
// went elsewhere) reads the network's set once when it blocks it, so that
// another tenant's flood from the same cloud network does not lock that
// tenant out, and the flood's refusals still cost no call. The sets hold
// KnownKeyHash of each key, never the digest the stores keep, at most
// MaxKnownKeys a network. Errors: EUNAVAILABLE while the shared store does
// not answer (the caller then decides on what it knows itself).
type KnownKeys interface {
	// NoteKnownKey records that the key of digest (its SHA-256)
	// authenticated from network, for ttl.
	NoteKnownKey(ctx context.Context, network string, digest [32]byte, ttl time.Duration) error
	// KnownKeysOf returns the KnownKeyHash of the keys noted from network
	// within their ttl.
	KnownKeysOf(ctx context.Context, network string) (map[string]bool, error)
	// ForgetKnownKey removes the key of digest from network's, after it
	// failed to authenticate from there (revoked, its user disabled).
	ForgetKnownKey(ctx context.Context, network string, digest [32]byte) error
}

// MaxKnownKeys bounds the keys a KnownKeys set keeps for one network (past
// it, one noted before is dropped at random).
const MaxKnownKeys = 256

// KnownKeyHash is what a KnownKeys set keeps of the key of digest: a hash of
// the digest, so that the shared store does not hold what the stores
// authenticate by.
func KnownKeyHash(digest [32]byte) string {
	h := sha256.Sum256(append([]byte("wasmwiz known key\x00"), digest[:]...))
	return hex.EncodeToString(h[:16])
}

// RateLimitStats counts a limiter's decisions since it started, for metrics
// (rate-limit decisions by result). Both limiters expose it as Stats().
type RateLimitStats struct {
	Allowed        uint64 // Allow and Admit calls that recorded an event
	Limited        uint64 // Allow and Admit calls refused by a quota
	Acquired       uint64 // Acquire and Admit calls that took a slot
	AcquireRefused uint64 // Acquire and Admit calls refused because every slot was taken
	Stale          uint64 // Admit calls answered Stale: the caller's cache epoch was not current
	Fallback       uint64 // Allow and Acquire calls decided by the fallback, not the shared store
	FallbackActive bool   // the shared store is currently considered down
	Outages        uint64 // times the limiter switched to its fallback
	StoreErrors    uint64 // shared-store calls that failed or timed out
}

// ValidateRateLimits returns EINVALID when key is empty or longer than 512
// bytes, limits is empty, or a limit is unusable (Limit below 1, Window below
// 1ms, empty or repeated Name). Both limiters check their input with it.
func ValidateRateLimits(key string, limits []RateLimit) error {
	if key == "" || len(key) > 512 {
		return Errorf(EINVALID, "rate limit key must be 1-512 bytes")
	}
	if len(limits) == 0 {
		return Errorf(EINVALID, "no rate limits given")
	}
	for i, l := range limits {
		switch {
		case l.Name == "":
			return Errorf(EINVALID, "rate limit %d has no name", i)
		case l.Limit < 1:
			return Errorf(EINVALID, "rate limit %q must allow at least 1 event", l.Name)
		case l.Window < time.Millisecond:
			return Errorf(EINVALID, "rate limit %q needs a window of at least 1ms", l.Name)
		}
		for _, m := range limits[:i] {
			if m.Name == l.Name {
				return Errorf(EINVALID, "rate limit %q given twice", l.Name)
			}
		}
	}
	return nil
}

// RateWindow is one limit's state at the moment of a decision, as a limiter
// read it from its store; times are Unix milliseconds.
type RateWindow struct {
	Limit   int64 // events allowed in the window
	Size    int64 // the window's length, ms
	Count   int64 // events inside the window before this one
	Newest  int64 // time of the newest counted event (valid when Count > 0)
	Leaving int64 // when refused: time of the event whose leaving makes room
}

// DecideRate turns the windows of one Allow into the decision for the most
// restrictive limit: when refused, the one that frees up last; when allowed,
// the one with the fewest remaining (ties: the longer window). Every limiter
// decides through it, so that they agree to the millisecond.
func DecideRate(now int64, allowed bool, ws []RateWindow) RateDecision {
	if len(ws) == 0 { // an admission that took no quota event
		return RateDecision{Allowed: allowed}
	}
	ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
	best := -1
	if !allowed {
		var retry int64 = -1
		for i, w := range ws {
			if w.Count >= w.Limit {
				if r := w.Leaving + w.Size - now; r > retry {
					retry, best = r, i
				}
			}
		}
		w := ws[best]
		return RateDecision{Limit: w.Limit, ResetAfter: ms(w.Newest + w.Size - now), RetryAfter: ms(retry)}
	}
	var d RateDecision
	for i, w := range ws {
		rem := w.Limit - w.Count - 1
		if best < 0 || rem < d.Remaining || rem == d.Remaining && w.Size > ws[best].Size {
			best = i
			d = RateDecision{Allowed: true, Limit: w.Limit, Remaining: rem, ResetAfter: ms(w.Size)}
		}
	}
	return d
}
