package worker

import (
	"container/list"
	"context"
	"math"
	"sync"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// Compiling untrusted code is work like running it, and costlier than it
// looks: a 90 KB module of nested loops kept wazero compiling for 18 s, a
// 1 MB br_table took 2.3 GB (internal/hostiletest). So a compile happens in
// a worker under the request's wall time and memory (the worker's own
// bound, memlimit.go), and the pool keeps three things about compiles:
//
//   - Compile slots: at most Size-1 requests compile at a time (one when
//     Size is 1), so compiles never take the last worker and runs of
//     modules already compiled always find one; a request that would
//     compile waits for a slot at most Options.CompileWait, then is refused
//     EUNAVAILABLE with a hint to retry, instead of holding its caller's
//     place in the replica's run gate. A freed slot goes to the waiting
//     request whose owner has compiled least lately (compile time, halved
//     every compileShareHalfLife), not to the first in line: an owner
//     that keeps requests waiting for slots, each a module that compiles
//     for its whole wall time, gets one slot in turn with others, instead
//     of every slot while others are refused after their short wait.
//   - The modules known compiled (a bounded set of digests): their requests
//     need no slot. A worker holding one runs it at once; another loads it
//     from the on-disk cache. One the disk cache evicted is compiled again
//     without a slot once: its worker's answer says it compiled afresh (or
//     its run ended while it compiled), and the module is known no more.
//   - Verdicts: a module whose compile passed its wall time or its memory is
//     refused (ETOOLARGE), and the refusal is remembered by digest, so that
//     sending it again costs nothing to refuse: a request with no more time
//     (or memory) than the one that failed is refused at once. One with more
//     may try. Verdicts are kept for verdictTTL, at most maxVerdicts of them.

// Defaults and bounds of the compile bookkeeping.
const (
	DefaultCompileWait = 2 * time.Second
	maxKnownCompiled   = 1 << 14
	maxVerdicts        = 1 << 12
	verdictTTL         = time.Hour

	// compileShareHalfLife is how fast an owner's compile time is
	// forgotten when freed slots are handed out (compiles.grant).
	compileShareHalfLife = 30 * time.Second
)

// compileTooLong is the refusal of a module that did not compile within a
// request's wall time.
func compileTooLong(limit time.Duration) error {
	return wasmwiz.Errorf(wasmwiz.ETOOLARGE,
		"the module did not compile within %s, the wall-time limit of this request; a module this costly to compile is refused (a request with a longer wall time may try again)", limit)
}

// compileTooBig is the refusal of a module whose compile needed more memory
// than a request allows.
func compileTooBig(budget int64) error {
	return wasmwiz.Errorf(wasmwiz.ETOOLARGE,
		"compiling the module needs more than the %s of memory this request allows; a module this costly to compile is refused (a request with a larger memory limit may try again)",
		wasmwiz.FormatSize(budget/raceOverhead))
}

// verdict is what the pool remembers of a module that failed to compile.
type verdict struct {
	sha     string
	timeout time.Duration // it did not compile within this wall time (0: not known)
	memory  int64         // nor within this memory budget (0: not known)
	at      time.Time
	elem    *list.Element
}

// compiles is the pool's compile bookkeeping.
type compiles struct {
	wait time.Duration
	now  func() time.Time

	mu       sync.Mutex
	free     int                    // compile slots no request holds
	waiting  *list.List             // *slotWaiter, in order of arrival
	owners   map[string]*ownerShare // owners holding a slot or that held one lately
	known    *lru                   // digests of modules compiled here
	verdicts map[string]*verdict
	order    *list.List // front: newest verdict
}

// slotWaiter is a request waiting for a compile slot; granted is closed
// when a freed slot is handed to it.
type slotWaiter struct {
	owner   string
	granted chan struct{}
}

// ownerShare is what grant weighs an owner's waiting requests by: its
// compile time, decayed (halved every compileShareHalfLife) as of at.
type ownerShare struct {
	holding int
	used    time.Duration
	at      time.Time
}

// usedAt is s.used decayed to now.
func (s *ownerShare) usedAt(now time.Time) time.Duration {
	halvings := now.Sub(s.at).Seconds() / compileShareHalfLife.Seconds()
	if halvings <= 0 {
		return s.used
	}
	return time.Duration(float64(s.used) * math.Exp2(-halvings))
}

func newCompiles(size int, wait time.Duration) *compiles {
	return &compiles{
		wait:     wait,
		now:      time.Now,
		free:     max(size-1, 1),
		waiting:  list.New(),
		owners:   map[string]*ownerShare{},
		known:    newLRU(maxKnownCompiled),
		verdicts: map[string]*verdict{},
		order:    list.New(),
	}
}

// refused returns the remembered refusal of sha for a request with this
// wall time and compile budget, or nil. A module known compiled has none:
// its requests only load it (a verdict is on a compile, and another
// request's compile has succeeded since), until it is forgotten.
func (c *compiles) refused(sha string, timeout time.Duration, budget int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.verdicts[sha]
	if v == nil || c.known.has(sha) {
		return nil
	}
	if time.Since(v.at) > verdictTTL {
		c.order.Remove(v.elem)
		delete(c.verdicts, sha)
		return nil
	}
	switch {
	case v.timeout > 0 && timeout > 0 && timeout <= v.timeout:
		return compileTooLong(timeout)
	case v.memory > 0 && budget <= v.memory:
		return compileTooBig(budget)
	}
	return nil
}

// remember records that sha did not compile within timeout, or (timeout 0)
// within the memory budget.
func (c *compiles) remember(sha string, timeout time.Duration, budget int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.known.remove(sha)
	v := c.verdicts[sha]
	if v == nil {
		v = &verdict{sha: sha}
		v.elem = c.order.PushFront(v)
		c.verdicts[sha] = v
		for c.order.Len() > maxVerdicts {
			old := c.order.Remove(c.order.Back()).(*verdict)
			delete(c.verdicts, old.sha)
		}
	} else {
		c.order.MoveToFront(v.elem)
	}
	v.at = time.Now()
	if timeout > 0 {
		v.timeout = max(v.timeout, timeout)
	} else {
		v.memory = max(v.memory, budget)
	}
}

// compiled records that sha compiled: its requests need no slot, and a
// verdict against it (a request with less time failed) is set aside while
// it is known (refused).
func (c *compiles) compiled(sha string) {
	c.mu.Lock()
	c.known.add(sha, 1, nil)
	c.mu.Unlock()
}

// forget makes sha unknown: its compiled code is gone from the disk cache
// (a worker compiled it afresh, or was still compiling or loading it when
// its run ended), so its next request takes a compile slot again, and a
// compile that fails then leaves a verdict.
func (c *compiles) forget(sha string) {
	c.mu.Lock()
	c.known.remove(sha)
	c.mu.Unlock()
}

// isKnown reports whether sha compiled here before.
func (c *compiles) isKnown(sha string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.known.has(sha)
}

// slot takes a compile slot for sha, unless sha is known compiled (then
// release does nothing). It waits at most c.wait, then answers
// EUNAVAILABLE. The slot is counted to ctx's owner (wasmwiz.OwnerFromContext)
// from when it is taken until release.
func (c *compiles) slot(ctx context.Context, sha string) (release func(), err error) {
	if c.isKnown(sha) {
		return func() {}, nil
	}
	owner := wasmwiz.OwnerFromContext(ctx)
	c.mu.Lock()
	if c.free > 0 {
		c.free--
		c.take(owner)
		c.mu.Unlock()
		return c.releaser(owner), nil
	}
	w := &slotWaiter{owner: owner, granted: make(chan struct{})}
	elem := c.waiting.PushBack(w)
	c.mu.Unlock()

	t := time.NewTimer(c.wait)
	defer t.Stop()
	var refusal error
	select {
	case <-w.granted:
		return c.releaser(owner), nil
	case <-t.C:
		refusal = wasmwiz.RetryLater(wasmwiz.EUNAVAILABLE, time.Second, "the server is busy compiling other modules; retry in a second")
	case <-ctx.Done():
		refusal = wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, context.Cause(ctx), "the request ended while waiting to compile")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-w.granted: // handed the slot as it gave up: hand it on
		c.put(owner)
	default:
		c.waiting.Remove(elem)
	}
	return nil, refusal
}

