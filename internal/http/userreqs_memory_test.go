package http

import (
	"crypto/sha256"
	"runtime"
	"sync"
	"testing"
	"time"
)

// admitUser admits a request of user at now, as admitKey does for a key
// whose owner is known.
func admitUser(g *userRequests, user int64, now time.Time) (*userBucket, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.admit(requester{user: user}, now)
}

// oneRequest makes one request of user at now and lets it answer.
func oneRequest(t *testing.T, g *userRequests, user int64, now time.Time) {
	t.Helper()
	b, err := admitUser(g, user, now)
	if err != nil {
		t.Fatal(err)
	}
	g.done(b)
}

// keyRequest makes one request with the key of digest, which its lookup
// finds to be user's, as authenticate does, and lets it answer.
func keyRequest(t *testing.T, g *userRequests, digest [sha256.Size]byte, user int64) {
	t.Helper()
	b, who, err := g.admitKey(digest)
	if err != nil {
		t.Fatal(err)
	}
	if b, err = g.authenticated(b, who, digest, user); err != nil {
		t.Fatal(err)
	}
	g.done(b)
}

// TestUserRequestsMemoryBounded: the buckets of users (and of keys not yet
// known) that went idle are dropped by a later request, without a goroutine;
// a bucket with a request in flight stays until it answers; a flood of
// distinct callers never holds more than userRequestEntries buckets, nor
// more owners.
func TestUserRequestsMemoryBounded(t *testing.T) {
	t.Parallel()
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	g := newUserRequests(4, 10, func() time.Time { return clock })

	held, err := admitUser(g, 1, clock) // in flight across the sweep
	if err != nil {
		t.Fatal(err)
	}
	for id := int64(2); id <= 1000; id++ {
		oneRequest(t, g, id, clock)
	}
	for i := range 500 {
		keyRequest(t, g, sha256.Sum256([]byte{byte(i), byte(i >> 8)}), 5000+int64(i))
	}
	if n, _ := g.size(); n < 1000 {
		t.Fatalf("%d buckets before any is idle, want at least 1000", n)
	}

	clock = clock.Add(userRequestSweep) // every bucket has refilled (a burst of 20 at 10/s takes 2s)
	oneRequest(t, g, 99999, clock)
	if n, _ := g.size(); n != 2 {
		t.Errorf("%d buckets after a sweep, want 2 (the one in flight, the new one)", n)
	}
	g.done(held)
	if held.inFlight != 0 {
		t.Errorf("the held request's bucket: %d in flight after it answered, want 0", held.inFlight)
	}

	// A bucket not yet full again is kept by the sweep: forgetting it
	// would hand its user a new burst.
	swept := clock
	clock = swept.Add(userRequestSweep - time.Second)
	for range 20 {
		oneRequest(t, g, 7, clock)
	}
	clock = swept.Add(userRequestSweep) // a sweep; user 7 has 10 tokens of 20
	for range 10 {
		oneRequest(t, g, 7, clock)
	}
	if _, err := admitUser(g, 7, clock); err == nil {
		t.Fatal("a drained bucket was forgotten by the sweep: its user got a new burst")
	}

	// A flood of distinct callers at one instant: nothing refills, so only
	// the cap drops buckets.
	for id := int64(1); id <= userRequestEntries+500; id++ {
		oneRequest(t, g, 1_000_000+id, clock)
		if id%997 == 0 {
			if n, _ := g.size(); n > userRequestEntries {
				t.Fatalf("%d buckets, want at most %d", n, userRequestEntries)
			}
		}
	}
	if n, _ := g.size(); n > userRequestEntries {
		t.Fatalf("%d buckets, want at most %d", n, userRequestEntries)
	}
	for i := range userRequestEntries + 10 {
		keyRequest(t, g, sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(i >> 16), 1}), 3_000_000+int64(i))
	}
	if _, n := g.size(); n > userRequestEntries {
		t.Fatalf("%d owners, want at most %d", n, userRequestEntries)
	}
}

// TestUserRequestsHammer: many goroutines of a few users, through several
// keys each, some known and some not, never have more than the bound in
// flight per user, and every bucket is given back.
func TestUserRequestsHammer(t *testing.T) {
	t.Parallel()
	const bound, users, keysPerUser = 3, 4, 3
	g := newUserRequests(bound, 0, time.Now)
	var mu sync.Mutex
	inFlight := map[int64]int{}
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			for i := range 300 {
				user := int64(1 + (w+i)%users)
				digest := sha256.Sum256([]byte{byte(user), byte(i % keysPerUser)})
				b, who, err := g.admitKey(digest)
				if err != nil {
					continue
				}
				if b, err = g.authenticated(b, who, digest, user); err != nil {
					continue
				}
				mu.Lock()
				inFlight[user]++
				if inFlight[user] > bound {
					t.Errorf("user %d: %d requests in flight, want at most %d", user, inFlight[user], bound)
				}
				mu.Unlock()
				runtime.Gosched()
				mu.Lock()
				inFlight[user]--
				mu.Unlock()
				g.done(b)
			}
		})
	}
	wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	for who, b := range g.buckets {
		if b.inFlight != 0 {
			t.Errorf("%+v: %d in flight after every request answered", who, b.inFlight)
		}
	}
}
