package http_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// countKeyLookups counts f's key lookups from here on, and answers its
// module lists empty: listModulesFrom is the request these tests flood.
func countKeyLookups(f *fixture) *atomic.Int64 {
	var lookups atomic.Int64
	next := f.keys.AuthenticateFn
	f.keys.AuthenticateFn = func(ctx context.Context, p string) (*wasmwiz.User, *wasmwiz.APIKey, error) {
		lookups.Add(1)
		return next(ctx, p)
	}
	f.modules.FindModulesFn = func(ctx context.Context, filter wasmwiz.ModuleFilter) ([]*wasmwiz.Module, wasmwiz.ListTotal, error) {
		return nil, wasmwiz.ListTotal{}, nil
	}
	return &lookups
}

// bogusKeys returns a function that makes a well-shaped key that does not
// authenticate, a new one each time, as a flood would send.
func bogusKeys() func() string {
	n := 0
	return func() string { n++; return fmt.Sprintf("ww_%040d", n) }
}

// listModulesFrom lists the modules with key, sent from the address addr.
func (f *fixture) listModulesFrom(addr, key string) *response {
	return f.do(request{method: "GET", path: "/api/v1/modules", key: key, remoteAddr: addr + ":5000"})
}

// TestAuthFailuresBoundedPerAddress: a flood of well-shaped keys that do not
// authenticate, from one address and no account, costs the store at most
// MaxAuthFailures lookups a minute (one more for the one that finds the
// address over its limit); then that address's keys answer 429 ERATELIMIT
// with Retry-After and no lookup, while a key that authenticated before from
// it keeps working, other addresses are untouched, an IPv6 sender is counted
// by its /64, and the minute over, lookups resume.
func TestAuthFailuresBoundedPerAddress(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	const limit = 3
	f := newFixture(t, func(o *wwhttp.Options) {
		o.Limiter = inmem.New(inmem.Options{Now: clock.Now})
		o.Now = clock.Now
		o.MaxAuthFailures = limit
	})
	lookups := countKeyLookups(f)
	bogus := bogusKeys()
	get := f.listModulesFrom
	const attacker, tenant = "203.0.113.7", "198.51.100.9"

	if res := get(attacker, userKey); res.status != 200 {
		t.Fatalf("a good key before the flood: %d %s", res.status, res.body)
	}
	for i := range limit + 1 {
		if res := get(attacker, bogus()); res.status != 401 {
			t.Fatalf("bad key %d of the first %d: status %d, want 401: %s", i+1, limit+1, res.status, res.body)
		}
	}
	looked := lookups.Load()
	for i := range 50 {
		get(attacker, bogus()).wantRateLimited(t, fmt.Sprintf("bad key %d past the limit", limit+2+i), 60)
	}
	if got := lookups.Load() - looked; got != 0 {
		t.Fatalf("the store was asked %d times for keys refused past the limit, want 0", got)
	}
	if res := get(attacker, userKey); res.status != 200 {
		t.Errorf("a key that authenticated before, from the refused address: %d %s", res.status, res.body)
	}
	if res := get(attacker, otherKey); res.status != 429 {
		t.Errorf("a key new to this replica, from the refused address: %d, want 429: %s", res.status, res.body)
	}
	if res := get(tenant, bogus()); res.status != 401 {
		t.Errorf("a bad key from another address: %d, want 401: %s", res.status, res.body)
	}
	if res := get(tenant, otherKey); res.status != 200 {
		t.Errorf("a good key from another address: %d %s", res.status, res.body)
	}

	// IPv6: one /64 is one sender.
	for range limit + 1 {
		get("[2001:db8:1:2::1]", bogus())
	}
	if res := get("[2001:db8:1:2::ffff]", bogus()); res.status != 429 {
		t.Errorf("another address of the same /64: %d, want 429: %s", res.status, res.body)
	}
	if res := get("[2001:db8:1:3::1]", bogus()); res.status != 401 {
		t.Errorf("an address of another /64: %d, want 401: %s", res.status, res.body)
	}

	clock.Add(time.Minute + time.Second)
	looked = lookups.Load()
	if res := get(attacker, bogus()); res.status != 401 {
		t.Errorf("a bad key after the minute: %d, want 401: %s", res.status, res.body)
	}
	if lookups.Load() != looked+1 {
		t.Errorf("after the minute the bad key was not looked up")
	}
}

