package testenv

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"sync"
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

// Wait calls wait (a WaitGroup's Wait, for goroutines doing work whose
// length grows with the machine's load, such as thousands of runs) and
// fails t, with what it waited for, if it has not returned a minute before
// the test binary's deadline (go test -timeout; at least Patience from
// now), instead of the binary's panic. The call goes on in the background
// then: a wait that cannot be cancelled can only be abandoned.
func Wait(t testing.TB, what string, wait func()) {
	t.Helper()
	waitWithin(t, what, wait, workPatience(t))
}

// workPatience is how long a wait for work may last: until a minute before
// the test binary's deadline, at least Patience; without a deadline,
// forever.
func workPatience(t testing.TB) time.Duration {
	if dt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if d, ok := dt.Deadline(); ok {
			return max(time.Until(d)-time.Minute, Patience)
		}
	}
	return time.Duration(1<<63 - 1)
}

func waitWithin(t testing.TB, what string, wait func(), patience time.Duration) {
	t.Helper()
	done := make(chan struct{}, 1)
	go func() {
		wait()
		done <- struct{}{}
	}()
	recv(t, done, what, patience)
}

// Command is exec.Command for a process a test waits for: it is killed a
// minute before the test binary's deadline (as Wait gives up), so that Run,
// Output or Wait return and the test fails on what it got instead of the
// binary's panic.
func Command(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), workPatience(t))
	t.Cleanup(cancel)
	return exec.CommandContext(ctx, name, args...)
}

// Gate holds whoever calls Wait (a mock engine's run, say) until the test
// calls Open. It opens by itself when the test ends, so that a test that
// fails while callers wait does not hang in its cleanup (an httptest.Server
// waits for the requests in flight); make it after the server, so that it
// opens first.
type Gate struct {
	once sync.Once
	ch   chan struct{}
}

// NewGate returns a closed gate that opens at the latest when t ends.
func NewGate(t testing.TB) *Gate {
	g := &Gate{ch: make(chan struct{})}
	t.Cleanup(g.Open)
	return g
}

// Open lets every caller of Wait through, now and later; it may be called
// more than once.
func (g *Gate) Open() { g.once.Do(func() { close(g.ch) }) }

// Wait returns once the gate is open, or ctx is done (then with its error).
func (g *Gate) Wait(ctx context.Context) error {
	select {
	case <-g.ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// AtOnce calls f(0) … f(n-1), each on a goroutine of its own, released
// together (replicas starting at the same moment, say), and waits for them
// as Wait does. f must not call t.Fatal: it runs off the test's goroutine.
func AtOnce(t testing.TB, n int, what string, f func(i int)) {
	t.Helper()
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			f(i)
		})
	}
	close(start)
	Wait(t, what, wg.Wait)
}

// Children runs n copies of this test binary at once, each running only
// the test named test (one that does its part when a variable of env is
// set, and skips otherwise), with env added to the environment, and fails t
// unless every one passes that test.
func Children(t testing.TB, n int, test string, env ...string) {
	t.Helper()
	outs, errs := make([][]byte, n), make([]error, n)
	AtOnce(t, n, "the child processes", func(i int) {
		cmd := Command(t, os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), env...)
		outs[i], errs[i] = cmd.CombinedOutput()
	})
	for i := range n {
		if errs[i] != nil || !bytes.Contains(outs[i], []byte("--- PASS: "+test)) {
			t.Fatalf("child process %d: %v\n%s", i, errs[i], outs[i])
		}
	}
}
