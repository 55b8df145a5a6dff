package wasmwiz

import (
	"context"
	"time"
)

// RateLimit is one quota: at most Limit events per Window.
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
	Limit      int64
	Remaining  int64
	ResetAfter time.Duration // until the window is full again (X-RateLimit-Reset)
	RetryAfter time.Duration // when refused: until one more event would be allowed
	Fallback   bool          // decided by the in-memory fallback, not the shared store
}

// RateLimiter counts events per key against quotas, exactly at millisecond
// resolution. Implementations: in-memory (one node) and Redis (all replicas).
type RateLimiter interface {
	// Allow records one event for key if every limit allows it; a refused
	// event consumes nothing. Errors only for a limiter that cannot decide
	// (EUNAVAILABLE); the Redis limiter falls back instead of failing.
	Allow(ctx context.Context, key string, limits []RateLimit) (RateDecision, error)
	// Acquire takes one of max concurrent slots for key; ok is false when all
	// are taken. release gives the slot back; a slot whose holder died is
	// freed after ttl.
	Acquire(ctx context.Context, key string, max int, ttl time.Duration) (release func(), ok bool, err error)
}
