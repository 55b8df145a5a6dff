package storetest

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

var runTests = []test{
	{"CreateRunsRoundTrip", testCreateRunsRoundTrip},
	{"CreateRunsIsIdempotent", testCreateRunsIdempotent},
	{"CreateRunsBumpsModules", testCreateRunsBumpsModules},
	{"CreateRunsOfLargeBatchesCountExactly", testCreateRunsLargeBatches},
	{"CreateRunsRefusesABadBatchWhole", testCreateRunsRefusals},
	{"FindRunByIDOfAnotherUser", testFindRunCrossTenant},
	{"FindRuns", testFindRuns},
	{"Usage", testUsage},
	{"Stats", testStats},
	{"StatsIsForAdmins", testStatsForbidden},
	{"StatsTopModulesAreTen", testStatsTopTen},
	{"DeleteRunsBeforeInBatches", testDeleteRunsBefore},
	{"DeleteRunsBeforeOfOneTier", testDeleteRunsBeforeOfTier},
	{"DailyRuns", testDailyRuns},
	{"DeleteRunsBeforeOnEveryReplicaAtOnce", testDeleteRunsBeforeConcurrently},
}

func testCreateRunsRoundTrip(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierBasic)
	k, _ := e.key(ctx, u.ID, "k", nil)
	m := e.module(ctx, "m", wasmBytes("m"), false)
	at := e.clock.Add(time.Second).Add(123 * time.Millisecond)
	started, finished := at.Add(-20*time.Millisecond), at
	full := &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(at), UserID: u.ID, APIKeyID: k.ID, ModuleID: m.ID, ModuleSHA256: m.SHA256,
		Tier: wasmwiz.TierBasic, Status: wasmwiz.StatusExit, ExitCode: 42, DurationMS: 12.375, CompileMS: 480.125, MemoryPeakBytes: 3 << 20,
		StdinBytes: 1 << 20, OutputBytes: 77, CreatedAt: at,
		State: wasmwiz.RunDone, StartedAt: &started, FinishedAt: &finished,
		RunDetail: wasmwiz.RunDetail{Name: "m.wasm", Args: []string{"-v", "x y"}, EnvNames: []string{"A", "B"},
			StdinSHA256: sha([]byte("in")), Limits: wasmwiz.LimitsMap(wasmwiz.DefaultTiers()[1].Limits),
			CPUMS: 11.25, Trap: "", StdoutTruncated: true, Message: "",
			Results: []wasmwiz.RunValue{{Type: "i32", Value: "-1"}}},
		Stdout: []byte("hello\n"), Stderr: []byte{0xff, 0, 1}}
	trap := run(u.ID, wasmwiz.StatusTrap, 0.25, at, "", sha([]byte("adhoc")))
	refused := run(u.ID, "", 0, at, "", "")
	anon := run(0, wasmwiz.StatusOK, 1, at, "", sha([]byte("adhoc")))
	wantOK(t, e.s.CreateRuns(context.Background(), nil), "CreateRuns of nothing")
	e.runs(full, trap, refused, anon)
	for _, want := range []*wasmwiz.UsageRecord{full, trap, refused} {
		got, err := e.s.FindRunByID(ctx, want.ID)
		wantOK(t, err, "FindRunByID "+want.ID)
		sameRun(t, got, want, "stored run")
		if got.Stdout == nil || got.Stderr == nil {
			t.Fatalf("FindRunByID %s: output missing (nil), want it even when empty", want.ID)
		}
	}
	got, err := e.s.FindRunByID(ctx, full.ID)
	wantOK(t, err, "FindRunByID")
	if string(got.Stdout) != "hello\n" || string(got.Stderr) != "\xff\x00\x01" {
		t.Fatalf("stored output %q %q", got.Stdout, got.Stderr)
	}
	list, _, err := e.s.FindRuns(ctx, wasmwiz.RunFilter{})
	wantOK(t, err, "FindRuns")
	for _, r := range list {
		if r.Stdout != nil || r.Stderr != nil {
			t.Fatalf("FindRuns carries output of %s; lists leave it out", r.ID)
		}
		if r.ID == full.ID && (len(r.Args) != 2 || r.CPUMS != 11.25 || r.State != wasmwiz.RunDone) {
			t.Fatalf("FindRuns lost the detail of a run: %+v", r)
		}
	}
	// An anonymous run belongs to nobody; an admin finds it.
	_, err = e.s.FindRunByID(ctx, anon.ID)
	WantCode(t, err, wasmwiz.ENOTFOUND, "FindRunByID of an anonymous run by a user")
	got, err = e.s.FindRunByID(e.sys, anon.ID)
	wantOK(t, err, "FindRunByID of an anonymous run by an admin")
	sameRun(t, got, anon, "anonymous run")
	_, err = e.s.FindRunByID(e.anon, full.ID)
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "FindRunByID without a caller")
	_, err = e.s.FindRunByID(ctx, wasmwiz.NewRunID(at))
	WantCode(t, err, wasmwiz.ENOTFOUND, "FindRunByID of no run")
}

