package storetest

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// Migrating is a store that can be migrated one step at a time.
type Migrating interface {
	Store
	// MigrateTo applies the migrations up to version (0: all).
	MigrateTo(ctx context.Context, version int) error
	// MigrationVersions returns the versions applied, in order.
	MigrationVersions(ctx context.Context) ([]int, error)
}

// RunMigrations checks a store's migrations: newEmpty returns a store that
// was opened but never migrated. The migrations apply one at a time, each
// exactly once and in order, and the database they leave has the default
// tiers of wasmwiz.DefaultTiers, every limit included: migrations seed with
// frozen SQL, and this is what keeps that SQL and DefaultTiers the same.
// Migrating an up-to-date database again does nothing: it neither re-seeds
// a tier an admin changed nor records a version twice, and no migration
// creates a user.
func RunMigrations(t *testing.T, newEmpty func(t *testing.T) Migrating) {
	t.Run("StepByStepEqualsDefaults", func(t *testing.T) {
		t.Parallel()
		s := newEmpty(t)
		ctx := context.Background()
		var want []int
		for v := 1; ; v++ {
			if err := s.MigrateTo(ctx, v); err != nil {
				t.Fatalf("MigrateTo(%d): %v", v, err)
			}
			got, err := s.MigrationVersions(ctx)
			wantOK(t, err, "MigrationVersions")
			if len(got) < v {
				if !slices.Equal(got, want) {
					t.Fatalf("after the last step: versions %v, want %v", got, want)
				}
				break
			}
			want = append(want, v)
			if !slices.Equal(got, want) {
				t.Fatalf("after MigrateTo(%d): versions %v, want %v", v, got, want)
			}
			// Again: nothing more happens.
			if err := s.MigrateTo(ctx, v); err != nil {
				t.Fatalf("MigrateTo(%d) again: %v", v, err)
			}
			if v > 1000 {
				t.Fatal("migrations never end")
			}
		}
		if len(want) == 0 {
			t.Fatal("no migration applied")
		}
		if err := s.MigrateTo(ctx, 0); err != nil {
			t.Fatalf("Migrate after every step: %v", err)
		}
		sys := wasmwiz.SystemContext(ctx)
		tiers, err := s.ListTiers(sys)
		wantOK(t, err, "ListTiers")
		defaults := wasmwiz.DefaultTiers()
		if len(tiers) != len(defaults) {
			t.Fatalf("a new database has %d tiers, want the %d defaults", len(tiers), len(defaults))
		}
		for _, d := range defaults {
			got, err := s.FindTier(sys, d.Name)
			wantOK(t, err, "FindTier "+d.Name)
			for _, f := range wasmwiz.TierFields() {
				if g, w := f.Get(got), f.Get(d); g != w {
					t.Errorf("tier %s: migrations seed %s = %s, DefaultTiers says %s", d.Name, f.Name, f.Format(g), f.Format(w))
				}
			}
		}
	})
	t.Run("StoredRunOutputIsBackfilled", func(t *testing.T) {
		t.Parallel()
		testStoredRunsBackfill(t, newEmpty(t))
	})
	t.Run("ModuleSummaryIsBackfilled", func(t *testing.T) {
		t.Parallel()
		testModuleSummaryBackfill(t, newEmpty(t))
	})
	t.Run("WebhookAttemptsOfDeletedRunsAreDeleted", func(t *testing.T) {
		t.Parallel()
		testWebhookDeliveriesRunKey(t, newEmpty(t))
	})
	t.Run("AgainKeepsAdminChanges", func(t *testing.T) {
		t.Parallel()
		s := newEmpty(t)
		ctx := context.Background()
		sys := wasmwiz.SystemContext(ctx)
		if err := s.MigrateTo(ctx, 0); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		before, err := s.MigrationVersions(ctx)
		wantOK(t, err, "MigrationVersions")
		free, err := s.FindTier(sys, wasmwiz.TierFree)
		wantOK(t, err, "FindTier")
		free.RunsPerDay = 7
		wantOK(t, s.PutTier(sys, free), "PutTier")
		for range 3 {
			if err := s.MigrateTo(ctx, 0); err != nil {
				t.Fatalf("Migrate again: %v", err)
			}
		}
		after, err := s.MigrationVersions(ctx)
		wantOK(t, err, "MigrationVersions")
		if !slices.Equal(after, before) {
			t.Fatalf("migrating again recorded %v, before %v", after, before)
		}
		got, err := s.FindTier(sys, wasmwiz.TierFree)
		wantOK(t, err, "FindTier")
		if got.RunsPerDay != 7 {
			t.Fatalf("migrating again reseeded the free tier: runs per day %d, want the admin's 7", got.RunsPerDay)
		}
		if n, err := s.CountUsers(ctx); err != nil || n != 0 {
			t.Fatalf("migrations created %d users (%v); no user or key is ever seeded", n, err)
		}
	})
}

