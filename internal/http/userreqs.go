package http

import (
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
// The execute routes take no token to start (their runs are bounded by
// the tier) but one for each request that is refused (a 4xx; refused):
// a refusal, before any run is admitted, costs a key or module lookup, a
// parse or a limiter round trip and its caller nothing else, so once the
// bucket is spent the user's execute requests answer 429 without a lookup
// (refusing) until it refills. Nothing of an execute request is held in
// flight: a long run must not hold the user's other requests back.
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
	limited    *prometheus.CounterVec

	mu      sync.Mutex
	buckets map[requester]*userBucket
	owners  map[[sha256.Size]byte]int64 // key digest → user id, learnt here
	swept   time.Time
}

// newUserRequests returns the bound, or nil when both limits are below 1.
func newUserRequests(maxInFlight, rate int, now func() time.Time) *userRequests {
	if maxInFlight < 1 && rate < 1 {
		return nil
	}
	g := &userRequests{maxInFlight: max(maxInFlight, 0), rate: float64(max(rate, 0)), burst: 2 * float64(max(rate, 0)), now: now,
		buckets: map[requester]*userBucket{}, owners: map[[sha256.Size]byte]int64{},
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmwiz_user_requests_limited_total",
			Help: "Requests refused (429) because their user had WASMWIZ_MAX_USER_REQUESTS in flight on this replica (in_flight; routes other than execute routes, event streams as they open) or was past WASMWIZ_USER_REQUEST_RATE (rate; execute requests count only when they are refused).",
		}, []string{"bound"})}
	g.busy, g.fast = g.limited.WithLabelValues("in_flight"), g.limited.WithLabelValues("rate")
	return g
}

// admitKey counts a request that carries the key of digest, to the key's
// user when this replica has seen it authenticate, else to the key. It
// returns the bucket to give back (done) and whom it was counted to, or
// ERATELIMIT with Retry-After.
func (g *userRequests) admitKey(digest [sha256.Size]byte) (*userBucket, requester, error) {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	who := requester{key: digest}
	if id, ok := g.owners[digest]; ok {
		who = requester{user: id}
	}
	b, err := g.admit(who, now)
	return b, who, err
}

// authenticated moves a request admitted as who to user, the owner its
// key's lookup found, and remembers the owner. A request admitted as user
// already keeps its bucket.
func (g *userRequests) authenticated(b *userBucket, who requester, digest [sha256.Size]byte, user int64) (*userBucket, error) {
	if who.user == user {
		return b, nil
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	b.inFlight--
	if len(g.owners) >= userRequestEntries {
		g.owners = map[[sha256.Size]byte]int64{}
	}
	g.owners[digest] = user
	return g.admit(requester{user: user}, now)
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
	b := g.buckets[who]
	if b == nil {
		if len(g.buckets) >= userRequestEntries {
			g.drop(now, true)
		}
		b = &userBucket{tokens: g.burst, at: now}
		g.buckets[who] = b
	}
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

// chargesRefusals reports whether g charges execute requests that are
// refused (a rate is set).
func (g *userRequests) chargesRefusals() bool { return g != nil && g.rate > 0 }

// refusing returns ERATELIMIT, before its lookup, for an execute request
// carrying the key of digest when the bucket it is counted to (its user's,
// once this replica has seen the key authenticate) holds no whole token.
// It takes nothing: an execute request is charged only when it is refused
// (refused), so that a user's runs, which its tier bounds, are not.
func (g *userRequests) refusing(digest [sha256.Size]byte) error {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	who := requester{key: digest}
	if id, ok := g.owners[digest]; ok {
		who = requester{user: id}
	}
	b := g.buckets[who]
	if b == nil {
		return nil // a new bucket is full
	}
	b.refill(now, g.rate, g.burst)
	if b.tokens < 1 {
		return g.tooFast(b)
	}
	return nil
}

// refused charges one token to user for an execute request of the key of
// digest that was refused (a 4xx: not found, invalid, too large, over a
// quota): it cost the server a lookup or a parse and its caller nothing
// else. A 5xx (the replica saturated, a dependency down) is not charged. Refusals in flight together may take the bucket below
// zero; it refills from there, so a burst of them is paid for in full.
// The key's owner is remembered, so that refusing finds the user's bucket.
func (g *userRequests) refused(digest [sha256.Size]byte, user int64) {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.owners[digest] != user {
		if len(g.owners) >= userRequestEntries {
			g.owners = map[[sha256.Size]byte]int64{}
		}
		g.owners[digest] = user
	}
	g.sweep(now)
	who := requester{user: user}
	b := g.buckets[who]
	if b == nil {
		if len(g.buckets) >= userRequestEntries {
			g.drop(now, true)
		}
		b = &userBucket{tokens: g.burst, at: now}
		g.buckets[who] = b
	}
	b.refill(now, g.rate, g.burst)
	b.tokens--
}

// sweep drops idle buckets once per userRequestSweep; g.mu is held.
func (g *userRequests) sweep(now time.Time) {
	if now.Sub(g.swept) < userRequestSweep {
		return
	}
	g.swept = now
	g.drop(now, false)
}

// drop deletes the buckets with nothing in flight that are full again (all
// of them with nothing in flight when all is true): a new bucket starts
// full, so dropping a full one forgets nothing. A bucket with requests in
// flight stays, so that done finds it; g.mu is held.
func (g *userRequests) drop(now time.Time, all bool) {
	for who, b := range g.buckets {
		if b.inFlight > 0 {
			continue
		}
		if !all && g.rate > 0 {
			b.refill(now, g.rate, g.burst)
			if b.tokens < g.burst {
				continue
			}
		}
		delete(g.buckets, who)
	}
}

// size returns how many buckets and owners g holds.
func (g *userRequests) size() (buckets, owners int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.buckets), len(g.owners)
}