func testCreateRunsIdempotent(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	m := e.module(ctx, "m", wasmBytes("m"), false)
	at := e.clock.Add(time.Second)
	batch := []*wasmwiz.UsageRecord{
		run(u.ID, wasmwiz.StatusOK, 1, at, m.ID, m.SHA256),
		run(u.ID, wasmwiz.StatusOK, 2, at.Add(time.Millisecond), m.ID, m.SHA256),
		run(u.ID, wasmwiz.StatusTrap, 3, at.Add(2*time.Millisecond), m.ID, m.SHA256),
	}
	e.runs(batch...)
	// The writer retries a batch whose commit it could not confirm, and may
	// send an overlapping one: nothing is counted twice.
	e.runs(batch...)
	extra := run(u.ID, wasmwiz.StatusOK, 4, at.Add(3*time.Millisecond), m.ID, m.SHA256)
	e.runs(batch[2], extra, batch[0])
	// The same id twice in one batch is one run too.
	twice := run(u.ID, wasmwiz.StatusOK, 5, at.Add(4*time.Millisecond), m.ID, m.SHA256)
	e.runs(twice, twice)

	runs, total, err := e.s.FindRuns(ctx, wasmwiz.RunFilter{})
	wantListed(t, "FindRuns after repeated batches", runs, total, err, 5)
	got, err := e.s.FindModuleByID(ctx, m.ID)
	wantOK(t, err, "FindModuleByID")
	if got.RunCount != 5 {
		t.Fatalf("module run count %d after repeated batches of 5 distinct runs, want 5", got.RunCount)
	}
	usage, err := e.s.Usage(ctx, at.Add(time.Second))
	wantOK(t, err, "Usage")
	if usage.RunsToday != 5 {
		t.Fatalf("usage counts %d runs today, want 5", usage.RunsToday)
	}
}

func testCreateRunsBumpsModules(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	m1 := e.module(ctx, "one", wasmBytes("one"), false)
	m2 := e.module(ctx, "two", wasmBytes("two"), false)
	idle := e.module(ctx, "idle", wasmBytes("idle"), false)
	t1 := e.clock.Now().Add(time.Minute)
	t2 := t1.Add(time.Minute)
	e.runs(
		run(u.ID, wasmwiz.StatusOK, 1, t2, m1.ID, m1.SHA256),
		run(u.ID, wasmwiz.StatusTrap, 1, t1, m1.ID, m1.SHA256), // older, in the same batch
		run(u.ID, wasmwiz.StatusOK, 1, t1, m2.ID, m2.SHA256),
		run(u.ID, wasmwiz.StatusOK, 1, t2, "", m1.SHA256), // the same bytes sent ad hoc: not the stored module
		run(u.ID, "", 0, t2, m2.ID, m2.SHA256),            // a refused request did not run the module
	)
	// A later batch with an older record does not move last_run_at back.
	e.runs(run(u.ID, wasmwiz.StatusOK, 1, t1.Add(-time.Hour), m2.ID, m2.SHA256))

	for _, c := range []struct {
		m    *wasmwiz.Module
		runs int64
		last *time.Time
	}{
		{m1, 2, &t2},
		{m2, 2, &t1},
		{idle, 0, nil},
	} {
		got, err := e.s.FindModuleByID(ctx, c.m.ID)
		wantOK(t, err, "FindModuleByID "+c.m.Name)
		if got.RunCount != c.runs || !sameTime(got.LastRunAt, c.last) {
			t.Fatalf("module %s: run count %d, last run %s; want %d and %s", c.m.Name, got.RunCount, fmtTime(got.LastRunAt), c.runs, fmtTime(c.last))
		}
	}
}