// TestAuthFailuresKnownKeyThatFails: a key that authenticated before, once
// revoked, is counted like any bad key and no longer passes a refused
// address: else one revoked key of its own would let a key holder past the
// bound for good.
func TestAuthFailuresKnownKeyThatFails(t *testing.T) {
	t.Parallel()
	var revoked atomic.Bool
	f := newFixture(t, func(o *wwhttp.Options) {
		o.Limiter = inmem.New(inmem.Options{})
		o.MaxAuthFailures = 2
	})
	next := f.keys.AuthenticateFn
	f.keys.AuthenticateFn = func(ctx context.Context, p string) (*wasmwiz.User, *wasmwiz.APIKey, error) {
		if p == userKey && revoked.Load() {
			return nil, nil, wasmwiz.Errorf(wasmwiz.EUNAUTHORIZED, "revoked")
		}
		return next(ctx, p)
	}
	lookups := countKeyLookups(f)
	get := func(key string) *response { return f.listModulesFrom("203.0.113.8", key) }
	if res := get(userKey); res.status != 200 {
		t.Fatalf("good key: %d %s", res.status, res.body)
	}
	revoked.Store(true)
	for range 3 {
		if res := get(userKey); res.status != 401 {
			t.Fatalf("revoked key: %d, want 401: %s", res.status, res.body)
		}
	}
	looked := lookups.Load()
	for range 10 {
		if res := get(userKey); res.status != 429 {
			t.Fatalf("revoked key past the limit: %d, want 429: %s", res.status, res.body)
		}
	}
	if got := lookups.Load() - looked; got != 0 {
		t.Fatalf("the revoked key was looked up %d more times past the limit, want 0", got)
	}
}

// TestAuthFailuresBoundedPerNetwork: a sender rotating through the /64s of
// its /48 (or the addresses of its /24), each under the per-address limit,
// is counted by its network too: past 8 times the limit its keys answer
// 429 from every address of the network without a lookup, while a key
// that authenticated before still works from there and another network
// is untouched.
func TestAuthFailuresBoundedPerNetwork(t *testing.T) {
	t.Parallel()
	const limit, wide = 3, 8 * 3
	tests := []struct {
		name  string
		addr  func(i int) string // the i-th address of the network
		other string             // an address of another network
	}{
		{"IPv6 /48", func(i int) string { return fmt.Sprintf("[2001:db8:aa:%x::1]", i) }, "[2001:db8:bb::1]"},
		{"IPv4 /24", func(i int) string { return fmt.Sprintf("203.0.113.%d", i+1) }, "203.0.114.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, func(o *wwhttp.Options) {
				o.Limiter = inmem.New(inmem.Options{})
				o.MaxAuthFailures = limit
			})
			lookups := countKeyLookups(f)
			bogus := bogusKeys()
			get := f.listModulesFrom
			if res := get(tt.addr(200), userKey); res.status != 200 {
				t.Fatalf("a good key before the flood: %d %s", res.status, res.body)
			}
			// Two bad keys from each address: under the address's limit.
			failed := 0
			for i := 0; ; i++ {
				res := get(tt.addr(i/2), bogus())
				if res.status == 429 {
					break
				}
				if res.status != 401 {
					t.Fatalf("bad key %d: %d %s", i+1, res.status, res.body)
				}
				if failed++; failed > wide+1 {
					t.Fatalf("%d bad keys from one network answered 401, want at most %d", failed, wide+1)
				}
			}
			if failed != wide+1 {
				t.Errorf("%d bad keys answered 401 before the network was refused, want %d", failed, wide+1)
			}
			looked := lookups.Load()
			for i := range 20 {
				res := get(tt.addr(100+i), bogus()) // addresses not seen yet
				if res.status != 429 || res.errorCode(t) != wasmwiz.ERATELIMIT || !strings.Contains(res.errorMessage(t), "from this network: at most 24 a minute") {
					t.Fatalf("a bad key from a new address of the network: %d %s, want 429", res.status, res.body)
				}
			}
			if got := lookups.Load() - looked; got != 0 {
				t.Errorf("%d lookups for keys refused by the network's bound, want 0", got)
			}
			if res := get(tt.addr(150), userKey); res.status != 200 {
				t.Errorf("a key that authenticated before, from the refused network: %d %s", res.status, res.body)
			}
			if res := get(tt.other, bogus()); res.status != 401 {
				t.Errorf("a bad key from another network: %d, want 401: %s", res.status, res.body)
			}
			if res := get(tt.other, otherKey); res.status != 200 {
				t.Errorf("a good key from another network: %d %s", res.status, res.body)
			}
		})
	}
}

// sharedSets is a limiter shared by replicas that also shares known-key
// sets (wasmwiz.KnownKeys), as the Redis limiter does.
type sharedSets struct {
	wasmwiz.RateLimiter
	mu    sync.Mutex
	sets  map[string]map[string]bool // network -> KnownKeyHash
	reads atomic.Int64
}

func (k *sharedSets) NoteKnownKey(ctx context.Context, network string, digest [32]byte, ttl time.Duration) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.sets[network] == nil {
		k.sets[network] = map[string]bool{}
	}
	k.sets[network][wasmwiz.KnownKeyHash(digest)] = true
	return nil
}

func (k *sharedSets) KnownKeysOf(ctx context.Context, network string) (map[string]bool, error) {
	k.reads.Add(1)
	if err := ctx.Err(); err != nil {
		return nil, err // as Redis's call: cut by its context
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return maps.Clone(k.sets[network]), nil
}

func (k *sharedSets) ForgetKnownKey(ctx context.Context, network string, digest [32]byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.sets[network], wasmwiz.KnownKeyHash(digest))
	return nil
}

