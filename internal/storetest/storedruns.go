package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

var storedRunTests = []test{
	{"CountedOnEveryPath", testStoredRunsEveryPath},
	{"ConcurrentBatchesCountExactly", testStoredRunsConcurrentBatches},
}

// stored returns StoredRunBytes of user, failing on an error or a
// negative count.
func (e *env) stored(user int64) int64 {
	e.t.Helper()
	n, err := e.s.StoredRunBytes(e.anon, user)
	wantOK(e.t, err, "StoredRunBytes")
	if n < 0 {
		e.t.Fatalf("StoredRunBytes(%d) = %d, below 0", user, n)
	}
	return n
}

// wantStored fails unless user keeps want bytes of run output.
func (e *env) wantStored(user, want int64, when string) {
	e.t.Helper()
	if got := e.stored(user); got != want {
		e.t.Fatalf("%s: StoredRunBytes(%d) = %d, want %d", when, user, got, want)
	}
}

// withOutput returns r with stdout and stderr set.
func withOutput(r *wasmwiz.UsageRecord, stdout, stderr string) *wasmwiz.UsageRecord {
	r.Stdout, r.Stderr = []byte(stdout), []byte(stderr)
	return r
}

// testStoredRunsEveryPath: the run output a user keeps follows every path
// that writes or deletes it, each byte counted once, each user alone:
// synchronous records in batches (a batch sent again counts once), a
// background run's final record with files, heartbeat pieces then the
// final record that replaces them, the sweeper moving pieces into the
// record, pieces an older replica left, and retention.
func testStoredRunsEveryPath(t *testing.T, e *env) {
	a, actx := e.user("a@example.com", wasmwiz.TierBasic)
	b, _ := e.user("b@example.com", wasmwiz.TierBasic)
	e.wantStored(a.ID, 0, "a new user")
	e.wantStored(1<<40, 0, "a user that does not exist")
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.s.StoredRunBytes(ended, a.ID)
	WantCode(t, err, wasmwiz.EUNAVAILABLE, "StoredRunBytes with an ended context")

	at := e.clock.Now()
	batch := []*wasmwiz.UsageRecord{
		withOutput(run(a.ID, wasmwiz.StatusOK, 1, at, "", ""), "hello", "err"),
		withOutput(run(a.ID, wasmwiz.StatusExit, 1, at.Add(time.Millisecond), "", ""), "\x00\xff", ""),
		run(a.ID, "", 0, at.Add(2*time.Millisecond), "", ""), // refused: no output
		withOutput(run(b.ID, wasmwiz.StatusOK, 1, at.Add(3*time.Millisecond), "", ""), "seven b", ""),
		withOutput(run(0, wasmwiz.StatusOK, 1, at.Add(4*time.Millisecond), "", ""), "anon", ""), // auth off
	}
	e.runs(batch...)
	e.wantStored(a.ID, 10, "after a batch of records")
	e.wantStored(b.ID, 7, "another user after the batch")
	e.wantStored(0, 4, "anonymous runs after the batch")
	e.runs(batch...) // sent again: its answer was lost
	e.wantStored(a.ID, 10, "after the batch was sent again")

	// A background run's final record, with files.
	r := e.running(actx)
	e.wantStored(a.ID, 10, "a running run without output")
	fin := *r
	fin.State, fin.Status = wasmwiz.RunDone, wasmwiz.StatusOK
	fin.Stdout, fin.Stderr = []byte("abc"), []byte("")
	fin.Files = []wasmwiz.OutputFile{{Path: "out/a", Size: 5, SHA256: "ab", Data: []byte("xyz12")},
		{Path: "out/big", Size: 1 << 20, SHA256: "cd", Omitted: true}}
	enc, err := wasmwiz.EncodeOutputFiles(fin.Files)
	wantOK(t, err, "EncodeOutputFiles")
	finish := func(r *wasmwiz.UsageRecord) {
		t.Helper()
		ok, err := e.s.FinishRun(e.anon, r, nil)
		if err != nil || !ok {
			t.Fatalf("FinishRun: %v, %v", ok, err)
		}
	}
	finish(&fin)
	want := int64(10 + 3 + len(enc))
	e.wantStored(a.ID, want, "after a background run's final record with files")
	again := fin
	again.Stdout = []byte("a much longer output that must not count")
	if ok, _ := e.s.FinishRun(e.anon, &again, nil); ok {
		t.Fatal("FinishRun changed a final run")
	}
	e.wantStored(a.ID, want, "after a late FinishRun of a final run")

	// Heartbeat pieces, each byte once, then the final record in their place.
	r = e.running(actx)
	e.beat(r.ID, 0, "hello", 0, "e")
	e.wantStored(a.ID, want+6, "after a heartbeat")
	e.beat(r.ID, 0, "hello", 0, "e") // sent again
	e.beat(r.ID, 3, "lo world", 1, "")
	e.wantStored(a.ID, want+6+6, "after a heartbeat sent again and one that overlaps")
	fin = *r
	fin.State, fin.Status = wasmwiz.RunDone, wasmwiz.StatusOK
	fin.Stdout, fin.Stderr = []byte("hello world!"), []byte("e")
	finish(&fin)
	want += 13
	e.wantStored(a.ID, want, "after the final record replaced the pieces")

	// The sweeper moves a stale run's pieces into its record.
	r = e.running(actx)
	e.beat(r.ID, 0, "out", 0, "err!")
	e.wantStored(a.ID, want+7, "pieces of a run about to go stale")
	e.clock.Add(time.Hour)
	ids, err := e.s.FailStaleRuns(e.anon, e.clock.Now(), "its replica stopped", 100, nil)
	wantOK(t, err, "FailStaleRuns")
	if len(ids) != 1 {
		t.Fatalf("FailStaleRuns failed %v", ids)
	}
	want += 7
	e.wantStored(a.ID, want, "after the sweeper failed the run")
	if n := e.pieces(r.ID); n != 0 {
		t.Fatalf("FailStaleRuns left %d pieces", n)
	}

	// A cancelled queued run and a running one's pieces, then retention.
	q := e.queued(actx, nil)
	_, err = e.s.CancelRun(actx, q.ID, nil)
	wantOK(t, err, "CancelRun")
	live := e.running(actx)
	e.beat(live.ID, 0, "still running", 0, "")
	e.wantStored(a.ID, want+13, "with a run still running")
	wantOK(t, e.outputPieces().LeaveOutputChunkForTest(context.Background(), q.ID), "LeaveOutputChunkForTest")
	e.clock.Add(time.Hour)
	for {
		n, err := e.s.DeleteRunsBefore(e.anon, e.clock.Now(), "", 2)
		wantOK(t, err, "DeleteRunsBefore")
		if n == 0 {
			break
		}
	}
	e.wantStored(a.ID, 13, "after retention: the running run's pieces are left")
	e.wantStored(b.ID, 0, "another user after retention")
	e.wantStored(0, 0, "anonymous runs after retention")
	fin = *live
	fin.State, fin.Status, fin.Stdout = wasmwiz.RunDone, wasmwiz.StatusOK, []byte("")
	finish(&fin)
	e.wantStored(a.ID, 0, "after the last run ended with no output")

	usage, err := e.s.Usage(actx, e.clock.Now())
	wantOK(t, err, "Usage")
	if usage.StoredRunBytes != 0 || usage.MaxStoredRunBytes != wasmwiz.GiB {
		t.Fatalf("Usage stored runs %d of %d; want 0 of 1GiB", usage.StoredRunBytes, usage.MaxStoredRunBytes)
	}
	e.runs(withOutput(run(a.ID, wasmwiz.StatusOK, 1, e.clock.Now(), "", ""), "12345", ""))
	usage, err = e.s.Usage(actx, e.clock.Now())
	wantOK(t, err, "Usage")
	if usage.StoredRunBytes != 5 {
		t.Fatalf("Usage stored runs %d, want 5", usage.StoredRunBytes)
	}
}