// testCreateRunsLargeBatches: a store may write a batch in several
// statements (SQLite: 50 rows each). Batches of more than that, mixing
// stored modules, ad hoc and refused runs, and repeating runs already
// stored across those statements' boundaries, store each run once with its
// own values and bump each module by exactly the runs of it inserted.
func testCreateRunsLargeBatches(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	m1 := e.module(ctx, "one", wasmBytes("one"), false)
	m2 := e.module(ctx, "two", wasmBytes("two"), false)
	at := e.clock.Now()
	const n = 230
	var batch []*wasmwiz.UsageRecord
	wantRuns := map[string]int64{}
	wantLast := map[string]time.Time{}
	executed := 0
	for i := range n {
		status := wasmwiz.StatusOK
		if i%7 == 6 {
			status = "" // refused: does not count as a run of its module
		}
		m := []*wasmwiz.Module{m1, m2, nil}[i%3]
		created := at.Add(time.Duration(i) * time.Millisecond)
		r := run(u.ID, status, float64(i), created, "", sha([]byte("adhoc")))
		r.Args = []string{fmt.Sprint("run ", i)}
		if m != nil {
			r.ModuleID, r.ModuleSHA256 = m.ID, m.SHA256
			if status != "" {
				wantRuns[m.ID]++
				wantLast[m.ID] = created
			}
		}
		if status != "" {
			executed++
		}
		batch = append(batch, r)
	}
	e.runs(batch[:75]...)
	// The whole batch again, with runs already stored inside it and at its
	// end, after a chunk boundary.
	again := append(append([]*wasmwiz.UsageRecord{}, batch...), batch[40:60]...)
	e.runs(again...)
	e.runs(batch[100:180]...)

	_, total, err := e.s.FindRuns(ctx, wasmwiz.RunFilter{Limit: 1})
	wantOK(t, err, "FindRuns")
	if total != (wasmwiz.ListTotal{Count: n}) {
		t.Fatalf("%s runs stored after repeated large batches of %d distinct runs", total, n)
	}
	for _, i := range []int{0, 49, 50, 51, 74, 75, 99, 100, 149, 150, 199, 200, n - 1} {
		got, err := e.s.FindRunByID(ctx, batch[i].ID)
		wantOK(t, err, "FindRunByID")
		sameRun(t, got, batch[i], fmt.Sprint("run ", i, " of a large batch"))
	}
	for _, m := range []*wasmwiz.Module{m1, m2} {
		got, err := e.s.FindModuleByID(ctx, m.ID)
		wantOK(t, err, "FindModuleByID "+m.Name)
		last := wantLast[m.ID]
		if got.RunCount != wantRuns[m.ID] || !sameTime(got.LastRunAt, &last) {
			t.Fatalf("module %s: run count %d, last run %s; want %d and %s", m.Name, got.RunCount, fmtTime(got.LastRunAt), wantRuns[m.ID], fmtTime(&last))
		}
	}
	usage, err := e.s.Usage(ctx, at.Add(time.Second))
	wantOK(t, err, "Usage")
	if usage.RunsToday != int64(executed) {
		t.Fatalf("usage counts %d runs today, want %d", usage.RunsToday, executed)
	}
}

func testCreateRunsRefusals(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	at := e.clock.Now()
	good := run(u.ID, wasmwiz.StatusOK, 1, at, "", "")
	bad := run(u.ID, wasmwiz.StatusOK, 1, at, "", "")
	bad.ID = ""
	WantCode(t, e.s.CreateRuns(context.Background(), []*wasmwiz.UsageRecord{good, bad}), wasmwiz.EINVALID, "CreateRuns with a run without id")
	_, total, err := e.s.FindRuns(ctx, wasmwiz.RunFilter{})
	wantOK(t, err, "FindRuns")
	if total != (wasmwiz.ListTotal{Count: 0}) {
		t.Fatalf("a refused batch stored %s runs; a batch is one transaction", total)
	}
}

func testFindRunCrossTenant(t *testing.T, e *env) {
	owner, ownerCtx := e.user("owner@example.com", wasmwiz.TierFree)
	_, otherCtx := e.user("other@example.com", wasmwiz.TierFree)
	_, admin := e.admin("root@example.com")
	r := run(owner.ID, wasmwiz.StatusOK, 1, e.clock.Now(), "", "")
	e.runs(r)
	_, err := e.s.FindRunByID(otherCtx, r.ID)
	WantCode(t, err, wasmwiz.ENOTFOUND, "FindRunByID of another user's run")
	missing := wasmwiz.NewRunID(e.clock.Now())
	_, err2 := e.s.FindRunByID(otherCtx, missing)
	sameAnswer(t, err, r.ID, err2, missing, "FindRunByID")
	runs, total, err := e.s.FindRuns(otherCtx, wasmwiz.RunFilter{})
	wantListed(t, "FindRuns of the other user", runs, total, err, 0)
	got, err := e.s.FindRunByID(admin, r.ID)
	wantOK(t, err, "FindRunByID by an admin")
	sameRun(t, got, r, "run found by an admin")
	got, err = e.s.FindRunByID(ownerCtx, r.ID)
	wantOK(t, err, "FindRunByID by the owner")
	sameRun(t, got, r, "run found by its owner")
	// An admin's FindRuns lists the admin's own runs.
	runs, total, err = e.s.FindRuns(admin, wasmwiz.RunFilter{})
	wantListed(t, "FindRuns of an admin (others' runs)", runs, total, err, 0)
}

