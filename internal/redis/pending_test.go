package redis

import (
	"slices"
	"testing"
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
