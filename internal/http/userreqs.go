package http

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmwiz/wasmwiz"
)

// userRequestEntries bounds userRequests' maps. When the buckets are full,
// every one with nothing in flight is dropped (forgetting a bucket costs
// only that its caller starts with a full burst again); when the owners
// are full they are emptied (forgetting one costs a key a provisional
// bucket until its next lookup).
const userRequestEntries = 100_000

// userRequestSweep is how often, at most, idle buckets are dropped: by the
// request that finds the last sweep this old, so no goroutine is needed.
const userRequestSweep = 10 * time.Second

// userRequestBusyRetry is the Retry-After of a request refused because its
// user had Options.MaxUserRequests in flight: the held requests are reads
// that end within the database timeout, most far sooner.
const userRequestBusyRetry = time.Second

// executeWaiting is the least bound on one user's execute requests waiting
// for their run's admission on this replica (executeRequests): its tier's
// max_concurrent when that is higher, as this replica last saw it.
const executeWaiting = 8

// executeWaitingRetry is the Retry-After of an execute request refused
// because its user had its bound of them waiting for admission: they wait
// on a key or module lookup and a limiter round trip, or on a small body.
const executeWaitingRetry = time.Second

// requester is what a request is counted to: its user, or, for a key whose
// user this replica has not learnt yet, the key (its digest) until its
// lookup says whose it is.
type requester struct {
	user int64
	key  [sha256.Size]byte
}

// userBucket is one requester's count: its requests in flight, and a token
// bucket of its request rate.
type userBucket struct {
	inFlight int
	tokens   float64   // whole tokens admit a request
	at       time.Time // when tokens was computed
	waiting  int       // the execute bucket's bound on inFlight (executeWaiting, or the tier's max_concurrent); 0: executeWaiting
}

// refill brings b's tokens to now.
func (b *userBucket) refill(now time.Time, rate, burst float64) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(burst, b.tokens+d.Seconds()*rate)
		b.at = now
	}
}

// userRequests bounds what one user's requests to the routes that are not
// execute routes (bounded by the tier) make this replica spend: each may
// hold a connection of its database pool and CPU, shared by every tenant.
// At most maxInFlight at once, and a token bucket of rate requests a second
// with bursts of burst; past either ERATELIMIT, before the request touches
// the store. Opening an event stream (bounded by maxEventStreamsPerUser
// while it lasts) is a request until its key is looked up: a caller that
// opens and drops streams in a loop spends its tokens. It lives in memory,
// per replica, like the pool it protects.
//
// The execute routes have buckets of their own (execute), so that a
// user's reads never hold its runs back nor the other way round. An
// execute request takes no token to start (its run is bounded by the tier)
// but one for each request that is refused (a 4xx; refused): a refusal,
// before any run is admitted, costs a key or module lookup, a parse or a
// limiter round trip and its caller nothing else, so once the bucket is
// spent the user's execute requests answer 429 without a lookup until it
// refills. And an execute request is in flight from before its key's
// lookup until its run is admitted (it then holds one of its tier's
// concurrency slots; a long run holds nothing here) or it answers: at most
// executeWaiting of a user's at once, or its tier's max_concurrent when
// higher, so that refusals that are charged only once they answer cannot
// pile up lookups meanwhile (admitExecute).
//
// All of a user's keys share one bucket: owners maps the digest of each key
// that authenticated here to its user, so that a known key is counted, and
// refused, before its lookup (itself a database round trip). A key not yet
// known has a provisional bucket of its own until its lookup answers.
type userRequests struct {
	maxInFlight int     // 0: no bound
	rate        float64 // tokens a second; 0: no bound
	burst       float64
	now         func() time.Time

	busy, fast prometheus.Counter // refusals, by bound
	waiting    prometheus.Counter
	limited    *prometheus.CounterVec

	mu      sync.Mutex
	buckets map[requester]*userBucket
	execute map[requester]*userBucket   // the execute routes' buckets: refusal tokens, requests waiting for admission
	owners  map[[sha256.Size]byte]int64 // key digest → user id, learnt here
	swept   time.Time
}

// newUserRequests returns the bound, or nil when both limits are below 1.
func newUserRequests(maxInFlight, rate int, now func() time.Time) *userRequests {
	if maxInFlight < 1 && rate < 1 {
		return nil
	}
	g := &userRequests{maxInFlight: max(maxInFlight, 0), rate: float64(max(rate, 0)), burst: 2 * float64(max(rate, 0)), now: now,
		buckets: map[requester]*userBucket{}, execute: map[requester]*userBucket{}, owners: map[[sha256.Size]byte]int64{},
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmwiz_user_requests_limited_total",
			Help: "Requests refused (429) because their user had WASMWIZ_MAX_USER_REQUESTS in flight on this replica (in_flight; routes other than execute routes, event streams as they open), was past WASMWIZ_USER_REQUEST_RATE (rate; execute requests in a bucket of their own, taking a token only when they are refused) or had its bound of execute requests waiting for admission (execute_waiting).",
		}, []string{"bound"})}
	g.busy, g.fast = g.limited.WithLabelValues("in_flight"), g.limited.WithLabelValues("rate")
	g.waiting = g.limited.WithLabelValues("execute_waiting")
	return g
}

