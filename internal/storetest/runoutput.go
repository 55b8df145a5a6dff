package storetest

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// OutputPieces is what a store under test offers beside its methods: the
// count of the output pieces (rows) the heartbeats of a run appended, which
// no method shows. Both stores have it in their export_test.go.
type OutputPieces interface {
	OutputChunksForTest(ctx context.Context, id string) (int, error)
	// LeaveOutputChunkForTest stores a piece of run id whatever its
	// state, as an older replica's run could leave it.
	LeaveOutputChunkForTest(ctx context.Context, id string) error
}

func (e *env) outputPieces() OutputPieces {
	e.t.Helper()
	c, ok := e.s.(OutputPieces)
	if !ok {
		e.t.Fatalf("store %T does not show its output pieces (storetest.OutputPieces)", e.s)
	}
	return c
}

// pieces returns how many output pieces the store holds for run id.
func (e *env) pieces(id string) int {
	e.t.Helper()
	n, err := e.outputPieces().OutputChunksForTest(context.Background(), id)
	wantOK(e.t, err, "OutputChunksForTest")
	return n
}

// running makes a running run of the caller in ctx.
func (e *env) running(ctx context.Context) *wasmwiz.UsageRecord {
	e.t.Helper()
	r := e.queued(ctx, nil)
	started, _, err := e.s.StartRun(e.anon, r.ID)
	wantOK(e.t, err, "StartRun")
	return started
}

// beat sends one heartbeat of run id with the stdout and stderr tails.
func (e *env) beat(id string, outAt int64, out string, errAt int64, errOut string) {
	e.t.Helper()
	_, err := e.s.HeartbeatRun(e.anon, id, wasmwiz.OutputTail{Offset: outAt, Data: []byte(out)},
		wasmwiz.OutputTail{Offset: errAt, Data: []byte(errOut)})
	wantOK(e.t, err, "HeartbeatRun")
}

// wantOutput checks the output a read of run id returns.
func (e *env) wantOutput(ctx context.Context, id, stdout, stderr, when string) *wasmwiz.UsageRecord {
	e.t.Helper()
	got, err := e.s.FindRunByID(ctx, id)
	wantOK(e.t, err, "FindRunByID")
	if string(got.Stdout) != stdout || string(got.Stderr) != stderr {
		e.t.Fatalf("%s: output %s / %s, want %s / %s", when, brief(got.Stdout), brief(got.Stderr), brief([]byte(stdout)), brief([]byte(stderr)))
	}
	return got
}

// testHeartbeatsAppend: each heartbeat carries only the bytes its run added
// since the last one the store took; a read of the running run joins them,
// byte for byte; a heartbeat sent again (its answer was lost) adds nothing
// twice, and one that overlaps what the store holds adds only what is new.
func testHeartbeatsAppend(t *testing.T, e *env) {
	_, ctx := e.user("u@example.com", wasmwiz.TierFree)
	r := e.running(ctx)
	e.wantOutput(ctx, r.ID, "", "", "before any heartbeat")
	e.beat(r.ID, 0, "one ", 0, "")
	e.beat(r.ID, 4, "two\x00", 0, "\xff\xfe err")
	e.wantOutput(ctx, r.ID, "one two\x00", "\xff\xfe err", "after two heartbeats")
	e.beat(r.ID, 4, "two\x00", 0, "\xff\xfe err") // the same heartbeat again
	e.wantOutput(ctx, r.ID, "one two\x00", "\xff\xfe err", "after a heartbeat sent twice")
	e.beat(r.ID, 4, "two\x00three", 3, "err!") // overlaps what is held
	e.wantOutput(ctx, r.ID, "one two\x00three", "\xff\xfe err!", "after an overlapping heartbeat")
	e.beat(r.ID, 0, "", 0, "") // nothing new
	e.beat(r.ID, 99, "gap", 0, "")
	e.wantOutput(ctx, r.ID, "one two\x00three", "\xff\xfe err!", "after a tail past what the store holds")
	if n := e.pieces(r.ID); n != 5 {
		t.Fatalf("the store holds %d pieces, want 5: one per heartbeat and stream that added bytes", n)
	}
	_, err := e.s.HeartbeatRun(e.anon, r.ID, wasmwiz.OutputTail{Offset: -1, Data: []byte("x")}, wasmwiz.OutputTail{})
	WantCode(t, err, wasmwiz.EINVALID, "HeartbeatRun from a negative offset")
	// StartRun of a run already running returns it with its output so
	// far: the executor fails it with that output kept.
	again, _, err := e.s.StartRun(e.anon, r.ID)
	WantCode(t, err, wasmwiz.ECONFLICT, "StartRun of a running run")
	if string(again.Stdout) != "one two\x00three" || string(again.Stderr) != "\xff\xfe err!" {
		t.Fatalf("StartRun of a running run returned output %q / %q", again.Stdout, again.Stderr)
	}
}

