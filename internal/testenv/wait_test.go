package testenv

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestWaits(t *testing.T) {
	ch := make(chan int, 1)
	ch <- 7
	if got := Recv(t, ch, "seven"); got != 7 {
		t.Errorf("Recv = %d", got)
	}
	n := 0
	WaitFor(t, "three polls", func() bool { n++; return n == 3 })
	Wait(t, "a return", func() {})

	close(ch)
	if got := Recv(t, ch, "a closed channel"); got != 0 {
		t.Errorf("Recv on a closed channel = %d", got)
	}
}

// TestWaitsGiveUp: a wait that never ends fails with what it waited for
// (with a bound shorter than Patience, to keep the test short).
func TestWaitsGiveUp(t *testing.T) {
	got := call("TestNever", func(t testing.TB) { waitFor(t, "never", func() bool { return false }, 20*time.Millisecond) })
	if !strings.Contains(got.fatal, "gave up waiting for never") {
		t.Errorf("WaitFor on a condition that never holds: %q", got.fatal)
	}
	got = call("TestSilence", func(t testing.TB) { recv(t, make(chan int), "silence", 20*time.Millisecond) })
	if !strings.Contains(got.fatal, "gave up waiting for silence") {
		t.Errorf("Recv on a channel nobody sends on: %q", got.fatal)
	}
}

func TestBuffer(t *testing.T) {
	var b Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			b.Write([]byte("x"))
		}
	}()
	_ = b.String() // while it writes: -race checks the lock
	Recv(t, done, "the writer")
	if got := b.String(); got != strings.Repeat("x", 100) {
		t.Errorf("String = %q", got)
	}
}

func TestCommand(t *testing.T) {
	out, err := Command(t, "sh", "-c", "echo hi").Output()
	if err != nil || string(out) != "hi\n" {
		t.Errorf("Command: %q, %v", out, err)
	}
	if cmd := Command(t, "true"); cmd.Cancel == nil {
		t.Error("Command has no deadline")
	}
}

func TestGate(t *testing.T) {
	var g *Gate
	t.Run("the test that made it ends", func(t *testing.T) { g = NewGate(t) })
	if err := g.Wait(context.Background()); err != nil {
		t.Errorf("Wait after the test ended: %v", err)
	}
	g = NewGate(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.Wait(ctx); err != context.Canceled {
		t.Errorf("Wait with a cancelled context: %v", err)
	}
	passed := make(chan error, 1)
	go func() { passed <- g.Wait(context.Background()) }()
	g.Open()
	g.Open()
	if err := Recv(t, passed, "a caller through the open gate"); err != nil {
		t.Errorf("Wait: %v", err)
	}
}

func TestWorkPatience(t *testing.T) {
	d, ok := t.Deadline()
	got := workPatience(t)
	switch {
	case !ok && got != time.Duration(1<<63-1):
		t.Errorf("without a deadline: %v, want forever", got)
	case ok && (got < Patience || got > time.Until(d)):
		t.Errorf("with a deadline in %v: %v", time.Until(d), got)
	}
	if got := workPatience(&fakeT{}); got != time.Duration(1<<63-1) {
		t.Errorf("a testing.TB without Deadline: %v", got)
	}
}

func TestAtOnce(t *testing.T) {
	var calls [5]atomic.Int32
	AtOnce(t, len(calls), "the calls", func(i int) { calls[i].Add(1) })
	for i := range calls {
		if n := calls[i].Load(); n != 1 {
			t.Errorf("f(%d) called %d times", i, n)
		}
	}
}

// TestChildren runs TestChildrenHelper in three child processes.
func TestChildren(t *testing.T) {
	t.Parallel()
	Children(t, 3, "TestChildrenHelper", "WASMWIZ_TESTENV_CHILD=1")
}

// TestChildrenHelper is the part of TestChildren's children.
func TestChildrenHelper(t *testing.T) {
	if os.Getenv("WASMWIZ_TESTENV_CHILD") != "1" {
		t.Skip("a child of TestChildren")
	}
}