// testStoredRunsBackfill: the run output kept before migration 0014 (the
// records of synchronous and background runs, files included, and the
// pieces of a running run) is what run_output_usage holds after it, per
// user; pieces left before it count to their run's user when they go.
func testStoredRunsBackfill(t *testing.T, s Migrating) {
	ctx := context.Background()
	if err := s.MigrateTo(ctx, 13); err != nil {
		t.Fatalf("MigrateTo(13): %v", err)
	}
	const a, b = 42, 43
	at := time.Now().UTC().Add(-time.Hour)
	rec := func(user int64, at time.Time, stdout, stderr string) *wasmwiz.UsageRecord {
		return withOutput(run(user, wasmwiz.StatusOK, 1, at, "", ""), stdout, stderr)
	}
	wantOK(t, s.CreateRuns(ctx, []*wasmwiz.UsageRecord{rec(a, at, "hello", "err"), rec(b, at.Add(time.Millisecond), "x", "")}),
		"CreateRuns before 0014")
	// A background run that started before 0014, written as a record
	// (CreateRuns keeps its state) rather than through QueueRun and
	// StartRun, whose run_inputs columns later migrations extend.
	queue := func(at time.Time) *wasmwiz.UsageRecord {
		t.Helper()
		started := at.Add(time.Millisecond)
		r := &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(at), UserID: a, Tier: wasmwiz.TierFree, CreatedAt: at,
			State: wasmwiz.RunRunning, StartedAt: &started, RunDetail: wasmwiz.RunDetail{Async: true}}
		wantOK(t, s.CreateRuns(ctx, []*wasmwiz.UsageRecord{r}), "a running background run before 0014")
		return r
	}
	done := queue(at.Add(2 * time.Millisecond))
	done.State, done.Status, done.Stdout = wasmwiz.RunDone, wasmwiz.StatusOK, []byte("abc")
	done.Files = []wasmwiz.OutputFile{{Path: "out/f", Size: 5, SHA256: "ab", Data: []byte("12345")}}
	enc, err := wasmwiz.EncodeOutputFiles(done.Files)
	wantOK(t, err, "EncodeOutputFiles")
	if ok, err := s.FinishRun(ctx, done, nil); err != nil || !ok {
		t.Fatalf("FinishRun before 0014: %v %v", ok, err)
	}
	running := queue(at.Add(3 * time.Millisecond))
	pieces, ok := s.(OutputPieces)
	if !ok {
		t.Fatalf("store %T does not show its output pieces (storetest.OutputPieces)", s)
	}
	wantOK(t, pieces.LeaveOutputChunkForTest(ctx, running.ID), "LeaveOutputChunkForTest before 0014") // 4 bytes

	if err := s.MigrateTo(ctx, 0); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	wantStored := func(user, want int64, when string) {
		t.Helper()
		got, err := s.StoredRunBytes(ctx, user)
		wantOK(t, err, "StoredRunBytes")
		if got != want {
			t.Fatalf("%s: StoredRunBytes(%d) = %d, want %d", when, user, got, want)
		}
	}
	records := int64(8 + 3 + len(enc))
	wantStored(a, records+4, "after the migration")
	wantStored(b, 1, "another user after the migration")
	running.State, running.Status = wasmwiz.RunDone, wasmwiz.StatusOK
	if ok, err := s.FinishRun(ctx, running, nil); err != nil || !ok {
		t.Fatalf("FinishRun after 0014: %v %v", ok, err)
	}
	wantStored(a, records, "after the running run's pieces went")
	for {
		n, err := s.DeleteRunsBefore(ctx, at.Add(time.Hour+time.Minute), "", 100)
		wantOK(t, err, "DeleteRunsBefore")
		if n == 0 {
			break
		}
	}
	wantStored(a, 0, "after retention")
	wantStored(b, 0, "another user after retention")
}

// MigrationNames is a store that knows its migrations by name.
type MigrationNames interface {
	// MigrationVersion returns the version of the migration NNNN_name.sql.
	MigrationVersion(name string) int
}

// migrateBefore migrates s up to the migration before NNNN_name.sql.
func migrateBefore(t *testing.T, s Migrating, name string) {
	t.Helper()
	names, ok := s.(MigrationNames)
	if !ok {
		t.Fatalf("store %T does not name its migrations (storetest.MigrationNames)", s)
	}
	v := names.MigrationVersion(name)
	if v == 0 {
		t.Fatalf("no %s migration", name)
	}
	if err := s.MigrateTo(context.Background(), v-1); err != nil {
		t.Fatalf("MigrateTo(%d): %v", v-1, err)
	}
}

