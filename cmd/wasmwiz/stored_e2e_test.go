package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/hostiletest"
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
			poll(t, fmt.Sprintf("%s's %d bytes of run output to be counted", who, want), func() bool {
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

// TestServeStoredModulesQuota: the attack of issue 9 (a free user storing
// distinct 10 MiB modules one after another) on the real server and
// stores. A free user's uploads are stored until the next one would pass
// the free tier's 20MiB of stored modules; that one is 413 ETOOLARGE naming
// the limit, and what the user stores is as before; deleting a module lets
// the next upload in. /api/v1/usage shows the figures throughout.
func TestServeStoredModulesQuota(t *testing.T) {
	free := wasmwiz.DefaultTiers()[0]
	onEveryBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		s := be.serve(t)
		// The free tier as it is, but for its wall time: compiling 7MiB
		// under CI's load (the race detector, other tests' servers) once
		// took longer than free's 5s, and the quota is what is under test.
		user, _, _ := s.newTierUser(wasmwiz.TierFree, func(t *wasmwiz.Tier) {
			*t = *wasmwiz.DefaultTiers()[0]
			t.Timeout = time.Minute
		})
		hello := testmodule.Read(t, "hello.wasm")
		// Distinct modules of 7MiB: hello.wasm with a custom section
		// of padding, which costs nothing to compile.
		const size = 7 * wasmwiz.MiB
		padded := func(tag string) []byte {
			name := "pad-" + tag
			payload := int(size) - len(hello) - 1 - 4 - 1 - len(name)
			sec := hostiletest.ULEB([]byte{0}, uint64(1+len(name)+payload))
			sec = append(hostiletest.ULEB(sec, uint64(len(name))), name...)
			return append(append(bytes.Clone(hello), sec...), bytes.Repeat([]byte{'x'}, payload)...)
		}
		usage := func(what string) *api.Usage {
			t.Helper()
			u, err := user.Usage(ctx)
			if err != nil {
				t.Fatalf("Usage %s: %v", what, err)
			}
			if u.MaxStoredModules != free.MaxStoredModules || u.MaxStoredModuleBytes != free.MaxStoredModuleBytes {
				t.Fatalf("Usage %s: quota %d modules, %d bytes; want the free tier's %d and %d", what,
					u.MaxStoredModules, u.MaxStoredModuleBytes, free.MaxStoredModules, free.MaxStoredModuleBytes)
			}
			mods, total, err := user.ListModules(ctx, "", client.Page{})
			if err != nil {
				t.Fatalf("ListModules %s: %v", what, err)
			}
			var sum int64
			for _, m := range mods {
				sum += m.SizeBytes
			}
			if int64(total.Count) != u.StoredModules || sum != u.StoredModuleBytes {
				t.Fatalf("%s: the user lists %d modules of %d bytes, usage says %d of %d", what, total.Count, sum, u.StoredModules, u.StoredModuleBytes)
			}
			return u
		}

		var stored []*api.Module
		var refusal error
		for i := range 5 {
			wasm := padded(fmt.Sprint(i))
			if int64(len(wasm)) != size {
				t.Fatalf("padded module is %d bytes, want %d", len(wasm), size)
			}
			m, err := user.CreateModule(ctx, client.ModuleUpload{Wasm: wasm, Name: fmt.Sprint("big-", i)})
			if err != nil {
				refusal = err
				break
			}
			stored = append(stored, m)
		}
		if fit := int(free.MaxStoredModuleBytes / size); len(stored) != fit {
			t.Fatalf("the free user stored %d modules of 7MiB before a refusal (%v), want %d", len(stored), refusal, fit)
		}
		if codeOf(refusal) != wasmwiz.ETOOLARGE {
			t.Fatalf("the upload past the quota: %v, want 413 ETOOLARGE", refusal)
		}
		var ce *client.Error
		if !errors.As(refusal, &ce) || ce.StatusCode != 413 {
			t.Fatalf("the upload past the quota: %v, want HTTP 413", refusal)
		}
		want := "stored modules would be 21MiB, over the free tier's 20MiB (max_stored_module_bytes): 2 stored take 14MiB and this one 7MiB"
		if msg := messageOf(refusal); !strings.Contains(msg, want) {
			t.Fatalf("the refusal says %q, want %q", msg, want)
		}
		u := usage("after the refusal")
		if u.StoredModules != 2 || u.StoredModuleBytes != 2*size {
			t.Fatalf("after the refusal the user stores %d modules of %d bytes, want the 2 of %d before it", u.StoredModules, u.StoredModuleBytes, 2*size)
		}

		// Deleting one frees its share: the next upload is stored.
		if err := user.DeleteModule(ctx, stored[0].ID); err != nil {
			t.Fatalf("DeleteModule: %v", err)
		}
		if u := usage("after the delete"); u.StoredModules != 1 || u.StoredModuleBytes != size {
			t.Fatalf("after the delete the user stores %d modules of %d bytes, want 1 of %d", u.StoredModules, u.StoredModuleBytes, size)
		}
		next, err := user.CreateModule(ctx, client.ModuleUpload{Wasm: padded("next"), Name: "next"})
		if err != nil {
			t.Fatalf("the upload after the delete: %v", err)
		}
		if u := usage("after the next upload"); u.StoredModules != 2 || u.StoredModuleBytes != 2*size {
			t.Fatalf("after the next upload the user stores %d modules of %d bytes, want 2 of %d", u.StoredModules, u.StoredModuleBytes, 2*size)
		}
		ex, err := user.ExecuteModule(ctx, next.ID, nil)
		if err != nil || ex.Result.Status != api.StatusOK || string(ex.Result.Stdout) != "Hello, World!\n" {
			t.Fatalf("running the module stored after the delete: %v", err)
		}
	})
}

