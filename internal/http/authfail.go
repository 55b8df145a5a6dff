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

// A key that authenticates is noted in the replicas' shared known set
// (wasmwiz.KnownKeys) for knownKeyTTL, again by a replica that still sees
// it knownKeyRenew after it last noted it.
const (
	knownKeyTTL   = 24 * time.Hour
	knownKeyRenew = time.Hour
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
// a known set (wasmwiz.KnownKeys: Redis), on any replica within a day (a
// tenant behind the same address or network keeps working, on a replica
// that just started too), until such a key fails.
type authFailures struct {
	limiter wasmwiz.RateLimiter
	shared  wasmwiz.KnownKeys // nil when the limiter shares none
	limit   int64             // failed lookups per address per window
	log     *slog.Logger
	now     func() time.Time

	mu      sync.RWMutex
	blocked map[netip.Prefix]time.Time      // addresses and networks over their limit, until when
	known   map[[sha256.Size]byte]time.Time // digests of keys that authenticated here: when last noted in shared (zero: not)
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
		if known || g.sharedKnows(ctx, digest) {
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
	g.mu.Lock()
	_, known := g.known[digest]
	delete(g.known, digest) // a key that fails is no longer let past a block
	g.mu.Unlock()
	if known && g.shared != nil {
		// On no replica either (revoked, its user disabled).
		if err := g.shared.ForgetKnownKey(ctx, digest); err != nil {
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

// succeeded notes the key of digest, which authenticated, here and (at
// most once per knownKeyRenew on this replica) in the shared known set.
func (g *authFailures) succeeded(ctx context.Context, digest [sha256.Size]byte) {
	if g == nil {
		return
	}
	now := g.now()
	g.mu.RLock()
	noted, known := g.known[digest]
	g.mu.RUnlock()
	if known && (g.shared == nil || now.Sub(noted) < knownKeyRenew) {
		return
	}
	if g.shared != nil {
		if err := g.shared.NoteKnownKey(ctx, digest, knownKeyTTL); err != nil {
			noted = time.Time{} // noted again with the next success
		} else {
			noted = now
		}
	}
	g.remember(digest, noted)
}

// sharedKnows reports whether the shared known set holds the key of digest
// (false without one, or when it does not answer); a key it holds is
// remembered here.
func (g *authFailures) sharedKnows(ctx context.Context, digest [sha256.Size]byte) bool {
	if g.shared == nil {
		return false
	}
	ok, err := g.shared.IsKnownKey(ctx, digest)
	if err != nil || !ok {
		return false
	}
	g.remember(digest, g.now())
	return true
}

// remember puts digest in the known keys, noted in the shared set at noted.
func (g *authFailures) remember(digest [sha256.Size]byte, noted time.Time) {
	g.mu.Lock()
	if g.known == nil || len(g.known) >= authFailureEntries {
		g.known = make(map[[sha256.Size]byte]time.Time)
	}
	g.known[digest] = noted
	g.mu.Unlock()
}
