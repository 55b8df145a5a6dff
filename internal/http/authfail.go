package http

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// authFailureWindow is the window Options.MaxAuthFailures counts in.
const authFailureWindow = time.Minute

// authFailureEntries bounds each of authFailures' maps (when full it is
// emptied: forgetting costs only lookups that the shared count still bounds).
const authFailureEntries = 100_000

// authFailureWide is how many times the limit of one address the
// failures of its network (an IPv4 /24, an IPv6 /48) may reach.
const authFailureWide = 8

// A key that authenticates is noted in its network's shared known set
// (wasmwiz.KnownKeys) for knownKeyTTL, again by a replica that still sees
// it from there knownKeyRenew after it last noted it. A replica reads a
// blocked network's set once, and again at most every knownSetRetry when
// the read failed; it keeps at most knownSetEntries networks' sets.
const (
	knownKeyTTL     = 24 * time.Hour
	knownKeyRenew   = time.Hour
	knownSetRetry   = 5 * time.Second
	knownSetEntries = 1024
)

// authFailures bounds what API keys that do not authenticate make the
// server spend. A key of the right shape costs a store lookup (a database
// round trip shared by every tenant) before it is known to be bad, and
// costs its sender nothing: so every such failure is counted against the
// client's address (an IPv4 address, an IPv6 /64) and against its network
// (an IPv4 /24, an IPv6 /48, under authFailureWide times the limit)
// through the RateLimiter, across replicas: a sender holding a /48 has
// 65 536 /64s to rotate through, a /24 256 addresses. Once an address or
// its network is over its limit, this replica refuses its keys (429) for
// the rest of the window without a lookup, except keys known good: keys
// that authenticated on this replica before, or, where the limiter shares
// known sets (wasmwiz.KnownKeys: Redis), from the same network on any
// replica within a day (a tenant behind the same address or network keeps
// working, on a replica that just started too), until such a key fails.
// The network's shared set is read once per block, not per request: the
// flood's refusals cost no call.
type authFailures struct {
	limiter wasmwiz.RateLimiter
	shared  wasmwiz.KnownKeys // nil when the limiter shares none
	limit   int64             // failed lookups per address per window
	log     *slog.Logger
	now     func() time.Time

	mu      sync.RWMutex
	blocked map[netip.Prefix]time.Time      // addresses and networks over their limit, until when
	known   map[[sha256.Size]byte]knownHere // digests of keys that authenticated here
	sets    map[netip.Prefix]*knownSet      // blocked networks' shared sets, as read
}

// knownHere is a key that authenticated on this replica: from which
// network it last noted it in the shared sets, and when (zero: not).
type knownHere struct {
	network netip.Prefix
	noted   time.Time
}

// knownSet is a network's shared known set as this replica read it: keys
// holds KnownKeyHash of each (read when ready is closed), until when the
// read serves.
type knownSet struct {
	ready chan struct{}
	keys  map[string]bool
	until time.Time
}

// newAuthFailures returns the guard, or nil (no bound) for a limit below 1.
func newAuthFailures(limiter wasmwiz.RateLimiter, limit int, log *slog.Logger, now func() time.Time) *authFailures {
	if limit < 1 || limiter == nil {
		return nil
	}
	g := &authFailures{limiter: limiter, limit: int64(limit), log: log, now: now}
	g.shared, _ = limiter.(wasmwiz.KnownKeys)
	return g
}

// authFailureAddress is what failures are counted by: the address, or its
// /64 for IPv6, where one subscriber holds the whole /64.
func authFailureAddress(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64) // the zero Addr (no address): the zero Prefix, one bucket
	return p
}

// authFailureNetwork is the network failures are counted by as well: the
// address's /24, or its /48 for IPv6, what one site is commonly given.
func authFailureNetwork(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := 48
	if ip.Is4() {
		bits = 24
	}
	p, _ := ip.Prefix(bits)
	return p
}

// scopes returns the address and the network of ip, each with its limit
// and the words its refusal uses.
// (Without an address, the zero Addr, there is one count only.)
func (g *authFailures) scopes(ip netip.Addr) []authFailureScope {
	out := []authFailureScope{{prefix: authFailureAddress(ip), limit: g.limit, what: "address"}}
	if ip.IsValid() {
		out = append(out, authFailureScope{prefix: authFailureNetwork(ip), limit: g.limit * authFailureWide, what: "network"})
	}
	return out
}

// authFailureScope is one count of failures: an address or a network.
type authFailureScope struct {
	prefix netip.Prefix
	limit  int64
	what   string
}

// refused returns ERATELIMIT, with the time left as its Retry-After, when
// ip or its network is over its limit on this replica and the key of
// digest (its SHA-256, which authenticate computes once for this guard and
// userRequests) is not known good: it did not authenticate here before, nor
// lately on any replica (the shared set, asked only then).
func (g *authFailures) refused(ctx context.Context, ip netip.Addr, digest [sha256.Size]byte) error {
	if g == nil {
		return nil
	}
	now := g.now()
	for _, sc := range g.scopes(ip) {
		g.mu.RLock()
		until, blocked := g.blocked[sc.prefix]
		g.mu.RUnlock()
		if !blocked {
			continue
		}
		if !now.Before(until) {
			g.mu.Lock()
			if g.blocked[sc.prefix] == until {
				delete(g.blocked, sc.prefix)
			}
			g.mu.Unlock()
			continue
		}
		g.mu.RLock()
		_, known := g.known[digest]
		g.mu.RUnlock()
		if known || g.sharedKnows(ctx, authFailureNetwork(ip), until, digest) {
			return nil
		}
		wait := until.Sub(now)
		return wasmwiz.RetryLater(wasmwiz.ERATELIMIT, wait, "too many API keys that do not authenticate from this %s: at most %d a minute; retry in %s",
			sc.what, sc.limit, wait.Round(100*time.Millisecond))
	}
	return nil
}

