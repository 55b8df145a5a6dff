package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

var listTests = []test{
	{"OffsetIsBounded", testListOffsetBounded},
	{"TotalIsCapped", testListTotalCapped},
}

// testListOffsetBounded: every Find refuses an offset past
// wasmwiz.MaxListOffset (EINVALID), which would make the store read and
// skip that many rows on every call, and takes MaxListOffset itself.
func testListOffsetBounded(t *testing.T, e *env) {
	u, ctx := e.user("u@example.com", wasmwiz.TierFree)
	e.key(ctx, u.ID, "k", nil)
	e.module(ctx, "m", wasmBytes("m"), false)
	e.runs(run(u.ID, wasmwiz.StatusOK, 1, e.clock.Now(), "", ""))
	finds := []struct {
		name string
		find func(offset int) (wasmwiz.ListTotal, error)
	}{
		{"FindRuns", func(offset int) (wasmwiz.ListTotal, error) {
			_, total, err := e.s.FindRuns(ctx, wasmwiz.RunFilter{Offset: offset})
			return total, err
		}},
		{"FindModules", func(offset int) (wasmwiz.ListTotal, error) {
			_, total, err := e.s.FindModules(ctx, wasmwiz.ModuleFilter{Offset: offset})
			return total, err
		}},
		{"FindAPIKeys", func(offset int) (wasmwiz.ListTotal, error) {
			_, total, err := e.s.FindAPIKeys(ctx, wasmwiz.APIKeyFilter{Offset: offset})
			return total, err
		}},
		{"FindUsers", func(offset int) (wasmwiz.ListTotal, error) {
			_, total, err := e.s.FindUsers(e.sys, wasmwiz.UserFilter{Offset: offset})
			return total, err
		}},
	}
	for _, f := range finds {
		for _, offset := range []int{wasmwiz.MaxListOffset + 1, 1 << 40, -1} {
			_, err := f.find(offset)
			WantCode(t, err, wasmwiz.EINVALID, fmt.Sprintf("%s at offset %d", f.name, offset))
		}
		total, err := f.find(wasmwiz.MaxListOffset)
		wantOK(t, err, f.name+" at offset MaxListOffset")
		if want := (wasmwiz.ListTotal{Count: 1}); total != want {
			t.Fatalf("%s at offset MaxListOffset: total %s, want %s (past the end, the rows are counted)", f.name, total, want)
		}
	}
}

// testListTotalCapped: a list's total counts at most wasmwiz.MaxListTotal
// rows and says Capped when more match, so that a caller with many rows
// cannot make every list call count them all; exactly MaxListTotal is not
// capped, and other users' rows are not counted.
func testListTotalCapped(t *testing.T, e *env) {
	u, ctx := e.user("many@example.com", wasmwiz.TierFree)
	other, _ := e.user("other@example.com", wasmwiz.TierFree)
	const traps = 5
	base := e.clock.Now().Add(-24 * time.Hour)
	batch := make([]*wasmwiz.UsageRecord, 0, 1000)
	flush := func() {
		e.runs(batch...)
		batch = batch[:0]
	}
	for i := range wasmwiz.MaxListTotal + traps {
		st := wasmwiz.StatusOK
		if i < traps {
			st = wasmwiz.StatusTrap // the oldest
		}
		batch = append(batch, run(u.ID, st, 1, base.Add(time.Duration(i)*time.Millisecond), "", ""))
		if len(batch) == cap(batch) {
			flush()
		}
	}
	flush()
	e.runs(run(other.ID, wasmwiz.StatusOK, 1, base, "", ""))

	capped := wasmwiz.ListTotal{Count: wasmwiz.MaxListTotal, Capped: true}
	tests := []struct {
		name   string
		filter wasmwiz.RunFilter
		rows   int
		total  wasmwiz.ListTotal
	}{
		{"first page", wasmwiz.RunFilter{Limit: 10}, 10, capped},
		{"deepest page, short", wasmwiz.RunFilter{Limit: 10, Offset: wasmwiz.MaxListOffset}, traps, capped},
		{"exactly MaxListTotal", wasmwiz.RunFilter{Status: wasmwiz.StatusOK, Limit: 10}, 10, wasmwiz.ListTotal{Count: wasmwiz.MaxListTotal}},
		{"exactly MaxListTotal, past the end", wasmwiz.RunFilter{Status: wasmwiz.StatusOK, Limit: 10, Offset: wasmwiz.MaxListOffset},
			0, wasmwiz.ListTotal{Count: wasmwiz.MaxListTotal}},
		{"a few", wasmwiz.RunFilter{Status: wasmwiz.StatusTrap}, traps, wasmwiz.ListTotal{Count: traps}},
		// No limit, or one past the largest page, reads one page, not
		// every row the caller has.
		{"no limit", wasmwiz.RunFilter{}, wasmwiz.DefaultListLimit, capped},
		{"a limit past the largest page", wasmwiz.RunFilter{Limit: wasmwiz.MaxListLimit + 1}, wasmwiz.MaxListLimit, capped},
	}
	for _, tt := range tests {
		runs, total, err := e.s.FindRuns(ctx, tt.filter)
		wantOK(t, err, "FindRuns "+tt.name)
		if len(runs) != tt.rows || total != tt.total {
			t.Fatalf("FindRuns %s: %d runs, total %s (%+v); want %d and %s", tt.name, len(runs), total, total, tt.rows, tt.total)
		}
	}
	// The count is the caller's: another user's runs stay uncounted.
	_, total, err := e.s.FindRuns(wasmwiz.NewContextWithUser(context.Background(), other), wasmwiz.RunFilter{})
	wantOK(t, err, "FindRuns of the other user")
	if total != (wasmwiz.ListTotal{Count: 1}) {
		t.Fatalf("FindRuns of the other user: total %s, want 1", total)
	}
}
