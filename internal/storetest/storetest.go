// Package storetest is the conformance suite that every WasmWiz store passes:
// the embedded SQLite store and the PostgreSQL store run the same tests, so
// that they behave the same (DESIGN rule 3). A behaviour change edits this
// suite first.
//
// A store's own test calls Run with a function that returns a fresh, migrated,
// empty database (the default tiers seeded, no user) for each test:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Store {
//			db := openFreshDatabase(t) // closed and removed by t.Cleanup
//			return db
//		})
//	}
//
// Contract details the suite pins down, beyond the interface docs in the root
// package:
//   - Times are UTC and kept at least to the millisecond; every "now" comes
//     from the clock given to SetNow, never from the database server.
//   - CreateUser defaults an empty Role to user and an empty Tier to free.
//   - CreateAPIKey refuses an expiry that is not after now (EINVALID) and a
//     name longer than 100 bytes; revoking a revoked key succeeds and keeps
//     the first revocation time.
//   - Authenticate writes last_used_at when it is unset or more than a minute
//     old, so a busy key costs one write a minute, not one per request.
//   - FindAPIKeys for an admin with UserID 0 lists every user's keys.
//   - CreateModule refuses empty bytes, a name over 128 bytes and a
//     description over 4096 bytes (EINVALID), and always stores the module
//     as the caller's, whatever OwnerID says.
//   - Another tenant's row and a missing row answer the same code and the
//     same message once the id is blanked out.
//   - A call whose context has ended answers EUNAVAILABLE.
//   - A Limit of 0 means a page of wasmwiz.DefaultListLimit rows, and no
//     page holds more than wasmwiz.MaxListLimit (wasmwiz.ListLimit).
//   - A Find refuses an offset below 0 or past wasmwiz.MaxListOffset
//     (EINVALID) and counts its total up to wasmwiz.MaxListTotal: with more
//     matching rows the total is MaxListTotal, Capped.
//   - A run "counts" (Usage, Stats) when it executed, that is its Status is
//     set; records of refused requests are listed by FindRuns only. "Today"
//     is the UTC day of now, "this minute" is (now-1m, now]. Stats' p95 is
//     the nearest-rank percentile: the ceil(0.95·n)-th smallest duration.
//     Stats' top modules are the 10 most run over the 30 days of RunsPerDay,
//     grouped by (module_sha256, module_id), most runs first, then by
//     sha256 and id.
//   - CacheEpoch starts at 1 and grows with every change to what the execute
//     path caches, in the change's own transaction; creating users, keys
//     and modules, using a key, recording runs and changing a module's
//     description leave it alone.
//   - StoredRunBytes counts the stdout, stderr and files of a user's run
//     records and its running runs' heartbeat pieces, each byte once,
//     whatever path wrote or deleted them (batches, final records, the
//     sweeper, retention), in the writing transaction.
//   - Bootstrap creates an admin of the enterprise tier with one key named
//     "bootstrap", only when there is no user at all, once even when called
//     concurrently.
package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// Store is a WasmWiz store (the root package's Store) whose clock the
// suite sets.
type Store interface {
	wasmwiz.Store

	// SetNow replaces the store's clock. The suite calls it once, before
	// any other method, with a clock that it moves itself.
	SetNow(now func() time.Time)
}

// Start is the time the suite's clock starts at: a Friday afternoon, so
// that "today" already holds hours of runs.
var Start = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// Run runs the whole suite. newStore must return a fresh, migrated database
// for every call; the tests run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	groups := []struct {
		name  string
		tests []test
	}{
		{"Tiers", tierTests},
		{"Users", userTests},
		{"APIKeys", apiKeyTests},
		{"Modules", moduleTests},
		{"Runs", runTests},
		{"RunQueue", runQueueTests},
		{"StoredRuns", storedRunTests},
		{"Bootstrap", bootstrapTests},
		{"Text", textTests},
		{"Lists", listTests},
		{"CacheEpoch", cacheEpochTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tt := range g.tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					tt.run(t, newEnv(t, newStore))
				})
			}
		})
	}
}

type test struct {
	name string
	run  func(t *testing.T, e *env)
}

// env is one test's store, clock and callers.
type env struct {
	t     *testing.T
	s     Store
	clock *testenv.Clock
	sys   context.Context // the system administrator (SystemContext)
	anon  context.Context // no caller at all
}

func newEnv(t *testing.T, newStore func(t *testing.T) Store) *env {
	s := newStore(t)
	clock := testenv.NewClock(Start)
	s.SetNow(clock.Now)
	return &env{
		t:     t,
		s:     s,
		clock: clock,
		sys:   wasmwiz.SystemContext(context.Background()),
		anon:  context.Background(),
	}
}

// user creates a user of tier and returns it and a context acting as it.
func (e *env) user(email, tier string) (*wasmwiz.User, context.Context) {
	e.t.Helper()
	u := &wasmwiz.User{Email: email, Role: wasmwiz.RoleUser, Tier: tier}
	if err := e.s.CreateUser(e.sys, u); err != nil {
		e.t.Fatalf("CreateUser(%s): %v", email, err)
	}
	return u, wasmwiz.NewContextWithUser(context.Background(), u)
}

