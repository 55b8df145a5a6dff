package queue_test

import (
	"context"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wasmwiz/wasmwiz/internal/postgres/pgtest"
	"github.com/wasmwiz/wasmwiz/internal/queue"
)

// statementCounter is a pgx tracer that counts the statements a pool
// sends, by their first line (River's queries start with their name).
type statementCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	name, _, _ := strings.Cut(strings.TrimSpace(d.SQL), "\n")
	c.mu.Lock()
	c.n[name]++
	c.mu.Unlock()
	return ctx
}

func (c *statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// take returns the counts so far and starts again from zero.
func (c *statementCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int{}
	return n
}

// BenchmarkIdlePostgres measures what an idle queue on PostgreSQL asks of
// the database: the statements it sends per second (each op is a second of
// a started queue with nothing to do), counted by a tracer on its pool, so
// that other users of the server do not count. Every replica pays this.
//
//	go test -run '^$' -bench BenchmarkIdlePostgres -benchtime 10x ./internal/queue
func BenchmarkIdlePostgres(b *testing.B) {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(pgtest.Schema(b))
	if err != nil {
		b.Fatal(err)
	}
	counter := &statementCounter{n: map[string]int{}}
	cfg.ConnConfig.Tracer = counter
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if err := queue.MigratePostgres(ctx, pool); err != nil {
		b.Fatal(err)
	}
	q, err := queue.OpenPostgres(pool, queue.Options{Workers: 2, Runner: newRunner(nil)})
	if err != nil {
		b.Fatal(err)
	}
	if err := q.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = q.Stop(ctx) }()
	time.Sleep(2 * time.Second) // past the start: migrations' check, leader election, first fetches
	counter.take()
	b.ResetTimer()
	for range b.N {
		time.Sleep(time.Second)
	}
	b.StopTimer()
	counts := counter.take()
	total := 0
	names := make([]string, 0, len(counts))
	for name, n := range counts {
		total += n
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool { return counts[names[i]] > counts[names[j]] })
	for _, name := range names {
		b.Logf("%5d %s", counts[name], name)
	}
	b.ReportMetric(float64(total)/float64(b.N), "statements/s")
	b.ReportMetric(0, "ns/op")
}
