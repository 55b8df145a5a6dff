package wasmwiz_test

import (
	"context"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

func TestBodyGate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := wasmwiz.NewBodyGate(100, time.Hour)
	a, err := g.Enter(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	b, err := g.Enter(ctx, 40)
	if err != nil {
		t.Fatal(err)
	}
	if g.InUse() != 100 {
		t.Fatalf("in use %d, want 100", g.InUse())
	}
	// Full: the next waits, and gets in when room is made.
	got := make(chan func(), 1)
	go func() {
		c, err := g.Enter(ctx, 50)
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	testenv.WaitFor(t, "a waiter", func() bool { return g.Waiting() == 1 })
	a()
	a() // twice: nothing more
	var c func()
	testenv.Wait(t, "the waiter's entry", func() { c = <-got })
	if g.InUse() != 90 {
		t.Fatalf("in use %d, want 90 (40 + 50)", g.InUse())
	}
	b()
	c()
	if g.InUse() != 0 {
		t.Fatalf("in use %d after every release", g.InUse())
	}
	// A body larger than the whole capacity takes all of it.
	all, err := g.Enter(ctx, 1<<40)
	if err != nil || g.InUse() != 100 {
		t.Fatalf("a body over the capacity: %v, in use %d", err, g.InUse())
	}
	all()
}

func TestBodyGateRefusesAfterItsWait(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := wasmwiz.NewBodyGate(10, time.Millisecond)
	hold, err := g.Enter(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.Enter(ctx, 1)
	if wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Fatalf("full gate: %v, want EUNAVAILABLE", err)
	}
	if d, ok := wasmwiz.RetryAfter(err); !ok || d <= 0 {
		t.Errorf("no Retry-After hint: %v", err)
	}
	if g.Rejected() != 1 {
		t.Errorf("rejected %d, want 1", g.Rejected())
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	g2 := wasmwiz.NewBodyGate(10, time.Hour)
	hold2, _ := g2.Enter(ctx, 10)
	if _, err := g2.Enter(cctx, 1); wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE {
		t.Fatalf("ended context: %v", err)
	}
	hold()
	hold2()
	if g.InUse() != 0 || g2.InUse() != 0 {
		t.Error("bytes held after every release")
	}
}
