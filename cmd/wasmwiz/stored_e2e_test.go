package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestServeStoredRunQuota: a user whose tier keeps little run output
// (max_stored_output_bytes 16KiB a stream, max_stored_run_bytes 72KiB)
// floods synchronous runs of a guest that fills its 64KiB of output on
// both streams, on the real server and stores. Every answer carries the
// whole 64KiB; the records keep 16KiB of each stream, then what is left of
// the quota, then nothing, their message naming max_stored_run_bytes; a
// background run is then 413 ETOOLARGE, with a small body and with a body
// admitted before it is read, and spends no rate quota; another user of
// the tier, running at the same time, keeps its output.
//
// The bound: the runs are sequential on one replica, and the test waits
// until /api/v1/usage counts each record that keeps output before the
// next run (a record that keeps none changes no count). So every read of
// the count the replica makes (at most every StoredRunsMaxAge) sees every
// earlier record, and what it adds of its own runs meanwhile is exact:
// each decision knows what the user keeps. The only overshoot left is
// within one record: the last run that finds room keeps up to what is
// left of each of its two streams. The test asserts what each record keeps
// to the byte, and the total within max_stored_run_bytes plus
// max_stored_output_bytes (it reaches 72KiB + 8KiB). Without the wait, a
// read after StoredRunsMaxAge could miss records still in the usage
// writer's buffer, and the overshoot would depend on timing (storedruns.go).
func TestServeStoredRunQuota(t *testing.T) {
	const (
		tierName  = "keeplittle"
		maxOutput = 64 * wasmwiz.KiB // a run's answer: stdout and stderr together
		perStream = 16 * wasmwiz.KiB // max_stored_output_bytes: what a record keeps of each stream
		quota     = 72 * wasmwiz.KiB // max_stored_run_bytes
		floods    = 6                // synchronous runs before the background ones
	)
	onEveryBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		s := be.serve(t)
		attacker, _, _ := s.newTierUser(tierName, func(tr *wasmwiz.Tier) {
			tr.MaxOutputBytes, tr.MaxStoredOutputBytes, tr.MaxStoredRunBytes = maxOutput, perStream, quota
			// Room for a background run's body over 1MiB, which is
			// admitted (its rate quota taken) before it is read.
			tr.MaxStdinBytes = 2 * wasmwiz.MiB
			// The day's quota is the tightest, so that
			// X-RateLimit-Remaining counts it: no run of the test leaves
			// its window.
			tr.RunsPerDay = 500
		})
		other, _, _ := s.newUser(tierName)
		flood := testmodule.Read(t, "flood_both.wasm")

		// run runs flood_both as c and returns its answer and its record.
		run := func(c *client.Client) (*client.Execution, *api.Run, error) {
			ex, err := c.ExecuteDetail(ctx, &client.ExecuteRequest{Wasm: flood})
			if err != nil {
				return nil, nil, err
			}
			res := ex.Result
			if res.Status != api.StatusOutputLimit || int64(len(res.Stdout)+len(res.Stderr)) != maxOutput ||
				int64(len(res.Stdout)) <= perStream || int64(len(res.Stderr)) <= perStream {
				return nil, nil, fmt.Errorf("the answer: status %s, stdout %d + stderr %d bytes; want output_limit with the whole %d, over %d on each stream",
					res.Status, len(res.Stdout), len(res.Stderr), maxOutput, perStream)
			}
			rec, err := c.GetRun(ctx, res.ID)
			if err != nil {
				return nil, nil, fmt.Errorf("its record: %w", err)
			}
			return ex, rec, nil
		}
		// keeps checks that rec keeps the first each bytes of the answer's
		// streams, and names the quota in its message exactly when it
		// cut what the tier's cap would have kept.
		keeps := func(ex *client.Execution, rec *api.Run, each int64) error {
			res := ex.Result
			out, errOut := res.Stdout[:min(int64(len(res.Stdout)), each)], res.Stderr[:min(int64(len(res.Stderr)), each)]
			if !bytes.Equal(rec.Stdout, out) || !bytes.Equal(rec.Stderr, errOut) || !rec.StdoutTruncated || !rec.StderrTruncated {
				return fmt.Errorf("the record keeps stdout %d + stderr %d bytes (truncated %v, %v), want the first %d and %d of the answer, truncated",
					len(rec.Stdout), len(rec.Stderr), rec.StdoutTruncated, rec.StderrTruncated, len(out), len(errOut))
			}
			if cut := each < perStream; strings.Contains(rec.Message, "max_stored_run_bytes") != cut {
				return fmt.Errorf("the record's message %q; naming max_stored_run_bytes: want %v", rec.Message, cut)
			}
			return nil
		}
		storedRuns := func(c *client.Client, what string) int64 {
			t.Helper()
			u, err := c.Usage(ctx)
			if err != nil {
				t.Fatalf("Usage %s: %v", what, err)
			}
			if u.MaxStoredRunBytes != quota {
				t.Fatalf("Usage %s: max_stored_run_bytes %d, want %d", what, u.MaxStoredRunBytes, quota)
			}
			return u.StoredRunBytes
		}
		// counted waits until /api/v1/usage counts want bytes of c's run
		// output (the usage writer writes records in batches), and fails
		// unless it is exactly want.
		counted := func(c *client.Client, who string, want int64) int64 {
			t.Helper()
			var got int64
			testenv.WaitFor(t, fmt.Sprintf("%s's %d bytes of run output to be counted", who, want), func() bool {
				got = storedRuns(c, who)
				return got >= want
			})
			if got != want {
				t.Fatalf("%s keeps %d bytes of run output, its records %d", who, got, want)
			}
			return got
		}

		// The other user, at the same time as the flood.
		var wg sync.WaitGroup
		var otherErr error
		wg.Go(func() {
			ex, rec, err := run(other)
			if err == nil {
				err = keeps(ex, rec, perStream)
			}
			otherErr = err
		})

		var stored, answered int64
		var kept, cut, empty int
		var last *client.Execution
		for i := range floods {
			ex, rec, err := run(attacker)
			if err != nil {
				t.Fatalf("run %d: %v", i+1, err)
			}
			answered += int64(len(ex.Result.Stdout) + len(ex.Result.Stderr))
			each := min(perStream, max(quota-stored, 0))
			if err := keeps(ex, rec, each); err != nil {
				t.Fatalf("run %d, with %d of %d bytes stored: %v", i+1, stored, quota, err)
			}
			n := int64(len(rec.Stdout) + len(rec.Stderr))
			switch {
			case n == 0:
				empty++
			case each < perStream:
				cut++
			default:
				kept++
			}
			if n > 0 {
				stored += n
				counted(attacker, "the attacker", stored)
			}
			last = ex
		}
		if kept != 2 || cut != 1 || empty != floods-3 {
			t.Fatalf("of %d runs, %d records kept the tier's cap, %d were cut by the quota and %d kept nothing; want 2, 1 and %d",
				floods, kept, cut, empty, floods-3)
		}
		if stored < quota || stored > quota+perStream {
			t.Fatalf("the attacker keeps %d bytes of run output, want the quota %d to %d (it and the last record's overshoot)", stored, quota, quota+perStream)
		}

		// Background runs, now that nothing is left: refused before any
		// rate quota is spent, with a small body and with one over 1MiB.
		if !last.RateLimit.Present {
			t.Fatal("the last run's answer has no X-RateLimit headers")
		}
		bodies := []struct {
			name string
			req  client.ExecuteRequest
		}{
			{"small JSON body", client.ExecuteRequest{Wasm: flood}},
			{"multipart body over 1MiB", client.ExecuteRequest{Wasm: flood, Stdin: bytes.Repeat([]byte("x"), int(3*wasmwiz.MiB/2)), Body: client.BodyMultipart}},
		}
		for _, b := range bodies {
			_, err := attacker.ExecuteAsync(ctx, &b.req, "")
			wantCode(t, "a background run with the quota full, "+b.name, err, wasmwiz.ETOOLARGE)
			if client.StatusCode(err) != http.StatusRequestEntityTooLarge || !strings.Contains(messageOf(err), "max_stored_run_bytes") {
				t.Fatalf("a background run with the quota full, %s: %v; want 413 naming max_stored_run_bytes", b.name, err)
			}
		}
		ex, rec, err := run(attacker)
		if err != nil {
			t.Fatalf("the run after the background ones: %v", err)
		}
		if err := keeps(ex, rec, 0); err != nil {
			t.Fatalf("the run after the background ones: %v", err)
		}
		if before, after := last.RateLimit.Remaining, ex.RateLimit.Remaining; after != before-1 {
			t.Fatalf("X-RateLimit-Remaining went from %d to %d over %d refused background runs and one run; want %d",
				before, after, len(bodies), before-1)
		}
		answered += int64(len(ex.Result.Stdout) + len(ex.Result.Stderr))
		if got := storedRuns(attacker, "after the flood"); got != stored {
			t.Fatalf("after the flood the attacker keeps %d bytes of run output, want %d", got, stored)
		}

		// The other user, done with its first run, runs once more: the
		// attacker's full quota is not its.
		testenv.Wait(t, "the other user's run", wg.Wait)
		if otherErr != nil {
			t.Fatalf("the other user's run during the flood: %v", otherErr)
		}
		ex, rec, err = run(other)
		if err == nil {
			err = keeps(ex, rec, perStream)
		}
		if err != nil {
			t.Fatalf("the other user's run after the flood: %v", err)
		}
		otherStored := counted(other, "the other user", 4*perStream)

		testenv.Prove(t, fmt.Sprintf("run output flood against the stored run quota (max_stored_run_bytes %s, max_stored_output_bytes %s, answers of %s), %s",
			wasmwiz.FormatSize(quota), wasmwiz.FormatSize(perStream), wasmwiz.FormatSize(maxOutput), be.name),
			"every answer carries its whole output; the records keep the tier's cap, then what is left of the quota, then nothing, naming max_stored_run_bytes; "+
				"stored run output stays within the quota plus what the last record with room kept of its second stream; "+
				"a background run is 413 ETOOLARGE and spends no rate quota; another user of the tier keeps its output",
			"runs sent", fmt.Sprintf("%d synchronous, %d background (refused)", floods+1, len(bodies)),
			"stored run output", fmt.Sprintf("%s of a %s quota", wasmwiz.FormatSize(stored), wasmwiz.FormatSize(quota)),
			"records", fmt.Sprintf("%d kept the tier's cap, %d cut by the quota, %d kept nothing", kept, cut, empty+1),
			"answers' output", fmt.Sprintf("%s in %d answers", wasmwiz.FormatSize(answered), floods+1),
			"other user's records", fmt.Sprintf("2 runs keep %s of its %s", wasmwiz.FormatSize(otherStored), wasmwiz.FormatSize(quota)))
	})
}
