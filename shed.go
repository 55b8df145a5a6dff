package wasmwiz

// Shedding load before any work: when the replica's RunGate is full, the
// answer to a run is 503 whoever asks, so an adapter can give it before it
// authenticates the caller, reads the body or asks the rate limiter, and a
// refusal costs almost nothing while the replica is saturated.

// Full reports whether Enter would refuse at once: every slot is taken and
// so is every place in the queue. It is a snapshot: a run may end just
// after, and a caller that was not refused may still find the gate full
// when it enters.
func (g *RunGate) Full() bool {
	return len(g.slots) == cap(g.slots) && len(g.waiting) == cap(g.waiting)
}

// Shed counts a refusal as Enter's and returns the error Enter gives when
// the gate is full (EUNAVAILABLE with a RetryAfter hint).
func (g *RunGate) Shed() error {
	return g.refuse("server is saturated; retry later")
}