// admin creates an admin user and returns it and a context acting as it.
func (e *env) admin(email string) (*wasmwiz.User, context.Context) {
	e.t.Helper()
	u := &wasmwiz.User{Email: email, Role: wasmwiz.RoleAdmin, Tier: wasmwiz.TierPro}
	if err := e.s.CreateUser(e.sys, u); err != nil {
		e.t.Fatalf("CreateUser(%s): %v", email, err)
	}
	return u, wasmwiz.NewContextWithUser(context.Background(), u)
}

// key creates a key for userID as the caller in ctx.
func (e *env) key(ctx context.Context, userID int64, name string, expiresAt *time.Time) (*wasmwiz.APIKey, string) {
	e.t.Helper()
	k, plain, err := e.s.CreateAPIKey(ctx, userID, name, expiresAt)
	if err != nil {
		e.t.Fatalf("CreateAPIKey(%d, %q): %v", userID, name, err)
	}
	return k, plain
}

// module stores wasm as a module of the caller in ctx.
func (e *env) module(ctx context.Context, name string, wasm []byte, public bool) *wasmwiz.Module {
	e.t.Helper()
	m := &wasmwiz.Module{Name: name, Description: "the " + name + " module", Wasm: wasm, Public: public,
		Inspection: &wasmwiz.Inspection{SHA256: sha(wasm), SizeBytes: int64(len(wasm)), WASI: true, Entry: "_start",
			Imports: []wasmwiz.Import{{Module: "wasi_snapshot_preview1", Name: "fd_write", Kind: "func",
				Signature: &wasmwiz.FuncSignature{Params: []string{"i32", "i32", "i32", "i32"}, Results: []string{"i32"}}}},
			Exports: []wasmwiz.Export{{Name: "_start", Kind: "func", Signature: &wasmwiz.FuncSignature{Params: []string{}, Results: []string{}}},
				{Name: "memory", Kind: "memory"}},
			Memory: &wasmwiz.MemoryInfo{MinPages: 2}}}
	if err := e.s.CreateModule(ctx, m); err != nil {
		e.t.Fatalf("CreateModule(%s): %v", name, err)
	}
	return m
}

// runs stores runs through CreateRuns, which needs no caller.
func (e *env) runs(runs ...*wasmwiz.UsageRecord) {
	e.t.Helper()
	if err := e.s.CreateRuns(context.Background(), runs); err != nil {
		e.t.Fatalf("CreateRuns(%d runs): %v", len(runs), err)
	}
}

// run returns a usage record of userID at time at.
func run(userID int64, status wasmwiz.Status, durationMS float64, at time.Time, moduleID, moduleSHA string) *wasmwiz.UsageRecord {
	r := &wasmwiz.UsageRecord{
		ID:              wasmwiz.NewRunID(at),
		UserID:          userID,
		APIKeyID:        0,
		ModuleID:        moduleID,
		ModuleSHA256:    moduleSHA,
		Tier:            wasmwiz.TierFree,
		Status:          status,
		DurationMS:      durationMS,
		MemoryPeakBytes: 65536,
		StdinBytes:      3,
		OutputBytes:     12,
		CreatedAt:       at,
	}
	switch status {
	case wasmwiz.StatusExit:
		r.ExitCode = 3
	case "":
		r.ErrorCode = wasmwiz.ERATELIMIT
	}
	return r
}