func testFindRuns(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	other, _ := e.user("other@example.com", wasmwiz.TierFree)
	base := e.clock.Now()
	statuses := []wasmwiz.Status{wasmwiz.StatusOK, wasmwiz.StatusTrap, wasmwiz.StatusOK, wasmwiz.StatusTimeout, "", wasmwiz.StatusOK}
	var mine []*wasmwiz.UsageRecord // oldest first, one a minute
	for i, st := range statuses {
		mine = append(mine, run(u.ID, st, float64(i), base.Add(time.Duration(i)*time.Minute), "", ""))
	}
	// Two runs in one millisecond: the later id is the newer.
	same := base.Add(10 * time.Minute)
	r6, r7 := run(u.ID, wasmwiz.StatusOK, 7, same, "", ""), run(u.ID, wasmwiz.StatusOK, 8, same, "", "")
	if r7.ID < r6.ID { // other tests made ids in between
		r6.ID, r7.ID = r7.ID, r6.ID
	}
	mine = append(mine, r6, r7)
	e.runs(mine...)
	e.runs(run(other.ID, wasmwiz.StatusOK, 1, base, "", ""), run(other.ID, wasmwiz.StatusTrap, 1, base.Add(time.Minute), "", ""))

	rev := func(idx ...int) []*wasmwiz.UsageRecord {
		var out []*wasmwiz.UsageRecord
		for _, i := range idx {
			out = append(out, mine[i])
		}
		return out
	}
	tests := []struct {
		name   string
		filter wasmwiz.RunFilter
		want   []*wasmwiz.UsageRecord
		total  int
	}{
		{"all, newest first", wasmwiz.RunFilter{}, rev(7, 6, 5, 4, 3, 2, 1, 0), 8},
		{"first page", wasmwiz.RunFilter{Limit: 3}, rev(7, 6, 5), 8},
		{"second page", wasmwiz.RunFilter{Limit: 3, Offset: 3}, rev(4, 3, 2), 8},
		{"last page", wasmwiz.RunFilter{Limit: 3, Offset: 6}, rev(1, 0), 8},
		{"last page, full", wasmwiz.RunFilter{Limit: 2, Offset: 6}, rev(1, 0), 8},
		{"past the end", wasmwiz.RunFilter{Limit: 3, Offset: 9}, nil, 8},
		{"status ok", wasmwiz.RunFilter{Status: wasmwiz.StatusOK}, rev(7, 6, 5, 2, 0), 5},
		{"status trap", wasmwiz.RunFilter{Status: wasmwiz.StatusTrap}, rev(1), 1},
		{"status memory_limit", wasmwiz.RunFilter{Status: wasmwiz.StatusMemoryLimit}, nil, 0},
		{"since (inclusive)", wasmwiz.RunFilter{Since: base.Add(3 * time.Minute)}, rev(7, 6, 5, 4, 3), 5},
		{"until (exclusive)", wasmwiz.RunFilter{Until: base.Add(3 * time.Minute)}, rev(2, 1, 0), 3},
		{"between", wasmwiz.RunFilter{Since: base.Add(time.Minute), Until: base.Add(4 * time.Minute)}, rev(3, 2, 1), 3},
		{"between, ok, paged", wasmwiz.RunFilter{Status: wasmwiz.StatusOK, Since: base.Add(time.Millisecond), Limit: 2, Offset: 1}, rev(6, 5), 4},
		{"empty range", wasmwiz.RunFilter{Since: base.Add(time.Hour)}, nil, 0},
	}
	for _, tt := range tests {
		got, total, err := e.s.FindRuns(ctx, tt.filter)
		wantOK(t, err, "FindRuns "+tt.name)
		if len(got) != len(tt.want) || total != (wasmwiz.ListTotal{Count: tt.total}) {
			t.Fatalf("FindRuns %s: %d runs, total %s; want %d and %d", tt.name, len(got), total, len(tt.want), tt.total)
		}
		for i := range got {
			sameRun(t, got[i], tt.want[i], fmt.Sprintf("FindRuns %s, run %d", tt.name, i))
		}
	}
	_, _, err := e.s.FindRuns(e.anon, wasmwiz.RunFilter{})
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "FindRuns without a caller")
}