// TestServeRetention: runs older than WASMWIZ_RETENTION are deleted by the
// server's retention loop; newer ones stay.
func TestServeRetention(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := backends[0].env(t)
	var runs []*wasmwiz.UsageRecord
	for i := 0; i < 2500; i++ {
		runs = append(runs, pastRun(48*time.Hour))
	}
	fresh := pastRun(time.Hour)
	seedRuns(t, db, append(runs, fresh))

	s := startServe(t, serveEnv(t, db, map[string]string{"WASMWIZ_RETENTION": "24h"}), ServeOptions{RetentionInterval: 50 * time.Millisecond})
	sys := wasmwiz.SystemContext(ctx)
	poll(t, "old runs to be deleted", func() bool {
		st, err := s.srv.Store().Stats(sys, time.Now())
		if err != nil {
			return false
		}
		var total int64
		for _, d := range st.RunsPerDay {
			total += d.Runs
		}
		return total == 1
	})
	if _, err := s.srv.Store().FindRunByID(sys, fresh.ID); err != nil {
		t.Fatalf("the fresh run: %v", err)
	}
	_, err := s.srv.Store().FindRunByID(sys, runs[0].ID)
	wantCode(t, "an old run", err, wasmwiz.ENOTFOUND)
}

// TestServeRetentionZeroKeeps: WASMWIZ_RETENTION=0 keeps every run ("older
// than 0s" would be all of them).
func TestServeRetentionZeroKeeps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := backends[0].env(t)
	old := pastRun(365 * 24 * time.Hour)
	seedRuns(t, db, []*wasmwiz.UsageRecord{old})
	s := startServe(t, serveEnv(t, db, map[string]string{"WASMWIZ_RETENTION": "0", "WASMWIZ_LOG_LEVEL": "info"}), ServeOptions{RetentionInterval: time.Millisecond})
	testenv.WaitFor(t, "the retention loop to decide", func() bool { return strings.Contains(s.stderr.String(), "retention off") })
	if _, err := s.srv.Store().FindRunByID(wasmwiz.SystemContext(ctx), old.ID); err != nil {
		t.Fatalf("a year-old run with retention 0: %v", err)
	}
}

