package testenv

import (
	"strings"
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