func testUsage(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierBasic)
	other, _ := e.user("other@example.com", wasmwiz.TierBasic)
	now := time.Date(2026, 11, 27, 15, 30, 0, 0, time.UTC)
	midnight := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	e.runs(
		run(u.ID, wasmwiz.StatusOK, 1, midnight.Add(-time.Millisecond), "", ""),        // yesterday
		run(u.ID, wasmwiz.StatusOK, 1, midnight, "", ""),                               // today's first millisecond
		run(u.ID, wasmwiz.StatusTrap, 1, midnight.Add(9*time.Hour), "", ""),            // today
		run(u.ID, wasmwiz.StatusOK, 1, now.Add(-time.Minute), "", ""),                  // today, a minute ago: not this minute
		run(u.ID, wasmwiz.StatusOK, 1, now.Add(-time.Minute+time.Millisecond), "", ""), // this minute
		run(u.ID, wasmwiz.StatusTimeout, 1, now, "", ""),                               // this minute
		run(u.ID, "", 0, now.Add(-time.Second), "", ""),                                // refused: not counted
		run(other.ID, wasmwiz.StatusOK, 1, now.Add(-time.Second), "", ""),              // another user's
	)
	e.module(ctx, "a", wasmBytes("a"), false)
	e.module(ctx, "b", wasmBytes("bb"), true)
	e.module(wasmwiz.NewContextWithUser(context.Background(), other), "c", wasmBytes("c"), false) // another user's
	got, err := e.s.Usage(ctx, now)
	wantOK(t, err, "Usage")
	want := wasmwiz.Usage{Tier: wasmwiz.TierBasic, RunsToday: 5, RunsPerDay: 10_000, RunsThisMinute: 2, RunsPerMinute: 100,
		Stored: wasmwiz.StoredModules{Count: 2, Bytes: 19}, MaxStoredModules: 100, MaxStoredModuleBytes: 200 * wasmwiz.MiB,
		MaxStoredRunBytes: wasmwiz.GiB}
	if *got != want {
		t.Fatalf("Usage = %+v, want %+v", *got, want)
	}
	// At the start of the next day, nothing of today counts.
	got, err = e.s.Usage(ctx, midnight.Add(24*time.Hour))
	wantOK(t, err, "Usage tomorrow")
	if got.RunsToday != 0 || got.RunsThisMinute != 0 {
		t.Fatalf("Usage at the next midnight = %+v, want no runs", *got)
	}
	_, err = e.s.Usage(e.anon, now)
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "Usage without a caller")
}

