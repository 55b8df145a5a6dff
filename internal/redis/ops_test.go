package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// TestPendingCarry: an admission carries every waiting release of its own
// caller, also one another script in flight carries (order), and other
// callers' releases only when nothing in flight carries them (each once);
// a failed script gives its releases back, and a background flush takes
// only what nothing carries.
func TestPendingCarry(t *testing.T) {
	var p pending
	a1 := &release{caller: "a"}
	a2 := &release{caller: "a"}
	b1 := &release{caller: "b"}
	c1 := &release{caller: "c"}
	p.list = []*release{a1, b1, a2, c1}

	first := p.carry("a") // all four: nothing was carried
	if !slices.Equal(first, []*release{a1, b1, a2, c1}) {
		t.Fatalf("first admission of a carried %v", callers(first))
	}
	second := p.carry("a") // a's own again, not b's or c's
	if !slices.Equal(second, []*release{a1, a2}) {
		t.Fatalf("second admission of a carried %v, want a's two only", callers(second))
	}
	if got := p.carry("b"); !slices.Equal(got, []*release{b1}) {
		t.Fatalf("admission of b carried %v, want b's own only", callers(got))
	}
	if got := p.carry(""); len(got) != 0 {
		t.Fatalf("a flush took %v while admissions carried everything", callers(got))
	}
	p.mu.Lock()
	if p.uncarriedLocked() {
		t.Error("uncarriedLocked with everything carried")
	}
	p.mu.Unlock()

	p.uncarry(first) // the first script failed: c1 is carried by nobody now
	if got := p.carry(""); !slices.Equal(got, []*release{c1}) {
		t.Fatalf("flush after a failure took %v, want c's", callers(got))
	}
	p.done(second)
	p.mu.Lock()
	left := append([]*release(nil), p.list...)
	p.mu.Unlock()
	if !slices.Equal(left, []*release{b1, c1}) {
		t.Fatalf("left waiting %v, want b's and c's", callers(left))
	}
}

func callers(rs []*release) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.caller)
	}
	return out
}

// TestOpsGroupedAndIdempotent: releases of several callers and a refund
// reach Redis in one script, one ZREM per slots key, each release and
// refund exactly once although the script carries the refund twice (two
// admissions in flight carry it) and a second script carries everything
// again; the refund then takes one event of its millisecond, not two.
func TestOpsGroupedAndIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := opsClient(t)
	a, b := opsKey(t, c, "a:slots"), opsKey(t, c, "b:slots")
	logs := []string{opsKey(t, c, "a:minute:60000"), opsKey(t, c, "a:day:86400000")}
	far := float64(time.Now().Add(time.Hour).UnixMilli())
	for _, k := range []string{a, b} {
		c.ZAdd(ctx, k, goredis.Z{Score: far, Member: "t1"}, goredis.Z{Score: far, Member: "t2"},
			goredis.Z{Score: far, Member: "t3"}, goredis.Z{Score: far, Member: "kept"})
	}
	for _, k := range logs {
		c.RPush(ctx, k, "100", "200", "200", "300")
	}

	refund := &release{slots: a, token: "t3", logs: logs, stamp: "200"}
	rs := []*release{{slots: a, token: "t1"}, {slots: b, token: "t1"}, refund, {slots: a, token: "t2"},
		{slots: b, token: "t2"}, {slots: b, token: "t3"}, refund}
	keys, args := encodeOps(nil, nil, rs)
	wantKeys := []string{a, b, a, logs[0], logs[1], a, logs[0], logs[1]}
	wantArgs := []any{"Z", 2, "t1", "t2", "Z", 3, "t1", "t2", "t3", "R", 2, "t3", "200", "R", 2, "t3", "200"}
	if !slices.Equal(keys, wantKeys) || !slices.Equal(args, wantArgs) {
		t.Fatalf("encodeOps:\n keys %q\n args %v\nwant\n keys %q\n args %v", keys, args, wantKeys, wantArgs)
	}
	for range 2 { // the second time, as a script that carried the same releases
		if err := opsScript.Run(ctx, c, keys, args...).Err(); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{a, b} {
			if got := c.ZRange(ctx, k, 0, -1).Val(); !slices.Equal(got, []string{"kept"}) {
				t.Fatalf("%s holds %q after the releases, want only the holder not released", k, got)
			}
		}
		for _, k := range logs {
			if got := c.LRange(ctx, k, 0, -1).Val(); !slices.Equal(got, []string{"100", "200", "300"}) {
				t.Fatalf("%s holds %q after one refund of 200, want one 200 taken", k, got)
			}
		}
	}
}