// TestServeRetentionPerTier: a run is kept for its tier's run_retention_ms
// (free 7 days, basic 30) under the default WASMWIZ_RETENTION.
func TestServeRetentionPerTier(t *testing.T) {
	t.Parallel()
	db := backends[0].env(t)
	oldFree, youngFree, oldBasic := pastRun(8*24*time.Hour), pastRun(6*24*time.Hour), pastRun(8*24*time.Hour)
	oldBasic.Tier = wasmwiz.TierBasic
	seedRuns(t, db, []*wasmwiz.UsageRecord{oldFree, youngFree, oldBasic})
	s := startServe(t, serveEnv(t, db), ServeOptions{RetentionInterval: 50 * time.Millisecond})
	sys := wasmwiz.SystemContext(context.Background())
	poll(t, "the free tier's 8-day-old run to be deleted", func() bool {
		_, err := s.srv.Store().FindRunByID(sys, oldFree.ID)
		return wasmwiz.ErrorCode(err) == wasmwiz.ENOTFOUND
	})
	for _, r := range []*wasmwiz.UsageRecord{youngFree, oldBasic} {
		if _, err := s.srv.Store().FindRunByID(sys, r.ID); err != nil {
			t.Errorf("a %s run %v old, within its tier's retention: %v", r.Tier, time.Since(r.CreatedAt).Round(time.Hour), err)
		}
	}
}

// pastRun is a run record made age ago.
func pastRun(age time.Duration) *wasmwiz.UsageRecord {
	return &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(time.Now()), UserID: 1, Tier: "free", Status: wasmwiz.StatusOK,
		ModuleSHA256: strings.Repeat("a", 64), CreatedAt: time.Now().UTC().Add(-age)}
}

// seedRuns writes runs into the database of db (backend variables) before a
// server starts on it.
func seedRuns(t *testing.T, db map[string]string, runs []*wasmwiz.UsageRecord) {
	t.Helper()
	st := openStore(t, db)
	defer st.Close()
	// In batches, as the usage writer writes them: each call has the
	// store's call timeout, which one call of thousands of records passed
	// on a loaded machine under -race.
	for batch := range slices.Chunk(runs, 500) {
		if err := st.CreateRuns(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
}

// openStore opens and migrates the database of db (backend variables), as
// serve would; the caller closes it.
func openStore(t *testing.T, db map[string]string) Store {
	t.Helper()
	ctx := context.Background()
	cfg, err := LoadConfig(func(k string) string { return db[k] })
	if err != nil {
		t.Fatal(err)
	}
	st, err := OpenStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		t.Fatal(err)
	}
	return st
}

// batchBound is a store whose deletes of more than max runs at once fail
// as a call past the store's timeout does (EUNAVAILABLE): a batch too large
// to commit in time.
type batchBound struct {
	Store
	max     int
	batches []int
}

func (b *batchBound) DeleteRunsBefore(ctx context.Context, before time.Time, tier string, limit int) (int, error) {
	b.batches = append(b.batches, limit)
	if limit > b.max {
		return 0, wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "delete runs: database unavailable, retry later")
	}
	return b.Store.DeleteRunsBefore(ctx, before, tier, limit)
}

// TestRetentionShrinksABatchTooLargeToCommit: when a batch of old runs
// cannot be deleted within the store's call timeout, retention tries a
// smaller one at once and keeps that size for the next interval, so that it
// still deletes every old run instead of failing at every interval; after
// batches that finish whole it grows back.
func TestRetentionShrinksABatchTooLargeToCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := backends[0].env(t)
	var runs []*wasmwiz.UsageRecord
	for range 300 {
		runs = append(runs, pastRun(48*time.Hour))
	}
	seedRuns(t, db, runs)
	st := openStore(t, db)
	defer st.Close()
	bound := &batchBound{Store: st, max: 40}
	s := &Server{cfg: &Config{Retention: 24 * time.Hour}, store: bound, log: slog.New(slog.DiscardHandler)}
	if n := s.deleteOldRuns(ctx); n != len(runs) {
		t.Fatalf("deleted %d old runs, want %d (batches %v)", n, len(runs), bound.batches)
	}
	// 1000, 250 and 62 fail; 15 deletes whole batches, each doubling the
	// next, until one over 40 fails and shrinks it again.
	if want := []int{1000, 250, 62, 15}; !slices.Equal(bound.batches[:4], want) {
		t.Fatalf("batches %v, want %v first", bound.batches, want)
	}
	for _, b := range bound.batches {
		if b < minRetentionBatch {
			t.Fatalf("a batch of %d, under the least of %d (batches %v)", b, minRetentionBatch, bound.batches)
		}
	}
	// The next interval starts from the size that worked, not from 1000.
	bound.batches, bound.max = nil, 1000
	s.deleteOldRuns(ctx)
	if first := bound.batches[0]; first > 40 {
		t.Fatalf("the next interval began with a batch of %d (batches %v)", first, bound.batches)
	}
}

