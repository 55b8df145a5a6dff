package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/postgres"
	"github.com/wasmwiz/wasmwiz/internal/postgres/pgtest"
	"github.com/wasmwiz/wasmwiz/internal/storetest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// TestCreateRunsBatchSizes covers both insert paths (one INSERT of arrays
// below the COPY threshold, COPY at and above it): every record is stored
// once, a retried batch adds nothing, only the executed runs of stored
// modules bump run_count and last_run_at, and the user's stored run output
// counts each record's once.
func TestCreateRunsBatchSizes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		n    int
		copy int // the store's COPY threshold
	}{
		{"one, arrays", 1, 64},
		{"one, copy", 1, 1},
		{"below COPY", 63, 64},
		{"at COPY", 64, 64},
		{"large, arrays", 700, 10_000},
		{"large, copy", 700, 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			postgres.SetCopyThreshold(db, tt.copy)
			u, ctx := mustUser(t, db, "runner@example.com", wasmwiz.RoleUser)
			m := &wasmwiz.Module{Name: "m", Wasm: []byte("\x00asm\x01\x00\x00\x00")}
			if err := db.CreateModule(ctx, m); err != nil {
				t.Fatal(err)
			}
			var runs []*wasmwiz.UsageRecord
			var stored int64 // their output, which the store's count must hold once
			executed := 0
			var last time.Time
			for i := range tt.n {
				at := t0.Add(time.Duration(i) * time.Millisecond)
				r := &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(at), UserID: u.ID, ModuleID: m.ID, ModuleSHA256: m.SHA256,
					Tier: "free", Status: wasmwiz.StatusOK, DurationMS: float64(i), ExitCode: i % 3,
					MemoryPeakBytes: 65536, StdinBytes: int64(i), OutputBytes: 2 * int64(i), CreatedAt: at,
					Stdout: []byte(fmt.Sprint(i)), Stderr: []byte("e")}
				stored += int64(len(r.Stdout) + len(r.Stderr))
				if i%5 == 4 {
					r.Status, r.ErrorCode = "", wasmwiz.ERATELIMIT // refused: did not run
				} else {
					executed++
					last = at
				}
				runs = append(runs, r)
			}
			for attempt := range 2 { // the second is a retry of the same batch
				if err := db.CreateRuns(context.Background(), runs); err != nil {
					t.Fatalf("attempt %d: CreateRuns: %v", attempt, err)
				}
			}
			got, total, err := db.FindRuns(ctx, wasmwiz.RunFilter{Limit: tt.n + 10})
			if err != nil {
				t.Fatal(err)
			}
			if total.Count != tt.n || len(got) != tt.n {
				t.Fatalf("FindRuns: %d runs of total %d, want %d", len(got), total.Count, tt.n)
			}
			// Newest first: got[0] is the last record.
			want := runs[tt.n-1]
			if g := got[0]; g.ID != want.ID || g.Status != want.Status || g.ExitCode != want.ExitCode ||
				g.DurationMS != want.DurationMS || g.StdinBytes != want.StdinBytes || g.OutputBytes != want.OutputBytes ||
				g.ErrorCode != want.ErrorCode || g.ModuleID != want.ModuleID || !g.CreatedAt.Equal(want.CreatedAt) {
				t.Fatalf("stored run\n%+v\nwant\n%+v", g, want)
			}
			mod, err := db.FindModuleByID(ctx, m.ID)
			if err != nil {
				t.Fatal(err)
			}
			if mod.RunCount != int64(executed) {
				t.Fatalf("run_count = %d, want %d executed runs counted once", mod.RunCount, executed)
			}
			if executed > 0 && (mod.LastRunAt == nil || !mod.LastRunAt.Equal(last)) {
				t.Fatalf("last_run_at = %v, want %v", mod.LastRunAt, last)
			}
			if n, err := db.StoredRunBytes(ctx, u.ID); err != nil || n != stored {
				t.Fatalf("StoredRunBytes = %d (%v), want the %d bytes of the records once", n, err, stored)
			}
		})
	}
}