// waitingLen is how many requests wait for a slot.
func (c *compiles) waitingLen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waiting.Len()
}

// releaser returns the release of a slot owner holds; calls after the
// first do nothing.
func (c *compiles) releaser(owner string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.put(owner)
		})
	}
}

// take counts a slot just taken to owner. c.mu is held.
func (c *compiles) take(owner string) {
	now := c.now()
	s := c.owners[owner]
	if s == nil {
		s = &ownerShare{at: now}
		c.owners[owner] = s
	}
	s.used, s.at = s.usedAt(now), now
	s.holding++
}

// put frees owner's slot: its holding time is added to its share, and the
// slot goes to the waiting request whose owner holds fewest slots and has
// compiled least lately (the first to arrive among equals), or back to the
// free ones. Owners that hold nothing and whose share has decayed to
// nothing are forgotten. c.mu is held.
func (c *compiles) put(owner string) {
	now := c.now()
	if s := c.owners[owner]; s != nil {
		s.used = s.usedAt(now) + now.Sub(s.at)
		s.at = now
		s.holding--
	}
	var best *list.Element
	var bestHolding int
	var bestUsed time.Duration
	for e := c.waiting.Front(); e != nil; e = e.Next() {
		w := e.Value.(*slotWaiter)
		holding, used := 0, time.Duration(0)
		if s := c.owners[w.owner]; s != nil {
			holding, used = s.holding, s.usedAt(now)
		}
		if best == nil || holding < bestHolding || (holding == bestHolding && used < bestUsed) {
			best, bestHolding, bestUsed = e, holding, used
		}
	}
	if best == nil {
		c.free++
	} else {
		w := c.waiting.Remove(best).(*slotWaiter)
		c.take(w.owner)
		close(w.granted)
	}
	for o, s := range c.owners {
		if s.holding == 0 && s.usedAt(now) < time.Millisecond {
			delete(c.owners, o)
		}
	}
}
