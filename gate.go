package wasmwiz

import (
	"context"
	"sync/atomic"
	"time"
)

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
	return RetryLater(EUNAVAILABLE, g.retryAfter, "%s", msg)
}

// InFlight returns the runs holding a slot now.
func (g *RunGate) InFlight() int64 { return g.inFlight.Load() }

// Queued returns the runs waiting for a slot now.
func (g *RunGate) Queued() int { return len(g.waiting) }

// Capacity returns the number of slots.
func (g *RunGate) Capacity() int { return cap(g.slots) }

// Rejected returns how many runs the gate has refused since it was made.
func (g *RunGate) Rejected() int64 { return g.rejected.Load() }