// TestServeTenantIsolation: on the real stores, another tenant's modules,
// runs and keys answer 404 ENOTFOUND to every kind of call, none of the
// calls changes them, and a revoked key stops working at once. (Who may
// call which route, and how a key is read, is internal/http's
// TestAuthMatrix and TestAdminRoutesNeedAnAdmin.)
func TestServeTenantIsolation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := backends[0].serve(t)
	alice, _, _ := s.newUser(wasmwiz.TierFree)
	bob, _, _ := s.newUser(wasmwiz.TierFree)
	hello := testmodule.Read(t, "hello.wasm")

	am, err := alice.CreateModule(ctx, client.ModuleUpload{Wasm: hello, Name: "private"})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := alice.CreateModule(ctx, client.ModuleUpload{Wasm: hello, Name: "shared", Public: true})
	if err != nil {
		t.Fatal(err)
	}
	res, err := alice.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
	if err != nil {
		t.Fatal(err)
	}
	poll(t, "alice's run to be written", func() bool { _, err := alice.GetRun(ctx, res.ID); return err == nil })
	aliceKeys, _, err := alice.ListKeys(ctx, false, client.Page{})
	if err != nil || len(aliceKeys) != 1 {
		t.Fatal(err)
	}
	revoked, err := bob.CreateKey(ctx, "old", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.RevokeKey(ctx, revoked.Key.ID); err != nil {
		t.Fatal(err)
	}
	gone := s.client(revoked.Secret)

	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"revoked key", func() error { _, err := gone.Execute(ctx, &client.ExecuteRequest{Wasm: hello}); return err }, wasmwiz.EUNAUTHORIZED},
		{"another user's module", func() error { _, err := bob.GetModule(ctx, am.ID); return err }, wasmwiz.ENOTFOUND},
		{"another user's module, execute", func() error {
			_, err := bob.ExecuteModule(ctx, am.ID, nil)
			return err
		}, wasmwiz.ENOTFOUND},
		{"another user's module by module_id", func() error {
			_, err := bob.Execute(ctx, &client.ExecuteRequest{ModuleID: am.ID})
			return err
		}, wasmwiz.ENOTFOUND},
		{"another user's module, delete", func() error { return bob.DeleteModule(ctx, am.ID) }, wasmwiz.ENOTFOUND},
		{"another user's public module, delete", func() error { return bob.DeleteModule(ctx, pub.ID) }, wasmwiz.ENOTFOUND},
		{"another user's key, revoke", func() error { return bob.RevokeKey(ctx, aliceKeys[0].ID) }, wasmwiz.ENOTFOUND},
		{"another user's run", func() error { _, err := bob.GetRun(ctx, res.ID); return err }, wasmwiz.ENOTFOUND},
		{"a missing module", func() error { _, err := bob.GetModule(ctx, "mod_doesnotexist"); return err }, wasmwiz.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, tt.name, tt.call(), tt.want)
		})
	}

	// What must still hold after all that.
	if _, err := alice.GetModule(ctx, am.ID); err != nil {
		t.Fatalf("alice's module after bob's delete: %v", err)
	}
	if _, err := alice.GetModule(ctx, pub.ID); err != nil {
		t.Fatalf("alice's public module after bob's delete: %v", err)
	}
	if r, err := bob.ExecuteModule(ctx, pub.ID, nil); err != nil || string(r.Result.Stdout) != "Hello, World!\n" {
		t.Fatalf("bob runs alice's public module: %v", err)
	}
	if _, err := alice.Me(ctx); err != nil {
		t.Fatalf("alice's key after bob's revoke: %v", err)
	}
}