// testHeartbeatOutputCap: a stream keeps at most its tier's
// max_stored_output_bytes, whatever the heartbeats send, and the record
// says what it says of a running run's truncation (nothing yet).
func testHeartbeatOutputCap(t *testing.T, e *env) {
	_, ctx := e.user("u@example.com", wasmwiz.TierFree)
	free, err := e.s.FindTier(e.sys, wasmwiz.TierFree)
	wantOK(t, err, "FindTier")
	limit := int(free.MaxStoredOutputBytes)
	r := e.running(ctx)
	big := bytes.Repeat([]byte("0123456789"), limit/10+10)
	e.beat(r.ID, 0, string(big[:limit-3]), 0, string(big[:limit+5]))
	e.beat(r.ID, int64(limit-3), string(big[limit-3:limit+20]), int64(limit+5), "more")
	got := e.wantOutput(ctx, r.ID, string(big[:limit]), string(big[:limit]), "past the cap")
	if got.StdoutTruncated || got.StderrTruncated {
		t.Fatal("a running run's record says its output was cut; only its final record does")
	}
	if n := e.pieces(r.ID); n != 3 {
		t.Fatalf("the store holds %d pieces, want 3: bytes past the cap are not stored", n)
	}
}

// testFinishDropsPieces: the final record holds the output FinishRun
// writes, once, and the pieces the heartbeats appended are gone; deleting
// the run leaves none either.
func testFinishDropsPieces(t *testing.T, e *env) {
	_, ctx := e.user("u@example.com", wasmwiz.TierFree)
	r := e.running(ctx)
	e.beat(r.ID, 0, "par", 0, "e")
	e.beat(r.ID, 3, "tial", 1, "rr")
	fin := *r
	fin.State, fin.Status = wasmwiz.RunDone, wasmwiz.StatusOK
	fin.Stdout, fin.Stderr = []byte("partial and more"), []byte("err")
	ok, err := e.s.FinishRun(e.anon, &fin, nil)
	if err != nil || !ok {
		t.Fatalf("FinishRun: %v %v", ok, err)
	}
	e.wantOutput(ctx, r.ID, "partial and more", "err", "the finished run")
	if n := e.pieces(r.ID); n != 0 {
		t.Fatalf("FinishRun left %d output pieces", n)
	}
	e.beat(r.ID, 7, " late", 0, "") // a replica that did not hear yet
	e.wantOutput(ctx, r.ID, "partial and more", "err", "a heartbeat after the end")
	if n := e.pieces(r.ID); n != 0 {
		t.Fatalf("a heartbeat of a finished run stored %d output pieces", n)
	}

	// Retention of a run whose pieces were left (a state no method makes):
	// they go with it.
	left := e.running(ctx)
	e.beat(left.ID, 0, "out", 0, "err")
	e.clock.Add(time.Hour)
	stale, err := e.s.FailStaleRuns(e.anon, e.clock.Now(), "its replica stopped", 100, nil)
	wantOK(t, err, "FailStaleRuns")
	if len(stale) != 1 || stale[0].ID != left.ID {
		t.Fatalf("FailStaleRuns failed %v, want [%s]", stale, left.ID)
	}
	for _, id := range []string{r.ID, left.ID} {
		wantOK(t, e.outputPieces().LeaveOutputChunkForTest(context.Background(), id), "LeaveOutputChunkForTest")
	}
	n, err := e.s.DeleteRunsBefore(e.anon, e.clock.Now(), "", 100)
	wantOK(t, err, "DeleteRunsBefore")
	if n != 2 {
		t.Fatalf("DeleteRunsBefore deleted %d runs, want the 2 that ended", n)
	}
	for _, id := range []string{r.ID, left.ID} {
		if n := e.pieces(id); n != 0 {
			t.Fatalf("run %s was deleted and left %d output pieces", id, n)
		}
	}
}

