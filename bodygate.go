package wasmwiz

import (
	"container/list"
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// BodyGate bounds the bytes of request bodies one replica holds at once:
// a request enters with its body's size (declared, or the most its route
// allows) before it reads it, and leaves when it is done with what it
// decoded. Past the bound a request waits, first come first served, at most
// the gate's wait, and is then refused with EUNAVAILABLE and a RetryAfter
// hint: many large bodies in flight cost a bounded amount of memory, and
// small requests, which do not enter, never wait behind them.
type BodyGate struct {
	capacity int64
	wait     time.Duration

	mu      sync.Mutex
	used    int64
	waiters list.List // of *bodyWaiter, oldest first

	rejected atomic.Int64
}

type bodyWaiter struct {
	n     int64
	ready chan struct{} // closed when the bytes were granted
}

// NewBodyGate returns a gate of capacity bytes (at least 1) at which a
// request waits at most wait.
func NewBodyGate(capacity int64, wait time.Duration) *BodyGate {
	return &BodyGate{capacity: max(capacity, 1), wait: wait}
}

// Capacity returns the gate's bound in bytes.
func (g *BodyGate) Capacity() int64 { return g.capacity }

// InUse returns the bytes held now.
func (g *BodyGate) InUse() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.used
}

// Waiting returns how many requests wait to enter now.
func (g *BodyGate) Waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiters.Len()
}

// Rejected returns how many requests the gate refused so far.
func (g *BodyGate) Rejected() int64 { return g.rejected.Load() }

// Enter takes n bytes (a body larger than the whole capacity takes all of
// it), waiting at most the gate's wait behind earlier requests. release
// gives them back and may be called more than once. Errors: EUNAVAILABLE
// with a RetryAfter hint when the wait ends, and the context's error
// wrapped as EUNAVAILABLE when ctx ends first.
func (g *BodyGate) Enter(ctx context.Context, n int64) (release func(), err error) {
	n = min(max(n, 0), g.capacity)
	g.mu.Lock()
	if g.waiters.Len() == 0 && g.used+n <= g.capacity {
		g.used += n
		g.mu.Unlock()
		return g.releaser(n), nil
	}
	w := &bodyWaiter{n: n, ready: make(chan struct{})}
	el := g.waiters.PushBack(w)
	g.mu.Unlock()

	timer := time.NewTimer(g.wait)
	defer timer.Stop()
	var cause error
	select {
	case <-w.ready:
		return g.releaser(n), nil
	case <-timer.C:
	case <-ctx.Done():
		cause = ctx.Err()
	}
	g.mu.Lock()
	select {
	case <-w.ready:
		// Granted while the wait ended: keep it.
		g.mu.Unlock()
		return g.releaser(n), nil
	default:
	}
	g.waiters.Remove(el)
	g.grantLocked() // those behind may fit now
	g.mu.Unlock()
	if cause != nil {
		return nil, WrapError(EUNAVAILABLE, cause, "request ended while waiting to read its body")
	}
	g.rejected.Add(1)
	return nil, RetryLater(EUNAVAILABLE, time.Second, "the server is reading too many large request bodies; retry later")
}

func (g *BodyGate) releaser(n int64) func() {
	var once atomic.Bool
	return func() {
		if !once.CompareAndSwap(false, true) {
			return
		}
		g.mu.Lock()
		g.used -= n
		g.grantLocked()
		g.mu.Unlock()
	}
}

// grantLocked grants waiters in order while the first one fits.
func (g *BodyGate) grantLocked() {
	for {
		front := g.waiters.Front()
		if front == nil {
			return
		}
		w := front.Value.(*bodyWaiter)
		if g.used+w.n > g.capacity {
			return
		}
		g.used += w.n
		g.waiters.Remove(front)
		close(w.ready)
	}
}