// TestAdmissionCarriesGroupedOps: an admission of two quotas carries
// releases of its caller and of another caller and a refund of its own;
// after it, exactly the admitted run holds a slot and the refunded event is
// gone (the ops' keys follow the quotas' in the script's KEYS).
func TestAdmissionCarriesGroupedOps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := opsClient(t)
	var p [6]byte
	rand.Read(p[:])
	prefix := "wasmwiz-test:" + hex.EncodeToString(p[:]) + ":rl:"
	t.Cleanup(func() {
		iter := c.Scan(context.Background(), 0, prefix+"*", 100).Iterator()
		for iter.Next(context.Background()) {
			c.Del(context.Background(), iter.Val())
		}
	})
	// The fold window is longer than the test: only admissions carry.
	l, err := New(Options{Client: c, Prefix: prefix, Timeout: 5 * time.Second, FoldWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	quotas := []wasmwiz.RateLimit{{Name: "minute", Limit: 100, Window: time.Minute}, {Name: "day", Limit: 1000, Window: 24 * time.Hour}}
	mine := wasmwiz.Admission{Key: "u1", Quotas: quotas, MaxConcurrent: 10, SlotTTL: time.Minute}
	other := wasmwiz.Admission{Key: "u2", Quotas: quotas, MaxConcurrent: 10, SlotTTL: time.Minute}
	var runs []wasmwiz.Admitted
	for _, a := range []wasmwiz.Admission{mine, mine, mine, other, other} {
		adm, err := l.Admit(ctx, a)
		if err != nil || !adm.OK() {
			t.Fatalf("Admit: %+v, %v", adm, err)
		}
		runs = append(runs, adm)
	}
	// Roomy callers: every release waits for an admission. The refund is
	// the second of u1's runs.
	runs[0].Release(false)
	runs[3].Release(false)
	runs[4].Release(false)
	runs[2].Release(false)
	before := c.LLen(ctx, prefix+"{u1}:minute:60000").Val()
	adm, err := l.Admit(ctx, mine)
	if err != nil || !adm.OK() {
		t.Fatalf("Admit: %+v, %v", adm, err)
	}
	// runs[1] still holds; the new run holds; u1 counted 4 events, of
	// which none refunded yet.
	if got := c.ZCard(ctx, prefix+"{u1}:slots").Val(); got != 2 {
		t.Fatalf("u1 holds %d slots, want 2 (one run not released, the new one)", got)
	}
	if got := c.ZCard(ctx, prefix+"{u2}:slots").Val(); got != 0 {
		t.Fatalf("u2 holds %d slots after both its releases were carried", got)
	}
	if before != 3 || adm.Decision.Remaining != 100-4 {
		t.Fatalf("u1's minute counted %d before and %d remaining after, want 3 and 96", before, adm.Decision.Remaining)
	}
	runs[1].Release(true)
	adm.Release(false)
	adm, err = l.Admit(ctx, mine)
	if err != nil || !adm.OK() {
		t.Fatalf("Admit: %+v, %v", adm, err)
	}
	if got := c.ZCard(ctx, prefix+"{u1}:slots").Val(); got != 1 {
		t.Fatalf("u1 holds %d slots, want only the new run's", got)
	}
	for _, k := range []string{"minute:60000", "day:86400000"} {
		if got := c.LLen(ctx, prefix+"{u1}:"+k).Val(); got != 4 {
			t.Fatalf("u1's %s counts %d events, want 4 (five runs, one refunded)", k, got)
		}
	}
}

// opsClient returns a client of the test Redis, closed when the test ends.
func opsClient(t *testing.T) *goredis.Client {
	t.Helper()
	c, err := NewClient(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// opsKey returns a key of the test's own named after name, deleted when
// the test ends.
func opsKey(t *testing.T, c *goredis.Client, name string) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	k := "wasmwiz-test:" + hex.EncodeToString(b[:]) + ":rl:{ops}:" + name
	t.Cleanup(func() { c.Del(context.Background(), k) })
	return k
}