// testStaleRunKeepsOutput: a run failed by the sweeper keeps in its final
// record the output its heartbeats appended, and no pieces are left.
func testStaleRunKeepsOutput(t *testing.T, e *env) {
	_, ctx := e.user("u@example.com", wasmwiz.TierFree)
	r := e.running(ctx)
	e.beat(r.ID, 0, "out\x00", 0, "")
	e.beat(r.ID, 4, "put", 0, "\xfferr")
	e.clock.Add(time.Hour)
	ids, err := e.s.FailStaleRuns(e.anon, e.clock.Now(), "its replica stopped", 100, nil)
	wantOK(t, err, "FailStaleRuns")
	if len(ids) != 1 {
		t.Fatalf("FailStaleRuns failed %v", ids)
	}
	got := e.wantOutput(ctx, r.ID, "out\x00put", "\xfferr", "the failed run")
	if got.State != wasmwiz.RunFailed {
		t.Fatalf("state %s, want failed", got.State)
	}
	if n := e.pieces(r.ID); n != 0 {
		t.Fatalf("FailStaleRuns left %d output pieces", n)
	}
}

// brief quotes b, or says how long it is and how it starts when it is long.
func brief(b []byte) string {
	if len(b) <= 64 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%d bytes %q…", len(b), b[:32])
}

// testRunOutputSince: a follower reads a running run's output past what it
// has, also from inside a piece, for its owner only; a run that ended has
// its output in its record, not here.
func testRunOutputSince(t *testing.T, e *env) {
	_, ctx := e.user("u@example.com", wasmwiz.TierFree)
	_, other := e.user("other@example.com", wasmwiz.TierFree)
	q := e.queued(ctx, nil)
	since := func(ctx context.Context, id string, out, errAt int64) (wasmwiz.RunState, string, string) {
		t.Helper()
		st, tails, err := e.s.RunOutputSince(ctx, id, [2]int64{out, errAt})
		wantOK(t, err, "RunOutputSince")
		if tails[0].Offset != out || tails[1].Offset != errAt {
			t.Fatalf("RunOutputSince from %d, %d: tails at %d, %d", out, errAt, tails[0].Offset, tails[1].Offset)
		}
		return st, string(tails[0].Data), string(tails[1].Data)
	}
	if st, o, er := since(ctx, q.ID, 0, 0); st != wasmwiz.RunQueued || o != "" || er != "" {
		t.Fatalf("a queued run: %s %q %q", st, o, er)
	}
	r := e.running(ctx)
	e.beat(r.ID, 0, "one ", 0, "e1")
	e.beat(r.ID, 4, "two ", 2, "e2")
	e.beat(r.ID, 8, "three", 0, "")
	for _, tc := range []struct {
		out, err         int64
		wantOut, wantErr string
	}{
		{0, 0, "one two three", "e1e2"},
		{4, 2, "two three", "e2"},
		{6, 3, "o three", "2"},
		{13, 4, "", ""},
		{99, 99, "", ""},
	} {
		st, o, er := since(ctx, r.ID, tc.out, tc.err)
		if st != wasmwiz.RunRunning || o != tc.wantOut || er != tc.wantErr {
			t.Fatalf("from %d, %d: %s %q %q, want running %q %q", tc.out, tc.err, st, o, er, tc.wantOut, tc.wantErr)
		}
	}
	_, _, err := e.s.RunOutputSince(other, r.ID, [2]int64{})
	WantCode(t, err, wasmwiz.ENOTFOUND, "RunOutputSince of another tenant's run")
	_, _, err = e.s.RunOutputSince(ctx, wasmwiz.NewRunID(e.clock.Now()), [2]int64{})
	WantCode(t, err, wasmwiz.ENOTFOUND, "RunOutputSince of no run")
	_, _, err = e.s.RunOutputSince(e.anon, r.ID, [2]int64{})
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "RunOutputSince without a caller")
	if st, o, er := since(e.sys, r.ID, 8, 0); st != wasmwiz.RunRunning || o != "three" || er != "e1e2" {
		t.Fatalf("an admin reads %s %q %q", st, o, er)
	}

	fin := *r
	fin.State, fin.Status = wasmwiz.RunDone, wasmwiz.StatusOK
	fin.Stdout = []byte("one two three")
	ok, err := e.s.FinishRun(e.anon, &fin, nil)
	if err != nil || !ok {
		t.Fatalf("FinishRun: %v %v", ok, err)
	}
	if st, o, er := since(ctx, r.ID, 0, 0); st != wasmwiz.RunDone || o != "" || er != "" {
		t.Fatalf("a finished run: %s %q %q", st, o, er)
	}
}
