package worker

import (
	"container/list"
	"context"
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
//     place in the replica's run gate.
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
	slots chan struct{}
	wait  time.Duration

	mu       sync.Mutex
	known    *lru // digests of modules compiled here
	verdicts map[string]*verdict
	order    *list.List // front: newest verdict
}

func newCompiles(size int, wait time.Duration) *compiles {
	return &compiles{
		slots:    make(chan struct{}, max(size-1, 1)),
		wait:     wait,
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
// release does nothing). It waits at most c.wait, then answers EUNAVAILABLE.
func (c *compiles) slot(ctx context.Context, sha string) (release func(), err error) {
	if c.isKnown(sha) {
		return func() {}, nil
	}
	select {
	case c.slots <- struct{}{}:
	default:
		t := time.NewTimer(c.wait)
		defer t.Stop()
		select {
		case c.slots <- struct{}{}:
		case <-t.C:
			return nil, wasmwiz.RetryLater(wasmwiz.EUNAVAILABLE, time.Second, "the server is busy compiling other modules; retry in a second")
		case <-ctx.Done():
			return nil, wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, context.Cause(ctx), "the request ended while waiting to compile")
		}
	}
	var once sync.Once
	return func() { once.Do(func() { <-c.slots }) }, nil
}
