package postgres_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/postgres"
	"github.com/wasmwiz/wasmwiz/internal/usage"
)

func benchRuns(userID int64, n int, seq *int) []*wasmwiz.UsageRecord {
	runs := make([]*wasmwiz.UsageRecord, n)
	for i := range runs {
		*seq++
		at := t0.Add(time.Duration(*seq) * time.Microsecond)
		runs[i] = &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(at), UserID: userID, APIKeyID: 1, ModuleSHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
			Tier: "free", Status: wasmwiz.StatusOK, DurationMS: 1.25, MemoryPeakBytes: 1 << 20, StdinBytes: 12, OutputBytes: 34, CreatedAt: at}
	}
	return runs
}

// BenchmarkCreateRuns writes usage records one per transaction and in
// batches, through each insert path (arrays: one INSERT … SELECT FROM
// unnest; copy: COPY into a temporary table, then INSERT … SELECT).
func BenchmarkCreateRuns(b *testing.B) {
	cases := []struct {
		name  string
		batch int
		copy  bool
	}{
		{"one-by-one/arrays", 1, false},
		{"batch=10/arrays", 10, false},
		{"batch=10/copy", 10, true},
		{"batch=100/arrays", 100, false},
		{"batch=100/copy", 100, true},
		{"batch=1000/arrays", 1000, false},
		{"batch=1000/copy", 1000, true},
		{"batch=5000/arrays", 5000, false},
		{"batch=5000/copy", 5000, true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			db := newDB(b)
			u, _ := mustUser(b, db, "bench@example.com", wasmwiz.RoleUser)
			threshold := math.MaxInt
			if c.copy {
				threshold = 1
			}
			postgres.SetCopyThreshold(db, threshold)
			seq := 0
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				runs := benchRuns(u.ID, c.batch, &seq)
				b.StartTimer()
				if err := db.CreateRuns(ctx, runs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*c.batch)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkAuthenticate measures a key lookup: the digest, one indexed join,
// and (at most once a minute per key) the last_used_at write.
func BenchmarkAuthenticate(b *testing.B) {
	db := newDB(b)
	var plain string
	var u *wasmwiz.User
	var ctx context.Context
	for i := range 1000 { // a table with more than one key, of several users (each holds at most wasmwiz.MaxActiveAPIKeys)
		if i%wasmwiz.MaxActiveAPIKeys == 0 {
			u, ctx = mustUser(b, db, fmt.Sprintf("bench%d@example.com", i), wasmwiz.RoleUser)
		}
		_, p, err := db.CreateAPIKey(ctx, u.ID, fmt.Sprint("k", i), nil)
		if err != nil {
			b.Fatal(err)
		}
		plain = p
	}
	for b.Loop() {
		if _, _, err := db.Authenticate(context.Background(), plain); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUsageWriter measures records/s end to end through
// wasmwiz.UsageWriter with its default batch size (500): each op records
// 20 000 records (under the buffer bound, so none is dropped) on a new
// writer and closes it, which returns when all are written.
func BenchmarkUsageWriter(b *testing.B) {
	db := newDB(b)
	u, _ := mustUser(b, db, "bench@example.com", wasmwiz.RoleUser)
	const perOp = 20_000
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ops := 0
	for b.Loop() {
		w := usage.New(db, usage.Options{Logger: logger})
		for range perOp {
			w.Record(&wasmwiz.UsageRecord{UserID: u.ID, Tier: "free", Status: wasmwiz.StatusOK, DurationMS: 1})
		}
		if err := w.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
		if s := w.Stats(); s.Written != perOp || s.Dropped != 0 {
			b.Fatalf("writer stats %+v, want %d written", s, perOp)
		}
		ops++
	}
	b.ReportMetric(float64(ops*perOp)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkStoredOutputPaths measures the writes that carry run output:
// synchronous records with 1 KiB of stdout in batches of 100 (the usage
// writer's array insert), and a background run's heartbeats, without new
// output (the common case: one UPDATE) and with 100 bytes each.
func BenchmarkStoredOutputPaths(b *testing.B) {
	out := make([]byte, 1024)
	for i := range out {
		out[i] = 'a' + byte(i%26)
	}
	b.Run("records=100/stdout=1KiB", func(b *testing.B) {
		db := newDB(b)
		u, _ := mustUser(b, db, "bench@example.com", wasmwiz.RoleUser)
		seq := 0
		ctx := context.Background()
		for b.Loop() {
			b.StopTimer()
			runs := benchRuns(u.ID, 100, &seq)
			for _, r := range runs {
				r.Stdout = out
			}
			b.StartTimer()
			if err := db.CreateRuns(ctx, runs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "records/s")
	})
	for _, n := range []int{0, 100} {
		name := "heartbeat/no-output"
		if n > 0 {
			name = "heartbeat/100B"
		}
		b.Run(name, func(b *testing.B) {
			db := newDB(b)
			_, ctx := mustUser(b, db, "bench@example.com", wasmwiz.RoleUser)
			r := &wasmwiz.UsageRecord{ID: wasmwiz.NewRunID(time.Now()), Tier: "enterprise"}
			if err := db.QueueRun(ctx, r, &wasmwiz.RunInput{Wasm: []byte("\x00asm")}, 10,
				func(context.Context, any, int) error { return nil }); err != nil {
				b.Fatal(err)
			}
			if _, _, err := db.StartRun(context.Background(), r.ID); err != nil {
				b.Fatal(err)
			}
			var off int64
			for b.Loop() {
				tail := wasmwiz.OutputTail{Offset: off, Data: out[:n]}
				if _, err := db.HeartbeatRun(context.Background(), r.ID, tail, wasmwiz.OutputTail{}); err != nil {
					b.Fatal(err)
				}
				off += int64(n)
			}
		})
	}
}
