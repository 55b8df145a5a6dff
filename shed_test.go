package wasmwiz_test

import (
	"context"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// TestRunGateFull: the gate is full only when every slot and every queue
// place is taken, and Shed refuses as Enter would, counted.
func TestRunGateFull(t *testing.T) {
	t.Parallel()
	g := wasmwiz.NewRunGate(1, 1, time.Hour)
	if g.Full() {
		t.Fatal("an empty gate is full")
	}
	leave, err := g.Enter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if g.Full() {
		t.Fatal("full with a queue place free")
	}
	queued := make(chan error, 1)
	go func() {
		l, err := g.Enter(context.Background())
		if err == nil {
			l()
		}
		queued <- err
	}()
	testenv.WaitFor(t, "the second run to queue", func() bool { return g.Queued() == 1 })
	if !g.Full() {
		t.Fatal("not full with the slot and the queue taken")
	}
	err = g.Shed()
	if d, ok := wasmwiz.RetryAfter(err); wasmwiz.ErrorCode(err) != wasmwiz.EUNAVAILABLE || !ok || d <= 0 || g.Rejected() != 1 {
		t.Fatalf("Shed: %v (retry after %v %v), rejected %d", err, d, ok, g.Rejected())
	}
	leave()
	if err := testenv.Recv(t, queued, "the queued run"); err != nil {
		t.Fatalf("the queued run: %v", err)
	}
	if g.Full() {
		t.Fatal("full after every run left")
	}
}
