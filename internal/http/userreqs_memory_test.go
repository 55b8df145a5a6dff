package http

import (
	"crypto/sha256"
	"testing"
	"time"
)

// TestUserRequestsMemoryBounded: the buckets of users (and of keys not yet
// known) that went idle are dropped by a later request, without a goroutine;
// a bucket with a request in flight stays until it answers; a flood of
// distinct callers never holds more than userRequestEntries buckets, nor
// more owners.
func TestUserRequestsMemoryBounded(t *testing.T) {
	t.Parallel()
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	g := newUserRequests(4, 10, func() time.Time { return clock })

	var held *userBucket
	for id := int64(1); id <= 1000; id++ {
		b, err := g.admit(requester{user: id}, clock)
		if err != nil {
			t.Fatal(err)
		}
		if id == 1 {
			held = b // in flight across the sweep
			continue
		}
		g.done(b)
	}
	for i := range 500 {
		digest := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		b, who, err := g.admitKey(digest)
		if err != nil {
			t.Fatal(err)
		}
		if b, err = g.authenticated(b, who, digest, 5000+int64(i)); err != nil {
			t.Fatal(err)
		}
		g.done(b)
	}
	if n, _ := g.size(); n < 1000 {
		t.Fatalf("%d buckets before any is idle, want at least 1000", n)
	}

	clock = clock.Add(userRequestSweep) // every bucket has refilled (a burst of 20 at 10/s takes 2s)
	b, err := g.admit(requester{user: 99999}, clock)
	if err != nil {
		t.Fatal(err)
	}
	g.done(b)
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
		b, err := g.admit(requester{user: 7}, clock)
		if err != nil {
			t.Fatal(err)
		}
		g.done(b)
	}
	clock = swept.Add(userRequestSweep) // a sweep; user 7 has 10 tokens of 20
	for i := range 11 {
		b, err := g.admit(requester{user: 7}, clock)
		if i == 10 {
			if err == nil {
				t.Fatal("a drained bucket was forgotten by the sweep: its user got a new burst")
			}
			break
		}
		if err != nil {
			t.Fatalf("request %d of the 10 tokens refilled: %v", i+1, err)
		}
		g.done(b)
	}

	// A flood of distinct callers at one instant: nothing refills, so only
	// the cap drops buckets.
	for id := int64(1); id <= userRequestEntries+500; id++ {
		b, err := g.admit(requester{user: 1_000_000 + id}, clock)
		if err != nil {
			t.Fatal(err)
		}
		g.done(b)
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
		digest := sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(i >> 16), 1})
		b, who, err := g.admitKey(digest)
		if err != nil {
			t.Fatal(err)
		}
		if b, err = g.authenticated(b, who, digest, 3_000_000+int64(i)); err != nil {
			t.Fatal(err)
		}
		g.done(b)
	}
	if _, n := g.size(); n > userRequestEntries {
		t.Fatalf("%d owners, want at most %d", n, userRequestEntries)
	}
}