// testStats checks admin totals on a dataset made to be counted by hand.
func testStats(t *testing.T, e *env) {
	_, admin := e.admin("root@example.com")
	a, aCtx := e.user("a@example.com", wasmwiz.TierFree)
	b, bCtx := e.user("b@example.com", wasmwiz.TierFree)
	c, cCtx := e.user("c@example.com", wasmwiz.TierFree)
	// Keys at 10:00: active ones of a, b and the admin's none; a revoked
	// one; one expiring at 11:00; one of c, whom we disable.
	e.key(aCtx, a.ID, "active", nil)
	revoked, _ := e.key(aCtx, a.ID, "revoked", nil)
	wantOK(t, e.revoke(aCtx, revoked.ID), "RevokeAPIKey")
	exp := Start.Add(time.Hour)
	e.key(aCtx, a.ID, "expiring", &exp)
	e.key(bCtx, b.ID, "active", nil)
	e.key(cCtx, c.ID, "disabled", nil)
	_, err := e.s.UpdateUser(admin, c.ID, wasmwiz.UserUpdate{Disabled: ptr(true)})
	wantOK(t, err, "disable c")

	mA := e.module(aCtx, "a", wasmBytes("a"), false)
	mB := e.module(bCtx, "b", wasmBytes("b"), false)
	shaX := sha([]byte("ad hoc"))
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	today := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	var runs []*wasmwiz.UsageRecord
	// Today: a ran 20 times, 1..20 ms, every fifth a trap; 12 of its stored
	// module, 8 ad hoc. b ran once, 21 ms, its stored module. One refused.
	for i := range 20 {
		st := wasmwiz.StatusOK
		if i%5 == 4 {
			st = wasmwiz.StatusTrap
		}
		mod, s := mA.ID, mA.SHA256
		if i >= 12 {
			mod, s = "", shaX
		}
		runs = append(runs, run(a.ID, st, float64(i+1), today.Add(time.Duration(i)*time.Minute), mod, s))
	}
	runs = append(runs, run(b.ID, wasmwiz.StatusOK, 21, today.Add(11*time.Hour), mB.ID, mB.SHA256))
	runs = append(runs, run(a.ID, "", 0, today.Add(11*time.Hour), "", ""))
	// Yesterday: b ran its module 3 times. 29 days ago (the first of the
	// 30 days): a's module twice. 30 days ago: outside the window.
	for i := range 3 {
		runs = append(runs, run(b.ID, wasmwiz.StatusOK, 1000, today.Add(-time.Duration(i+1)*time.Hour), mB.ID, mB.SHA256))
	}
	runs = append(runs,
		run(a.ID, wasmwiz.StatusOK, 1000, today.AddDate(0, 0, -29), mA.ID, mA.SHA256),
		run(a.ID, wasmwiz.StatusOK, 1000, today.AddDate(0, 0, -29).Add(23*time.Hour), mA.ID, mA.SHA256),
		run(a.ID, wasmwiz.StatusOK, 1000, today.AddDate(0, 0, -29).Add(-time.Millisecond), "", shaX))
	e.runs(runs...)

	e.clock.Set(now)
	st, err := e.s.Stats(admin, now)
	wantOK(t, err, "Stats")
	if st.Users != 4 || st.ActiveKeys != 2 || st.RunsToday != 21 || st.ActiveUsersToday != 2 {
		t.Fatalf("Stats: users %d, active keys %d, runs today %d, active users today %d; want 4, 2, 21, 2",
			st.Users, st.ActiveKeys, st.RunsToday, st.ActiveUsersToday)
	}
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-9 }
	if !near(st.SuccessRate, 17.0/21) || !near(st.MeanDurationMS, 11) || !near(st.P95DurationMS, 20) {
		t.Fatalf("Stats: success rate %v, mean %v ms, p95 %v ms; want 17/21, 11, 20 (ceil(0.95*21) = 20th of 1..21)",
			st.SuccessRate, st.MeanDurationMS, st.P95DurationMS)
	}
	if len(st.RunsPerDay) != 30 {
		t.Fatalf("RunsPerDay has %d days, want 30", len(st.RunsPerDay))
	}
	for i, d := range st.RunsPerDay {
		wantDay := today.AddDate(0, 0, i-29).Format("2006-01-02")
		wantRuns := map[int]int64{0: 2, 28: 3, 29: 21}[i]
		if d.Day != wantDay || d.Runs != wantRuns {
			t.Fatalf("RunsPerDay[%d] = %s %d, want %s %d", i, d.Day, d.Runs, wantDay, wantRuns)
		}
	}
	wantTop := []wasmwiz.ModuleCount{
		{ModuleSHA256: mA.SHA256, ModuleID: mA.ID, Runs: 14},
		{ModuleSHA256: shaX, Runs: 8},
		{ModuleSHA256: mB.SHA256, ModuleID: mB.ID, Runs: 4},
	}
	if fmt.Sprint(st.TopModules) != fmt.Sprint(wantTop) {
		t.Fatalf("TopModules = %+v, want %+v", st.TopModules, wantTop)
	}

	// With no run today, the rates are zero, not NaN.
	st, err = e.s.Stats(admin, now.AddDate(0, 0, 2))
	wantOK(t, err, "Stats two days later")
	if st.RunsToday != 0 || st.SuccessRate != 0 || st.MeanDurationMS != 0 || st.P95DurationMS != 0 || st.ActiveUsersToday != 0 {
		t.Fatalf("Stats of a day without runs: %+v", st)
	}
}

func testStatsForbidden(t *testing.T, e *env) {
	_, ctx := e.user("u@example.com", wasmwiz.TierFree)
	_, err := e.s.Stats(ctx, e.clock.Now())
	WantCode(t, err, wasmwiz.EFORBIDDEN, "Stats by a user")
	_, err = e.s.Stats(e.anon, e.clock.Now())
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "Stats without a caller")
}

