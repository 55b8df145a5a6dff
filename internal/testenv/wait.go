package testenv

import (
	"testing"
	"time"
)

// Patience bounds every wait of this package: long beyond what any state a
// test waits for takes on a loaded machine, short enough that a test that
// would hang fails with a message instead. A wait never measures time.
const Patience = time.Minute

// WaitFor polls cond until it holds, failing t ("gave up waiting for what")
// after Patience.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitFor(t, what, cond, Patience)
}

func waitFor(t testing.TB, what string, cond func() bool, patience time.Duration) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s after %v", what, patience)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Recv receives a value from ch, failing t after Patience; a closed
// channel gives the zero value, as a receive does (close(done) signals).
func Recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	return recv(t, ch, what, Patience)
}

func recv[T any](t testing.TB, ch <-chan T, what string, patience time.Duration) T {
	t.Helper()
	timer := time.NewTimer(patience)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("gave up waiting for %s after %v", what, patience)
	}
	panic("unreachable")
}

// Wait calls wait (a WaitGroup's Wait, a process's Wait) and fails t if it
// has not returned after Patience. The call goes on in the background then:
// a wait that cannot be cancelled can only be abandoned.
func Wait(t testing.TB, what string, wait func()) {
	t.Helper()
	done := make(chan struct{}, 1)
	go func() {
		wait()
		done <- struct{}{}
	}()
	Recv(t, done, what)
}
