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

// authFailures bounds what API keys that do not authenticate make the
// server spend. A key of the right shape costs a store lookup (a database
// round trip shared by every tenant) before it is known to be bad, and
// costs its sender nothing: so every such failure is counted against the
// client's address (an IPv4 address, an IPv6 /64) through the RateLimiter,
// across replicas. Once an address is over the limit, this replica refuses
// its keys (429) for the rest of the window without a lookup, except keys
// that authenticated on this replica before (a tenant behind the same
// address keeps working) until such a key fails.
type authFailures struct {
	limiter wasmwiz.RateLimiter
	limit   int64 // failed lookups per address per window
	log     *slog.Logger
	now     func() time.Time

	mu      sync.RWMutex
	blocked map[netip.Prefix]time.Time     // addresses over the limit, until when
	known   map[[sha256.Size]byte]struct{} // digests of keys that authenticated here
}

// newAuthFailures returns the guard, or nil (no bound) for a limit below 1.
func newAuthFailures(limiter wasmwiz.RateLimiter, limit int, log *slog.Logger, now func() time.Time) *authFailures {
	if limit < 1 || limiter == nil {
		return nil
	}
	return &authFailures{limiter: limiter, limit: int64(limit), log: log, now: now}
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

// refused returns ERATELIMIT, with the time left as its Retry-After, when
// ip is over the limit on this replica and the key of digest (its SHA-256,
// which authenticate computes once for this guard and userRequests) did
// not authenticate here before.
func (g *authFailures) refused(ip netip.Addr, digest [sha256.Size]byte) error {
	if g == nil {
		return nil
	}
	p := authFailureAddress(ip)
	now := g.now()
	g.mu.RLock()
	until, blocked := g.blocked[p]
	g.mu.RUnlock()
	if !blocked {
		return nil
	}
	if !now.Before(until) {
		g.mu.Lock()
		if g.blocked[p] == until {
			delete(g.blocked, p)
		}
		g.mu.Unlock()
		return nil
	}
	g.mu.RLock()
	_, known := g.known[digest]
	g.mu.RUnlock()
	if known {
		return nil
	}
	wait := until.Sub(now)
	return wasmwiz.RetryLater(wasmwiz.ERATELIMIT, wait, "too many API keys that do not authenticate from this address: at most %d a minute; retry in %s",
		g.limit, wait.Round(100*time.Millisecond))
}

// failed counts a key of ip that did not authenticate, and blocks ip on
// this replica when the limiter refuses the count. A limiter that cannot
// decide blocks nothing: its outage must not lock tenants out.
func (g *authFailures) failed(ctx context.Context, ip netip.Addr, digest [sha256.Size]byte) {
	if g == nil {
		return
	}
	g.mu.Lock()
	delete(g.known, digest) // a key that fails is no longer let past a block
	g.mu.Unlock()
	p := authFailureAddress(ip)
	dec, err := g.limiter.Allow(ctx, "authfail:"+p.String(),
		[]wasmwiz.RateLimit{{Name: "auth_failures", Limit: g.limit, Window: authFailureWindow}})
	if err != nil {
		g.log.WarnContext(ctx, "cannot count a failed authentication", "err", err, "client", p.String())
		return
	}
	if dec.Allowed {
		return
	}
	g.mu.Lock()
	if g.blocked == nil || len(g.blocked) >= authFailureEntries {
		g.blocked = make(map[netip.Prefix]time.Time)
	}
	g.blocked[p] = g.now().Add(dec.RetryAfter)
	g.mu.Unlock()
	g.log.WarnContext(ctx, "too many keys that do not authenticate: address refused",
		"client", p.String(), "limit_per_minute", g.limit, "for", dec.RetryAfter.String())
}

// succeeded notes the key of digest, which authenticated.
func (g *authFailures) succeeded(digest [sha256.Size]byte) {
	if g == nil {
		return
	}
	g.mu.RLock()
	_, known := g.known[digest]
	g.mu.RUnlock()
	if known {
		return
	}
	g.mu.Lock()
	if g.known == nil || len(g.known) >= authFailureEntries {
		g.known = make(map[[sha256.Size]byte]struct{})
	}
	g.known[digest] = struct{}{}
	g.mu.Unlock()
}