func testDeleteRunsBefore(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	m := e.module(ctx, "m", wasmBytes("m"), false)
	cutoff := e.clock.Now().AddDate(0, 0, -30)
	var old, kept []*wasmwiz.UsageRecord
	for i := range 25 {
		old = append(old, run(u.ID, wasmwiz.StatusOK, 1, cutoff.Add(-time.Duration(i+1)*time.Minute), m.ID, m.SHA256))
	}
	kept = append(kept, run(u.ID, wasmwiz.StatusOK, 1, cutoff, m.ID, m.SHA256), run(0, wasmwiz.StatusOK, 1, cutoff.Add(time.Hour), "", ""))
	e.runs(append(old, kept...)...)

	var got []int
	for {
		n, err := e.s.DeleteRunsBefore(context.Background(), cutoff, "", 10)
		wantOK(t, err, "DeleteRunsBefore")
		got = append(got, n)
		if n == 0 || len(got) > 10 {
			break
		}
	}
	if fmt.Sprint(got) != "[10 10 5 0]" {
		t.Fatalf("DeleteRunsBefore batches deleted %v, want [10 10 5 0]", got)
	}
	for _, r := range old {
		_, err := e.s.FindRunByID(e.sys, r.ID)
		WantCode(t, err, wasmwiz.ENOTFOUND, "FindRunByID of a deleted run")
	}
	for _, r := range kept {
		_, err := e.s.FindRunByID(e.sys, r.ID)
		wantOK(t, err, "FindRunByID of a run at or after the cutoff")
	}
	// Retention is about records: the module keeps its count.
	mod, err := e.s.FindModuleByID(ctx, m.ID)
	wantOK(t, err, "FindModuleByID")
	if mod.RunCount != 26 {
		t.Fatalf("module run count %d after retention, want 26", mod.RunCount)
	}
	_, err = e.s.DeleteRunsBefore(context.Background(), cutoff, "", 0)
	WantCode(t, err, wasmwiz.EINVALID, "DeleteRunsBefore with batch 0")
}

// testDeleteRunsBeforeOfTier: retention per tier deletes the old runs of
// that tier only.
func testDeleteRunsBeforeOfTier(t *testing.T, e *env) {
	u, _ := e.user("u@example.com", wasmwiz.TierFree)
	cutoff := e.clock.Now().AddDate(0, 0, -7)
	oldFree := run(u.ID, wasmwiz.StatusOK, 1, cutoff.Add(-time.Hour), "", "")
	oldBasic := run(u.ID, wasmwiz.StatusOK, 1, cutoff.Add(-time.Hour), "", "")
	oldBasic.Tier = wasmwiz.TierBasic
	newFree := run(u.ID, wasmwiz.StatusOK, 1, cutoff.Add(time.Hour), "", "")
	e.runs(oldFree, oldBasic, newFree)
	n, err := e.s.DeleteRunsBefore(context.Background(), cutoff, wasmwiz.TierFree, 10)
	wantOK(t, err, "DeleteRunsBefore of the free tier")
	if n != 1 {
		t.Fatalf("DeleteRunsBefore of the free tier deleted %d runs, want 1", n)
	}
	_, err = e.s.FindRunByID(e.sys, oldFree.ID)
	WantCode(t, err, wasmwiz.ENOTFOUND, "FindRunByID of the deleted free run")
	for _, r := range []*wasmwiz.UsageRecord{oldBasic, newFree} {
		_, err := e.s.FindRunByID(e.sys, r.ID)
		wantOK(t, err, "FindRunByID of a run of another tier or after the cutoff")
	}
}

func testStatsTopTen(t *testing.T, e *env) {
	u, _ := e.user("u@example.com", wasmwiz.TierFree)
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	// 12 ad-hoc modules: module i ran i+1 times, module 11 as often as 10.
	var runs []*wasmwiz.UsageRecord
	var shas []string
	for i := range 12 {
		s := sha([]byte(fmt.Sprint("module", i)))
		shas = append(shas, s)
		for range min(i, 10) + 1 {
			runs = append(runs, run(u.ID, wasmwiz.StatusOK, 1, now.Add(-time.Hour), "", s))
		}
	}
	e.runs(runs...)
	st, err := e.s.Stats(e.sys, now)
	wantOK(t, err, "Stats")
	if len(st.TopModules) != 10 {
		t.Fatalf("TopModules lists %d modules, want 10", len(st.TopModules))
	}
	// 11 runs each: modules 10 and 11, ordered by sha256; then 10 runs, 9, ...
	first := []string{shas[10], shas[11]}
	if first[0] > first[1] {
		first[0], first[1] = first[1], first[0]
	}
	for i, mc := range st.TopModules {
		want, wantRuns := "", int64(0)
		switch {
		case i < 2:
			want, wantRuns = first[i], 11
		default:
			want, wantRuns = shas[11-i], int64(12-i)
		}
		if mc.ModuleSHA256 != want || mc.Runs != wantRuns || mc.ModuleID != "" {
			t.Fatalf("TopModules[%d] = %+v, want %s with %d runs", i, mc, want, wantRuns)
		}
	}
}