// testStoredRunsConcurrentBatches: batches of several replicas that name
// the same users in different orders, written at once, neither deadlock
// nor lose a byte.
func testStoredRunsConcurrentBatches(t *testing.T, e *env) {
	const users, writers, perUser = 4, 8, 5
	ids := make([]int64, users)
	for i := range ids {
		u, _ := e.user(fmt.Sprintf("u%d@example.com", i), wasmwiz.TierFree)
		ids[i] = u.ID
	}
	at := e.clock.Now()
	Racing(t, writers, "CreateRuns", "", func(w int) error {
		var batch []*wasmwiz.UsageRecord
		for n := range perUser {
			for i := range users {
				u := ids[(i+w)%users] // each writer starts at another user
				if w%2 == 1 {
					u = ids[users-1-(i+w)%users]
				}
				r := withOutput(run(u, wasmwiz.StatusOK, 1, at.Add(time.Duration(w*1000+n*users+i)*time.Millisecond), "", ""), "0123456789", "ab")
				batch = append(batch, r)
			}
		}
		return e.s.CreateRuns(context.Background(), batch)
	})
	for _, id := range ids {
		e.wantStored(id, writers*perUser*12, "after concurrent batches")
	}
	e.clock.Add(time.Hour)
	Racing(t, writers, "DeleteRunsBefore", "", func(int) error {
		_, err := e.s.DeleteRunsBefore(e.anon, e.clock.Now(), "", 7)
		return err
	})
	for {
		n, err := e.s.DeleteRunsBefore(e.anon, e.clock.Now(), "", 100)
		wantOK(t, err, "DeleteRunsBefore")
		if n == 0 {
			break
		}
	}
	for _, id := range ids {
		e.wantStored(id, 0, "after retention")
	}
}