func (k *sharedSets) has(network, key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.sets[network][wasmwiz.KnownKeyHash(sha256.Sum256([]byte(key)))]
}

// TestAuthFailuresKnownOnAnotherReplica: a tenant whose key authenticated
// from its network on one replica is not locked out of another (one that
// never saw it, as after a restart) when a flood from that network blocks
// it there: the replica reads the network's shared known set once for the
// block, so the flood's refusals cost no call however many. A key known
// nowhere is still refused without a lookup; a key that fails (revoked)
// leaves its network's set, whether or not the replica knew it, and is
// then refused on every replica like any bad key.
func TestAuthFailuresKnownOnAnotherReplica(t *testing.T) {
	t.Parallel()
	const limit = 2
	shared := &sharedSets{RateLimiter: inmem.New(inmem.Options{}), sets: map[string]map[string]bool{}}
	var revoked atomic.Bool
	replica := func() (*fixture, *atomic.Int64) {
		f := newFixture(t, func(o *wwhttp.Options) {
			o.Limiter = shared
			o.MaxAuthFailures = limit
		})
		next := f.keys.AuthenticateFn
		f.keys.AuthenticateFn = func(ctx context.Context, p string) (*wasmwiz.User, *wasmwiz.APIKey, error) {
			if p == userKey && revoked.Load() {
				return nil, nil, wasmwiz.Errorf(wasmwiz.EUNAUTHORIZED, "revoked")
			}
			return next(ctx, p)
		}
		return f, countKeyLookups(f)
	}
	a, _ := replica()
	b, bLookups := replica()
	c, _ := replica()
	get := func(f *fixture, addr, key string) *response { return f.listModulesFrom(addr, key) }
	const tenant, elsewhere = "203.0.113.200", "198.51.100.9"
	for _, addr := range []string{tenant, elsewhere} {
		if res := get(a, addr, userKey); res.status != 200 {
			t.Fatalf("the tenant's key on replica A from %s: %d %s", addr, res.status, res.body)
		}
	}
	if !shared.has("203.0.113.0/24", userKey) || !shared.has("198.51.100.0/24", userKey) {
		t.Fatal("the key was not noted in the known sets of the networks it authenticated from")
	}
	// A flood from the tenant's /24 on replica B, each address under its
	// own limit, then on and on past the block.
	bogus := bogusKeys()
	for i := range 8*limit + 1 {
		get(b, fmt.Sprintf("203.0.113.%d", i/limit+1), bogus())
	}
	// The first refused request, which reads the set, hangs up at once: the
	// read still serves the block.
	gone, hangUp := context.WithCancel(context.Background())
	hangUp()
	if res := b.do(request{method: "GET", path: "/api/v1/modules", key: bogus(), remoteAddr: "203.0.113.77:5000", ctx: gone}); res.status != 429 {
		t.Fatalf("a hung-up request from the blocked network on replica B: %d, want 429: %s", res.status, res.body)
	}
	for i := range 200 {
		if res := get(b, fmt.Sprintf("203.0.113.%d", i%250+1), bogus()); res.status != 429 {
			t.Fatalf("the flood's network on replica B: %d, want 429: %s", res.status, res.body)
		}
	}
	if n := shared.reads.Load(); n != 1 {
		t.Errorf("the network's known set was read %d times during the flood, want once", n)
	}
	looked := bLookups.Load()
	if res := get(b, tenant, otherKey); res.status != 429 {
		t.Errorf("a key known on no replica, from the blocked network: %d, want 429: %s", res.status, res.body)
	}
	if got := bLookups.Load() - looked; got != 0 {
		t.Errorf("a key known nowhere was looked up %d times past the block", got)
	}
	if res := get(b, tenant, userKey); res.status != 200 {
		t.Errorf("the tenant's key, known on replica A, from the blocked network on replica B: %d, want 200: %s", res.status, res.body)
	}

	// Revoked: its failure on B takes it out of the network's set and of
	// B's copy, so B and C (where the network is blocked too: the counts
	// are shared) refuse it unseen; its failure on C, from a network not
	// blocked, where C never saw it, takes it out of that network's set.
	revoked.Store(true)
	if res := get(b, tenant, userKey); res.status != 401 {
		t.Fatalf("the revoked key on B: %d, want 401: %s", res.status, res.body)
	}
	if res := get(b, tenant, userKey); res.status != 429 {
		t.Errorf("the revoked key on B again: %d, want 429: %s", res.status, res.body)
	}
	get(c, "203.0.113.101", bogus()) // C learns the block from the shared count
	if res := get(c, tenant, userKey); res.status != 429 {
		t.Errorf("the revoked key on replica C: %d, want 429: %s", res.status, res.body)
	}
	if res := get(c, elsewhere, userKey); res.status != 401 {
		t.Fatalf("the revoked key on C from another network: %d, want 401: %s", res.status, res.body)
	}
	if shared.has("203.0.113.0/24", userKey) || shared.has("198.51.100.0/24", userKey) {
		t.Error("the revoked key is still in a network's known set")
	}
}