// failed counts a key of ip that did not authenticate, against ip and its
// network, and blocks on this replica each the limiter refuses. A limiter
// that cannot decide blocks nothing: its outage must not lock tenants out.
func (g *authFailures) failed(ctx context.Context, ip netip.Addr, digest [sha256.Size]byte) {
	if g == nil {
		return
	}
	network := authFailureNetwork(ip)
	g.mu.Lock()
	delete(g.known, digest) // a key that fails is no longer let past a block
	if set := g.sets[network]; set != nil && isClosed(set.ready) {
		delete(set.keys, wasmwiz.KnownKeyHash(digest))
	}
	g.mu.Unlock()
	if g.shared != nil && ip.IsValid() {
		// Nor by any replica (revoked, its user disabled): after a lookup,
		// which the counts below bound, one call more.
		if err := g.shared.ForgetKnownKey(ctx, network.String(), digest); err != nil {
			g.log.WarnContext(ctx, "cannot remove a key that failed from the known keys", "err", err)
		}
	}
	for _, sc := range g.scopes(ip) {
		dec, err := g.limiter.Allow(ctx, "authfail:"+sc.prefix.String(),
			[]wasmwiz.RateLimit{{Name: "auth_failures", Limit: sc.limit, Window: authFailureWindow}})
		if err != nil {
			g.log.WarnContext(ctx, "cannot count a failed authentication", "err", err, "client", sc.prefix.String())
			return
		}
		if dec.Allowed {
			continue
		}
		g.mu.Lock()
		if g.blocked == nil || len(g.blocked) >= authFailureEntries {
			g.blocked = make(map[netip.Prefix]time.Time)
		}
		g.blocked[sc.prefix] = g.now().Add(dec.RetryAfter)
		g.mu.Unlock()
		g.log.WarnContext(ctx, "too many keys that do not authenticate: "+sc.what+" refused",
			"client", sc.prefix.String(), "limit_per_minute", sc.limit, "for", dec.RetryAfter.String())
	}
}

// succeeded notes the key of digest, which authenticated from ip, here
// and (at most once per knownKeyRenew and network on this replica) in the
// shared known set of ip's network. A note that failed is tried again with
// the key's next success, unless the limiter's Redis is down, which costs
// no call.
func (g *authFailures) succeeded(ctx context.Context, ip netip.Addr, digest [sha256.Size]byte) {
	if g == nil {
		return
	}
	now, network := g.now(), authFailureNetwork(ip)
	g.mu.RLock()
	k, known := g.known[digest]
	g.mu.RUnlock()
	if known && (g.shared == nil || !ip.IsValid() || k.network == network && now.Sub(k.noted) < knownKeyRenew) {
		return
	}
	k = knownHere{network: network}
	if g.shared != nil && ip.IsValid() {
		if err := g.shared.NoteKnownKey(ctx, network.String(), digest, knownKeyTTL); err == nil {
			k.noted = now
		}
	}
	g.mu.Lock()
	if g.known == nil || len(g.known) >= authFailureEntries {
		g.known = make(map[[sha256.Size]byte]knownHere)
	}
	g.known[digest] = k
	g.mu.Unlock()
}

// sharedKnows reports whether network's shared known set holds the key of
// digest, reading the set once while network (or an address in it) is
// blocked, until until: the first request to ask reads it, the others wait
// for that read (the limiter's timeout at most). False without shared sets
// or when the read failed (read again after knownSetRetry).
func (g *authFailures) sharedKnows(ctx context.Context, network netip.Prefix, until time.Time, digest [sha256.Size]byte) bool {
	if g.shared == nil || !network.IsValid() {
		return false
	}
	now := g.now()
	g.mu.Lock()
	set := g.sets[network]
	read := set == nil || isClosed(set.ready) && !now.Before(set.until)
	if read {
		if g.sets == nil || len(g.sets) >= knownSetEntries {
			g.sets = make(map[netip.Prefix]*knownSet)
		}
		set = &knownSet{ready: make(chan struct{})}
		g.sets[network] = set
	}
	g.mu.Unlock()
	if read {
		// Not cut by this request's end: the read serves every request of
		// the block, and a sender that hung up at once would otherwise
		// leave the set unread (empty) for knownSetRetry, again and again.
		// The limiter's timeout bounds it.
		keys, err := g.shared.KnownKeysOf(context.WithoutCancel(ctx), network.String())
		g.mu.Lock()
		set.keys, set.until = keys, until
		if retry := now.Add(knownSetRetry); err != nil && retry.Before(until) {
			set.keys, set.until = nil, retry
		}
		g.mu.Unlock()
		close(set.ready)
	} else {
		select {
		case <-set.ready:
		case <-ctx.Done():
			return false
		}
	}
	g.mu.RLock()
	ok := set.keys[wasmwiz.KnownKeyHash(digest)]
	g.mu.RUnlock()
	return ok
}

// isClosed reports whether ch is closed.
func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