// admitKey counts a request that carries the key of digest, to the key's
// user when this replica has seen it authenticate, else to the key. It
// returns the bucket to give back (done) and whom it was counted to, or
// ERATELIMIT with Retry-After.
func (g *userRequests) admitKey(digest [sha256.Size]byte) (*userBucket, requester, error) {
	return g.admitWith(g.admit, digest)
}

// authenticated moves a request admitted as who to user, the owner its
// key's lookup found, and remembers the owner. A request admitted as user
// already keeps its bucket.
func (g *userRequests) authenticated(b *userBucket, who requester, digest [sha256.Size]byte, user int64) (*userBucket, error) {
	return g.moveWith(g.admit, b, who, digest, user)
}

// admitFunc counts a request of who at now in one kind of bucket (admit,
// admitExecuteLocked) and returns its bucket or the refusal; g.mu is held.
type admitFunc func(who requester, now time.Time) (*userBucket, error)

// admitWith counts with admit a request that carries the key of digest, to
// whom whose finds, and returns that requester with admit's answer.
func (g *userRequests) admitWith(admit admitFunc, digest [sha256.Size]byte) (*userBucket, requester, error) {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	who := g.whose(digest)
	b, err := admit(who, now)
	return b, who, err
}

// moveWith gives back a request admitted as who with b and counts it with
// admit to user, remembering user as the owner of digest's key. A request
// admitted as user already keeps b.
func (g *userRequests) moveWith(admit admitFunc, b *userBucket, who requester, digest [sha256.Size]byte, user int64) (*userBucket, error) {
	if who.user == user {
		return b, nil
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	b.inFlight--
	g.own(digest, user)
	return admit(requester{user: user}, now)
}

// unauthenticated gives back a request whose key did not authenticate and
// forgets the key's owner: a revoked key is no longer counted to its user.
func (g *userRequests) unauthenticated(b *userBucket, digest [sha256.Size]byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	b.inFlight--
	delete(g.owners, digest)
}

// done gives back a request admitted with b.
func (g *userRequests) done(b *userBucket) {
	g.mu.Lock()
	b.inFlight--
	g.mu.Unlock()
}

// admit counts a request of who at now; g.mu is held.
func (g *userRequests) admit(who requester, now time.Time) (*userBucket, error) {
	g.sweep(now)
	b := g.bucketOf(g.buckets, who, now)
	if g.maxInFlight > 0 && b.inFlight >= g.maxInFlight {
		g.busy.Inc()
		return nil, wasmwiz.RetryLater(wasmwiz.ERATELIMIT, userRequestBusyRetry,
			"too many of your requests in flight on this server: at most %d at a time; retry when one has answered", g.maxInFlight)
	}
	if g.rate > 0 {
		b.refill(now, g.rate, g.burst)
		if b.tokens < 1 {
			return nil, g.tooFast(b)
		}
		b.tokens--
	}
	b.inFlight++
	return b, nil
}

// tooFast counts and returns the refusal of a request whose bucket b holds
// no whole token, its Retry-After the time to the next one; g.mu is held.
func (g *userRequests) tooFast(b *userBucket) error {
	g.fast.Inc()
	wait := time.Duration((1 - b.tokens) / g.rate * float64(time.Second))
	return wasmwiz.RetryLater(wasmwiz.ERATELIMIT, wait,
		"too many requests: at most %g a second, in bursts of %g; retry in %s",
		g.rate, g.burst, wait.Round(time.Millisecond))
}

// whose returns the requester a request carrying the key of digest is
// counted to: its user when this replica has seen the key authenticate,
// else the key; g.mu is held.
func (g *userRequests) whose(digest [sha256.Size]byte) requester {
	if id, ok := g.owners[digest]; ok {
		return requester{user: id}
	}
	return requester{key: digest}
}

// bucketOf returns who's bucket in m, a new full one when it has none;
// g.mu is held.
func (g *userRequests) bucketOf(m map[requester]*userBucket, who requester, now time.Time) *userBucket {
	b := m[who]
	if b == nil {
		if len(m) >= userRequestEntries {
			g.drop(m, now, true)
		}
		b = &userBucket{tokens: g.burst, at: now}
		m[who] = b
	}
	return b
}

// admitExecute counts an execute request carrying the key of digest among
// its requester's execute requests waiting for admission, before its
// key's lookup. It returns ERATELIMIT with Retry-After, and takes nothing,
// when the requester has its bound of them waiting already (at least
// executeWaiting: the last max_concurrent learnt for it), or when its
// execute bucket holds no whole token (its refusals spent it; refused).
// It takes no token: an admitted run costs none. Give the request back
// with executeDone once its run is admitted or it answers.
func (g *userRequests) admitExecute(digest [sha256.Size]byte) (*userBucket, requester, error) {
	return g.admitWith(g.admitExecuteLocked, digest)
}

// admitExecuteLocked is admitExecute for who; g.mu is held.
func (g *userRequests) admitExecuteLocked(who requester, now time.Time) (*userBucket, error) {
	g.sweep(now)
	b := g.bucketOf(g.execute, who, now)
	if bound := max(b.waiting, executeWaiting); b.inFlight >= bound {
		g.waiting.Inc()
		return nil, wasmwiz.RetryLater(wasmwiz.ERATELIMIT, executeWaitingRetry,
			"too many of your execute requests waiting for their run on this server: at most %d at a time; retry when one has started or answered", bound)
	}
	if g.rate > 0 {
		b.refill(now, g.rate, g.burst)
		if b.tokens < 1 {
			return nil, g.tooFast(b)
		}
	}
	b.inFlight++
	return b, nil
}

// executeAuthenticated moves an execute request admitted as who to user,
// the owner its key's lookup found, and remembers the owner; as
// admitExecute, it may refuse it there. A request admitted as user keeps
// its bucket.
func (g *userRequests) executeAuthenticated(b *userBucket, who requester, digest [sha256.Size]byte, user int64) (*userBucket, error) {
	return g.moveWith(g.admitExecuteLocked, b, who, digest, user)
}

// executeWaits sets how many of its user's execute requests b lets wait
// for admission at once: its tier's max_concurrent, at least
// executeWaiting. A user allowed many runs at once may have as many
// requests on their way to them (reading small bodies, say).
func (g *userRequests) executeWaits(b *userBucket, maxConcurrent int) {
	g.mu.Lock()
	b.waiting = max(maxConcurrent, executeWaiting)
	g.mu.Unlock()
}

// refused charges one token of user's execute bucket for an execute
// request that was refused (a 4xx: not found, invalid, too large, over a
// quota): it cost the server a lookup or a parse and its caller nothing
// else. A 5xx (the replica saturated, a dependency down) is not charged.
// Refusals in flight together (at most the requests waiting for admission)
// may take the bucket below zero; it refills from there, so a burst of
// them is paid for in full.
func (g *userRequests) refused(user int64) {
	if g.rate <= 0 {
		return
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sweep(now)
	b := g.bucketOf(g.execute, requester{user: user}, now)
	b.refill(now, g.rate, g.burst)
	b.tokens--
}

// own remembers that the key of digest is user's; g.mu is held.
func (g *userRequests) own(digest [sha256.Size]byte, user int64) {
	if g.owners[digest] == user {
		return
	}
	if len(g.owners) >= userRequestEntries {
		g.owners = map[[sha256.Size]byte]int64{}
	}
	g.owners[digest] = user
}

// sweep drops idle buckets once per userRequestSweep; g.mu is held.
func (g *userRequests) sweep(now time.Time) {
	if now.Sub(g.swept) < userRequestSweep {
		return
	}
	g.swept = now
	g.drop(g.buckets, now, false)
	g.drop(g.execute, now, false)
}

// drop deletes the buckets of m with nothing in flight that are full again (all
// of them with nothing in flight when all is true): a new bucket starts
// full, so dropping a full one forgets nothing. A bucket with requests in
// flight stays, so that done finds it; g.mu is held.
func (g *userRequests) drop(m map[requester]*userBucket, now time.Time, all bool) {
	for who, b := range m {
		if b.inFlight > 0 {
			continue
		}
		if !all && g.rate > 0 {
			b.refill(now, g.rate, g.burst)
			if b.tokens < g.burst {
				continue
			}
		}
		delete(m, who)
	}
}

// size returns how many buckets and owners g holds.
func (g *userRequests) size() (buckets, owners int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.buckets), len(g.owners)
}

// waitingExecute is an execute request counted among its user's requests
// waiting for admission (userRequests.admitExecute) until its run is
// admitted (the Executor calls admitted, through the request's context:
// wasmwiz.NewContextWithAdmitted) or it answers, whichever comes first.
type waitingExecute struct {
	g    *userRequests
	b    *userBucket
	once sync.Once
}

// admitted gives the request's place back; it may be called more than once.
func (w *waitingExecute) admitted() {
	w.once.Do(func() { w.g.done(w.b) })
}

// tier tells the bound the caller's tier allows maxConcurrent runs at once
// (userRequests.executeWaits); nil w does nothing.
func (w *waitingExecute) tier(maxConcurrent int) {
	if w != nil {
		w.g.executeWaits(w.b, maxConcurrent)
	}
}

const waitingExecuteKey ctxKey = routeInfoKey + 1

// waitingExecuteFrom returns the request's waitingExecute, or nil.
func waitingExecuteFrom(ctx context.Context) *waitingExecute {
	w, _ := ctx.Value(waitingExecuteKey).(*waitingExecute)
	return w
}
