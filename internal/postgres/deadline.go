package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/wasmwiz/wasmwiz"
)

// DefaultCallTimeout bounds each wait for PostgreSQL when Options does not
// say otherwise.
const DefaultCallTimeout = 5 * time.Second

// deadlines gives every wait for the database a deadline: the wait for a
// pooled connection, and each statement, batch, COPY or prepare until its
// result is read. It is installed as pgx's tracer because pgx runs each of
// those under the context its tracer returns, so this one place covers
// every query the store sends, also those added later. A database that
// stops answering (a stalled network, a hung server) then costs a caller
// at most the timeout per statement, as EUNAVAILABLE, instead of holding
// the request, and whatever slots it holds, for as long as the hang lasts.
//
// A context that already ends sooner keeps its own deadline; one marked by
// withoutCallTimeout (migrations, which may rewrite large tables) gets none;
// one marked by wasmwiz.WithOwnDeadline that has a deadline is bounded by that
// deadline alone, also when it is later than the timeout (the finish of a
// background run, a usage batch: background work that may wait longer than
// a request should), and one so marked without a deadline gets the timeout
// as any other.
type deadlines struct {
	timeout time.Duration
}

type cancelKey struct{}

type noTimeoutKey struct{}

// withoutCallTimeout marks ctx for statements that may legitimately take
// longer than the call timeout.
func withoutCallTimeout(ctx context.Context) context.Context {
	return context.WithValue(ctx, noTimeoutKey{}, true)
}

// start returns ctx with the deadline and its cancel stored for end.
func (d deadlines) start(ctx context.Context) context.Context {
	if d.timeout <= 0 || ctx.Value(noTimeoutKey{}) != nil {
		return ctx
	}
	if _, own := wasmwiz.OwnDeadline(ctx); own {
		// Nothing to release; the no-op also keeps end from releasing the
		// deadline of an enclosing start.
		return context.WithValue(ctx, cancelKey{}, context.CancelFunc(func() {}))
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	return context.WithValue(ctx, cancelKey{}, cancel)
}

// end releases the deadline's timer.
func (d deadlines) end(ctx context.Context) {
	if cancel, ok := ctx.Value(cancelKey{}).(context.CancelFunc); ok {
		cancel()
	}
}

// The tracer methods: each start sets the deadline, each end releases it.

func (d deadlines) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return d.start(ctx)
}

func (d deadlines) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	d.end(ctx)
}

func (d deadlines) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return d.start(ctx)
}

func (d deadlines) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (d deadlines) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchEndData) {
	d.end(ctx)
}

func (d deadlines) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	return d.start(ctx)
}

func (d deadlines) TraceCopyFromEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromEndData) {
	d.end(ctx)
}

func (d deadlines) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	return d.start(ctx)
}

func (d deadlines) TracePrepareEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareEndData) {
	d.end(ctx)
}

func (d deadlines) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	return d.start(ctx)
}

func (d deadlines) TraceAcquireEnd(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireEndData) {
	d.end(ctx)
}

// The tracer interfaces pgx and pgxpool look for.
var (
	_ pgx.QueryTracer       = deadlines{}
	_ pgx.BatchTracer       = deadlines{}
	_ pgx.CopyFromTracer    = deadlines{}
	_ pgx.PrepareTracer     = deadlines{}
	_ pgxpool.AcquireTracer = deadlines{}
)

// WithoutCallTimeout marks ctx for the calls of another migration runner on
// this store's connections (River's, internal/queue), which the store's
// call timeout must not cut as it does not cut the store's own migrations.
func WithoutCallTimeout(ctx context.Context) context.Context { return withoutCallTimeout(ctx) }