// ModuleRows is a store that can write a module row as an older version of
// it did, for tests of the migrations after.
type ModuleRows interface {
	MigrationNames
	// LeaveModuleForTest stores a user, owner, and its module id with the
	// first migration's columns only.
	LeaveModuleForTest(ctx context.Context, id string, owner int64, inspection string) error
}

// testModuleSummaryBackfill: a module stored before the module_summary
// migration is listed after it with its inspection's summary
// (Inspection.Summary: no imports or exports, counted instead), and read by
// id with its whole inspection.
func testModuleSummaryBackfill(t *testing.T, s Migrating) {
	ctx := context.Background()
	rows, ok := s.(ModuleRows)
	if !ok {
		t.Fatalf("store %T cannot leave old module rows (storetest.ModuleRows)", s)
	}
	migrateBefore(t, s, "module_summary")
	insp := &wasmwiz.Inspection{SHA256: "ab", SizeBytes: 4, WASI: true, Entry: "_start",
		Imports: []wasmwiz.Import{{Module: "wasi_snapshot_preview1", Name: "fd_write", Kind: "func",
			Signature: &wasmwiz.FuncSignature{Params: []string{"i32", "i32"}, Results: []string{"i32"}}}},
		Exports:        []wasmwiz.Export{{Name: "_start", Kind: "func", Signature: &wasmwiz.FuncSignature{}}, {Name: "memory", Kind: "memory"}},
		ExportsOmitted: 5, Memory: &wasmwiz.MemoryInfo{MinPages: 1}}
	b, err := json.Marshal(insp)
	wantOK(t, err, "encoding the inspection")
	id := wasmwiz.NewModuleID()
	wantOK(t, rows.LeaveModuleForTest(ctx, id, 42, string(b)), "LeaveModuleForTest")
	if err := s.MigrateTo(ctx, 0); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	owner := wasmwiz.NewContextWithUser(ctx, &wasmwiz.User{ID: 42, Role: wasmwiz.RoleUser, Tier: wasmwiz.TierFree})
	listed, _, err := s.FindModules(owner, wasmwiz.ModuleFilter{})
	wantOK(t, err, "FindModules")
	if len(listed) != 1 || jsonish(listed[0].Inspection) != jsonish(insp.Summary()) {
		t.Fatalf("listed after the migration: %d modules, inspection %s; want %s", len(listed), jsonish(listed[0].Inspection), jsonish(insp.Summary()))
	}
	got, err := s.FindModuleByID(owner, id)
	wantOK(t, err, "FindModuleByID")
	if jsonish(got.Inspection) != jsonish(insp) {
		t.Fatalf("read by id after the migration: inspection %s, want %s", jsonish(got.Inspection), jsonish(insp))
	}
}

// testWebhookDeliveriesRunKey: the migration that ties webhook attempts to
// their run deletes the attempts left behind by runs deleted before it, and
// keeps the others.
func testWebhookDeliveriesRunKey(t *testing.T, s Migrating) {
	ctx := context.Background()
	migrateBefore(t, s, "webhook_deliveries_run_fk")
	at := time.Now().UTC().Truncate(time.Millisecond)
	kept, gone := run(42, wasmwiz.StatusOK, 1, at, "", ""), run(42, wasmwiz.StatusOK, 1, at, "", "")
	wantOK(t, s.CreateRuns(ctx, []*wasmwiz.UsageRecord{kept}), "CreateRuns")
	for _, id := range []string{kept.ID, gone.ID} {
		for attempt := 1; attempt <= 2; attempt++ {
			wantOK(t, s.AddWebhookDelivery(ctx, &wasmwiz.WebhookDelivery{RunID: id, Attempt: attempt, At: at, StatusCode: 500}),
				"AddWebhookDelivery before the migration")
		}
	}
	if err := s.MigrateTo(ctx, 0); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	// The run left behind is written again: its attempts are gone.
	wantOK(t, s.CreateRuns(ctx, []*wasmwiz.UsageRecord{gone}), "CreateRuns")
	sys := wasmwiz.SystemContext(ctx)
	for _, want := range []struct {
		id       string
		attempts int
	}{{kept.ID, 2}, {gone.ID, 0}} {
		got, err := s.FindRunByID(sys, want.id)
		wantOK(t, err, "FindRunByID")
		if len(got.Deliveries) != want.attempts {
			t.Fatalf("run %s has %d webhook attempts after the migration, want %d", want.id, len(got.Deliveries), want.attempts)
		}
	}
}