// testDeleteRunsBeforeConcurrently: replicas running retention at the same
// time share the work; together they delete each old run once.
func testDeleteRunsBeforeConcurrently(t *testing.T, e *env) {
	u, _ := e.user("u@example.com", wasmwiz.TierFree)
	cutoff := e.clock.Now().AddDate(0, 0, -30)
	var runs []*wasmwiz.UsageRecord
	for i := range 300 {
		runs = append(runs, run(u.ID, wasmwiz.StatusOK, 1, cutoff.Add(-time.Duration(i+1)*time.Second), "", ""))
	}
	keep := run(u.ID, wasmwiz.StatusOK, 1, cutoff, "", "")
	e.runs(append(runs, keep)...)

	const replicas = 4
	var wg sync.WaitGroup
	deleted := make([]int, replicas)
	errs := make([]error, replicas)
	for i := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n, err := e.s.DeleteRunsBefore(context.Background(), cutoff, "", 7)
				if err != nil {
					errs[i] = err
					return
				}
				if n == 0 {
					return
				}
				deleted[i] += n
			}
		}()
	}
	wg.Wait()
	total := 0
	for i := range replicas {
		wantOK(t, errs[i], fmt.Sprintf("DeleteRunsBefore on replica %d", i))
		total += deleted[i]
	}
	if total != len(runs) {
		t.Fatalf("replicas deleted %d runs together (%v), want %d", total, deleted, len(runs))
	}
	_, err := e.s.FindRunByID(e.sys, keep.ID)
	wantOK(t, err, "FindRunByID of the run at the cutoff")
}

func testDailyRuns(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	o, _ := e.user("o@example.com", wasmwiz.TierFree)
	now := e.clock.Now()
	yesterday := now.AddDate(0, 0, -1)
	var runs []*wasmwiz.UsageRecord
	for i := 1; i <= 20; i++ {
		runs = append(runs, run(u.ID, wasmwiz.StatusOK, float64(i), now.Add(-time.Duration(i)*time.Minute), "", "s"))
	}
	runs = append(runs,
		run(u.ID, wasmwiz.StatusExit, 100, now.Add(-time.Hour), "", "s"),
		run(u.ID, "", 0, now.Add(-time.Hour), "", ""),                  // refused: not counted
		run(o.ID, wasmwiz.StatusOK, 5, now.Add(-time.Hour), "", "s"),   // another tenant's
		run(u.ID, wasmwiz.StatusTrap, 7, yesterday, "", "s"),           // yesterday
		run(u.ID, wasmwiz.StatusOK, 9, now.AddDate(0, 0, -3), "", "s"), // before the window
	)
	e.runs(runs...)
	days, err := e.s.DailyRuns(ctx, now, 2)
	wantOK(t, err, "DailyRuns")
	if len(days) != 2 || days[1].Day != now.Format("2006-01-02") || days[0].Day != yesterday.Format("2006-01-02") {
		t.Fatalf("days %+v", days)
	}
	if d := days[0]; d.ByStatus[wasmwiz.StatusTrap] != 1 || len(d.ByStatus) != 1 || d.P50DurationMS != 7 || d.P99DurationMS != 7 {
		t.Fatalf("yesterday %+v", d)
	}
	d := days[1]
	if d.ByStatus[wasmwiz.StatusOK] != 20 || d.ByStatus[wasmwiz.StatusExit] != 1 || len(d.ByStatus) != 2 {
		t.Fatalf("today by status %v", d.ByStatus)
	}
	// 21 durations 1..20 and 100: nearest rank ceil(p·21/100).
	if d.P50DurationMS != 11 || d.P95DurationMS != 20 || d.P99DurationMS != 100 {
		t.Fatalf("today percentiles %v %v %v, want 11 20 100", d.P50DurationMS, d.P95DurationMS, d.P99DurationMS)
	}
	_, err = e.s.DailyRuns(ctx, now, 91)
	WantCode(t, err, wasmwiz.EINVALID, "DailyRuns of 91 days")
	_, err = e.s.DailyRuns(e.anon, now, 7)
	WantCode(t, err, wasmwiz.EUNAUTHORIZED, "DailyRuns without a caller")
}