// TestCreateRunsDeletedModule: a record naming a module that was deleted
// is still stored, and nothing else is touched.
func TestCreateRunsDeletedModule(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	u, ctx := mustUser(t, db, "runner@example.com", wasmwiz.RoleUser)
	m := &wasmwiz.Module{Name: "gone", Wasm: []byte("\x00asm\x01\x00\x00\x00gone")}
	if err := db.CreateModule(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteModule(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	r := &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(t0), UserID: u.ID, ModuleID: m.ID, ModuleSHA256: m.SHA256,
		Status: wasmwiz.StatusOK, CreatedAt: t0}
	if err := db.CreateRuns(context.Background(), []*wasmwiz.UsageRecord{r}); err != nil {
		t.Fatalf("CreateRuns: %v", err)
	}
	got, err := db.FindRunByID(ctx, r.ID)
	if err != nil {
		t.Fatalf("FindRunByID: %v", err)
	}
	if got.ModuleID != m.ID {
		t.Fatalf("module id %q, want %q", got.ModuleID, m.ID)
	}
}

// TestDeleteRunsBefore deletes old records in batches of at most the given
// size, keeps newer ones, and several replicas deleting at once delete
// each record once between them.
func TestDeleteRunsBefore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		deleters int
	}{
		{"one replica", 1},
		{"four replicas", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			u, ctx := mustUser(t, db, "old@example.com", wasmwiz.RoleUser)
			cutoff := t0.Add(-30 * 24 * time.Hour)
			const old, recent = 1050, 7
			var runs []*wasmwiz.UsageRecord
			for i := range old + recent {
				at := cutoff.Add(-time.Duration(old-i) * time.Second) // i >= old: at or after the cutoff
				runs = append(runs, &wasmwiz.UsageRecord{ID: fmt.Sprintf("run_%06d", i), UserID: u.ID,
					Status: wasmwiz.StatusOK, CreatedAt: at})
			}
			if err := db.CreateRuns(context.Background(), runs); err != nil {
				t.Fatal(err)
			}
			const batch = 100
			var deleted atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, tt.deleters)
			for range tt.deleters {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						n, err := db.DeleteRunsBefore(context.Background(), cutoff, "", batch)
						if err != nil {
							errs <- err
							return
						}
						if n > batch {
							errs <- fmt.Errorf("deleted %d in one call, batch is %d", n, batch)
							return
						}
						if n == 0 {
							return
						}
						deleted.Add(int64(n))
					}
				}()
			}
			testenv.Wait(t, "the concurrent deleters", wg.Wait)
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if deleted.Load() != old {
				t.Fatalf("deleted %d records, want %d", deleted.Load(), old)
			}
			left, total, err := db.FindRuns(ctx, wasmwiz.RunFilter{})
			if err != nil {
				t.Fatal(err)
			}
			if total.Count != recent || len(left) != recent {
				t.Fatalf("%d records left (total %d), want the %d at or after the cutoff", len(left), total.Count, recent)
			}
			for _, r := range left {
				if r.CreatedAt.Before(cutoff) {
					t.Fatalf("record of %v before the cutoff %v survived", r.CreatedAt, cutoff)
				}
			}
			_, err = db.DeleteRunsBefore(context.Background(), cutoff, "", 0)
			storetest.WantCode(t, err, wasmwiz.EINVALID, "DeleteRunsBefore with batch 0")
		})
	}
}

// TestWebhookAttemptDuringItsRunsDeletion: an attempt recorded while its
// run's deletion is in flight (retention's statement not yet committed)
// waits for it, then is refused and leaves no row. Under READ COMMITTED an
// insert that only checked that the run exists would still see it, and
// leave the attempt behind; the foreign key locks the run's row instead.
func TestWebhookAttemptDuringItsRunsDeletion(t *testing.T) {
	t.Parallel()
	url := pgtest.Migrated(t)
	db := openURL(t, url, false)
	u, _ := mustUser(t, db, "hook@example.com", wasmwiz.RoleUser)
	r := &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(t0), UserID: u.ID, Status: wasmwiz.StatusOK, CreatedAt: t0}
	if err := db.CreateRuns(context.Background(), []*wasmwiz.UsageRecord{r}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM runs WHERE id = $1`, r.ID); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- db.AddWebhookDelivery(sys, &wasmwiz.WebhookDelivery{RunID: r.ID, Attempt: 1, At: t0}) }()
	testenv.WaitFor(t, "the attempt to wait for the deletion", func() bool {
		select {
		case err := <-done:
			t.Fatalf("AddWebhookDelivery returned %v while its run's deletion was in flight; want it to wait", err)
		default:
		}
		var waiting bool
		err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks
			WHERE NOT granted AND pg_backend_pid() = ANY (pg_blocking_pids(pid)))`).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		return waiting
	})
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	storetest.WantCode(t, testenv.Recv(t, done, "AddWebhookDelivery"), wasmwiz.ENOTFOUND, "AddWebhookDelivery of a run deleted meanwhile")
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d webhook attempts left (%v), want none", n, err)
	}
}
