package sqlite_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/sqlite"
	"github.com/wasmwiz/wasmwiz/internal/usage"
)

// benchLimits are a free tier run's limits, shared by the records of a
// benchmark as they are not by a server's (each run gets its own map).
var benchLimits = wasmwiz.LimitsMap(wasmwiz.DefaultTiers()[0].Limits)

// benchRun is a record as a synchronous WASI run leaves it: its detail
// (args, env names, stdin digest, limits), timings and a short output.
func benchRun(userID int64, at time.Time) *wasmwiz.UsageRecord {
	started, finished := at, at.Add(1250*time.Microsecond)
	return &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(at), UserID: userID, APIKeyID: 1, ModuleSHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		Tier: wasmwiz.TierFree, Status: wasmwiz.StatusOK, DurationMS: 1.25, CompileMS: 0.125, MemoryPeakBytes: 1 << 20, StdinBytes: 10, OutputBytes: 13, CreatedAt: at,
		State: wasmwiz.RunDone, StartedAt: &started, FinishedAt: &finished,
		RunDetail: wasmwiz.RunDetail{Name: "hello.wasm", Args: []string{"--name", "world"}, EnvNames: []string{"LANG"},
			StdinSHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Limits: benchLimits, CPUMS: 1.5},
		Stdout: []byte("hello, world\n"), Stderr: []byte{}}
}

// reportRecords reports the rate of records over elapsed, and the process's
// CPU time since cpu0 per record.
func reportRecords(b *testing.B, records int, elapsed, cpu0 time.Duration) {
	b.ReportMetric(float64(records)/elapsed.Seconds(), "records/s")
	if cpu := processCPU(); cpu > 0 {
		b.ReportMetric(float64(cpu-cpu0)/float64(records), "cpu-ns/record")
	}
}

// BenchmarkCreateRunsOneByOne writes one usage record per transaction: what
// writing synchronously in every request would cost.
func BenchmarkCreateRunsOneByOne(b *testing.B) {
	db := open(b)
	ctx := context.Background()
	at := time.Now()
	cpu0 := processCPU()
	for i := 0; b.Loop(); i++ {
		if err := db.CreateRuns(ctx, []*wasmwiz.UsageRecord{benchRun(int64(i%100+1), at.Add(time.Duration(i)*time.Microsecond))}); err != nil {
			b.Fatal(err)
		}
	}
	reportRecords(b, b.N, b.Elapsed(), cpu0)
}

// BenchmarkCreateRunsBatched writes 500 records per transaction, as the
// usage writer does under load.
func BenchmarkCreateRunsBatched(b *testing.B) {
	benchBatches(b, open(b), nil)
}

// BenchmarkCreateRunsBatchedStoredModules is BenchmarkCreateRunsBatched
// with half the records runs of one of ten stored modules, whose run counts
// each batch bumps.
func BenchmarkCreateRunsBatchedStoredModules(b *testing.B) {
	db := open(b)
	_, uctx := mustUser(b, db, "u@example.com")
	var modules []*wasmwiz.Module
	for i := range 10 {
		m := &wasmwiz.Module{Name: fmt.Sprint("m", i), Wasm: []byte("\x00asm\x01\x00\x00\x00" + fmt.Sprint(i))}
		if err := db.CreateModule(uctx, m); err != nil {
			b.Fatal(err)
		}
		modules = append(modules, m)
	}
	benchBatches(b, db, modules)
}

// benchBatches writes batches of 500 records; with modules, every other
// record is a run of one of them in turn.
func benchBatches(b *testing.B, db *sqlite.DB, modules []*wasmwiz.Module) {
	const batch = 500
	ctx := context.Background()
	at := time.Now()
	runs := make([]*wasmwiz.UsageRecord, batch)
	n := 0
	cpu0 := processCPU()
	for b.Loop() {
		for j := range runs {
			runs[j] = benchRun(int64(n%100+1), at.Add(time.Duration(n)*time.Microsecond))
			if len(modules) > 0 && n%2 == 0 {
				m := modules[n/2%len(modules)]
				runs[j].ModuleID, runs[j].ModuleSHA256 = m.ID, m.SHA256
			}
			n++
		}
		if err := db.CreateRuns(ctx, runs); err != nil {
			b.Fatal(err)
		}
	}
	reportRecords(b, n, b.Elapsed(), cpu0)
}

// BenchmarkUsageWriter records through the buffered writer into SQLite.
// ns/op is what Record costs a request; records/s is the end-to-end rate,
// from the first Record to the end of Close, when every record is written,
// and cpu-ns/record what a record costs the whole process in CPU.
// Run it with a fixed count (-benchtime=200000x): b.Loop would otherwise
// record far more than the database can take in its time.
func BenchmarkUsageWriter(b *testing.B) {
	db := open(b)
	at := time.Now()
	w := usage.New(db, usage.Options{MaxBuffered: 1 << 30})
	start, cpu0 := time.Now(), processCPU()
	n := 0
	for b.Loop() {
		w.Record(benchRun(int64(n%100+1), at.Add(time.Duration(n)*time.Microsecond)))
		n++
	}
	if err := w.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	reportRecords(b, n, time.Since(start), cpu0)
	if st := w.Stats(); st.Written != uint64(n) {
		b.Fatalf("wrote %d of %d", st.Written, n)
	}
}

// BenchmarkAuthenticate is the key lookup of every request: one indexed
// read by digest joined to the user (last_used_at is written once a minute).
func BenchmarkAuthenticate(b *testing.B) {
	db, plain := benchKey(b)
	ctx := context.Background()
	for b.Loop() {
		if _, _, err := db.Authenticate(ctx, plain); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthenticateParallel looks keys up from every core at once.
func BenchmarkAuthenticateParallel(b *testing.B) {
	db, plain := benchKey(b)
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := db.Authenticate(ctx, plain); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func benchKey(b *testing.B) (*sqlite.DB, string) {
	b.Helper()
	db := open(b)
	sys := wasmwiz.SystemContext(context.Background())
	// Some other users and keys, so the lookup is not in a one-row table.
	var plain string
	for i := range 1000 {
		u := &wasmwiz.User{Email: fmt.Sprintf("user%d@example.com", i)}
		if err := db.CreateUser(sys, u); err != nil {
			b.Fatal(err)
		}
		_, p, err := db.CreateAPIKey(sys, u.ID, "k", nil)
		if err != nil {
			b.Fatal(err)
		}
		plain = p
	}
	return db, plain
}