// wasmBytes returns distinct module bytes: a wasm header and a custom tail.
func wasmBytes(tag string) []byte {
	return append([]byte("\x00asm\x01\x00\x00\x00"), tag...)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Racing makes n calls of call(0) … call(n-1) at once (testenv.AtOnce) and
// returns how many succeeded. A call may fail only with the code refused,
// the bound the race is about; any other failure fails t. what names the
// calls.
func Racing(t testing.TB, n int, what, refused string, call func(i int) error) int {
	t.Helper()
	errs := make([]error, n)
	testenv.AtOnce(t, n, what, func(i int) { errs[i] = call(i) })
	succeeded := 0
	for i, err := range errs {
		switch wasmwiz.ErrorCode(err) {
		case "":
			succeeded++
		case refused:
		default:
			t.Fatalf("%s: call %d: %v, want success or %s", what, i, err, refused)
		}
	}
	return succeeded
}

// WantCode fails t unless err is a *wasmwiz.Error carrying code (or, for
// code "", unless err is nil): what a store returns. what names the call.
func WantCode(t testing.TB, err error, code string, what string) {
	t.Helper()
	if got := wasmwiz.ErrorCode(err); got != code {
		t.Fatalf("%s: error %v (code %q), want code %q", what, err, got, code)
	}
	if code != "" && wasmwiz.AsError(err) == nil {
		t.Fatalf("%s: error %v is not a *wasmwiz.Error", what, err)
	}
}

// sameAnswer fails the test unless the errors for two ids (one that
// exists but is not the caller's, one that does not exist) read the same
// once each id is blanked out: the answer must not reveal existence.
func sameAnswer(t *testing.T, errA error, idA string, errB error, idB string, what string) {
	t.Helper()
	msgA := strings.ReplaceAll(wasmwiz.ErrorMessage(errA), idA, "ID")
	msgB := strings.ReplaceAll(wasmwiz.ErrorMessage(errB), idB, "ID")
	if wasmwiz.ErrorCode(errA) != wasmwiz.ErrorCode(errB) || msgA != msgB {
		t.Fatalf("%s: another user's answers %s %q, a missing one answers %s %q",
			what, wasmwiz.ErrorCode(errA), msgA, wasmwiz.ErrorCode(errB), msgB)
	}
}

// wantOK fails the test on a non-nil error.
func wantOK(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// wantListed fails unless a Find (got, total, err) answered without an
// error, n rows and a total of n.
func wantListed[T any](t *testing.T, what string, got []T, total wasmwiz.ListTotal, err error, n int) {
	t.Helper()
	wantOK(t, err, what)
	if total != (wasmwiz.ListTotal{Count: n}) || len(got) != n {
		t.Fatalf("%s: %d listed, total %s; want %d", what, len(got), total, n)
	}
}

// sameTime reports whether two optional times are both unset or equal.
func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

// sameInstant fails unless *got and *want are the same instant (in any
// location), then clears both, so that the records holding them compare
// by ==.
func sameInstant(t *testing.T, what string, got, want *time.Time) {
	t.Helper()
	if !got.Equal(*want) {
		t.Fatalf("%s %v, want %v", what, *got, *want)
	}
	*got, *want = time.Time{}, time.Time{}
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "<nil>"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func ptr[T any](v T) *T { return &v }

// sameModule compares the stored fields of two modules, bytes excluded.
func sameModule(t *testing.T, got, want *wasmwiz.Module, what string) {
	t.Helper()
	g, w := *got, *want
	if !g.CreatedAt.Equal(w.CreatedAt) || !sameTime(g.LastRunAt, w.LastRunAt) {
		t.Fatalf("%s: times created %v last run %s, want %v and %s", what, g.CreatedAt, fmtTime(g.LastRunAt), w.CreatedAt, fmtTime(w.LastRunAt))
	}
	if g.ID != w.ID || g.OwnerID != w.OwnerID || g.Name != w.Name || g.Description != w.Description ||
		g.SHA256 != w.SHA256 || g.SizeBytes != w.SizeBytes || g.Public != w.Public || g.RunCount != w.RunCount {
		t.Fatalf("%s: module\n%+v\nwant\n%+v", what, g, w)
	}
	if fmt.Sprintf("%+v", jsonish(g.Inspection)) != fmt.Sprintf("%+v", jsonish(w.Inspection)) {
		t.Fatalf("%s: inspection %+v, want %+v", what, jsonish(g.Inspection), jsonish(w.Inspection))
	}
}

// jsonish writes an inspection with its pointers followed, for comparison.
func jsonish(i *wasmwiz.Inspection) string {
	if i == nil {
		return "<nil>"
	}
	s := fmt.Sprintf("%s %d %v %q", i.SHA256, i.SizeBytes, i.WASI, i.Entry)
	for _, im := range i.Imports {
		s += fmt.Sprintf(" import %s.%s %s %v", im.Module, im.Name, im.Kind, sig(im.Signature))
	}
	for _, ex := range i.Exports {
		s += fmt.Sprintf(" export %s %s %v", ex.Name, ex.Kind, sig(ex.Signature))
	}
	if i.Memory != nil {
		s += fmt.Sprintf(" memory %d", i.Memory.MinPages)
		if i.Memory.MaxPages != nil {
			s += fmt.Sprintf("-%d", *i.Memory.MaxPages)
		}
	}
	if i.ImportsOmitted != 0 || i.ExportsOmitted != 0 {
		s += fmt.Sprintf(" omitted %d imports, %d exports", i.ImportsOmitted, i.ExportsOmitted)
	}
	return s
}

func sig(s *wasmwiz.FuncSignature) string {
	if s == nil {
		return "-"
	}
	return s.String()
}

// sameRun compares two run records as JSON, which holds every field a
// store keeps (times compared as instants, output only when want has it).
func sameRun(t *testing.T, got, want *wasmwiz.UsageRecord, what string) {
	t.Helper()
	g, w := *got, *want
	sameInstant(t, what+": run created", &g.CreatedAt, &w.CreatedAt)
	if w.State == "" {
		w.State = wasmwiz.RunDone
	}
	for _, p := range []struct{ g, w **time.Time }{{&g.StartedAt, &w.StartedAt}, {&g.FinishedAt, &w.FinishedAt}} {
		if !sameTime(*p.g, *p.w) {
			t.Fatalf("%s: run times %v, want %v", what, *p.g, *p.w)
		}
		*p.g, *p.w = nil, nil
	}
	if w.Stdout == nil && w.Stderr == nil {
		g.Stdout, g.Stderr = nil, nil
	}
	if w.Deliveries == nil {
		g.Deliveries = nil
	}
	gj, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	wj, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	if string(gj) != string(wj) {
		t.Fatalf("%s: run\n%s\nwant\n%s", what, gj, wj)
	}
}
