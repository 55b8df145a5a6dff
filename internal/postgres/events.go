package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// EventBus carries run events between replicas through PostgreSQL's
// LISTEN/NOTIFY, so that a run's output can be followed on any replica: the
// replica running a run NOTIFYs its events on one channel per schema, and
// every replica LISTENs and hands the events of other replicas to its local
// hub. NOTIFY payloads are limited to 8000 bytes, so output travels in
// pieces of at most notifyChunk bytes. Notifications are best effort: a
// full send queue drops (and counts) events, and a reader that misses some
// learns it from the offsets and reads the run's record (the SSE handler
// does). It implements wasmwiz.RunEvents.
type EventBus struct {
	db     *DB
	hub    *wasmwiz.EventHub
	log    *slog.Logger
	origin string
	out    chan []byte

	channel string
	dropped atomic.Uint64
	sent    atomic.Uint64

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ wasmwiz.RunEvents = (*EventBus)(nil)

// notifyChunk is the most output bytes in one notification: base64 makes
// them 4/3 as long, and the envelope fits in what is left of 8000.
const notifyChunk = 5400

// eventBusQueue bounds the notifications waiting to be sent.
const eventBusQueue = 4096

type notification struct {
	Origin string `json:"o"`
	RunID  string `json:"r"`
	Kind   string `json:"k"`
	Offset int64  `json:"f,omitempty"`
	Data   []byte `json:"d,omitempty"`
}

// NewEventBus starts listening and sending on db; hub is this replica's
// local hub (subscribers read from it). Close stops it.
func NewEventBus(ctx context.Context, db *DB, hub *wasmwiz.EventHub, log *slog.Logger) (*EventBus, error) {
	if log == nil {
		log = slog.Default()
	}
	var schema string
	if err := db.pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return nil, dbError(err, "event bus")
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	bus := &EventBus{db: db, hub: hub, log: log, origin: hex.EncodeToString(b[:]), out: make(chan []byte, eventBusQueue),
		channel: "wasmwiz_run_events_" + schema}
	ctx, bus.cancel = context.WithCancel(context.WithoutCancel(ctx))
	ready := make(chan struct{})
	bus.wg.Add(2)
	go func() { defer bus.wg.Done(); bus.listen(ctx, ready) }()
	go func() { defer bus.wg.Done(); bus.send(ctx) }()
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		log.Warn("run events: not listening yet; retrying in the background")
	}
	return bus, nil
}

// Publish implements wasmwiz.RunEvents: local subscribers at once, other
// replicas through NOTIFY.
func (b *EventBus) Publish(ev wasmwiz.RunEvent) {
	b.hub.Publish(ev)
	data := ev.Data
	off := ev.Offset
	for first := true; first || len(data) > 0; first = false {
		n := min(len(data), notifyChunk)
		p, err := json.Marshal(notification{Origin: b.origin, RunID: ev.RunID, Kind: ev.Kind, Offset: off, Data: data[:n]})
		if err != nil {
			return
		}
		select {
		case b.out <- p:
		default:
			b.dropped.Add(1)
		}
		data, off = data[n:], off+int64(n)
	}
}

// Subscribe implements wasmwiz.RunEvents.
func (b *EventBus) Subscribe(runID string) (<-chan wasmwiz.RunEvent, func()) {
	return b.hub.Subscribe(runID)
}

// Stats returns how many notifications were sent and dropped.
func (b *EventBus) Stats() (sent, dropped uint64) { return b.sent.Load(), b.dropped.Load() }

// Close stops listening and sending.
func (b *EventBus) Close() {
	b.cancel()
	b.wg.Wait()
}

func (b *EventBus) send(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-b.out:
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := b.db.pool.Exec(sctx, `SELECT pg_notify($1, $2)`, b.channel, string(p))
			cancel()
			if err != nil {
				b.dropped.Add(1)
				continue
			}
			b.sent.Add(1)
		}
	}
}

// listen holds one connection LISTENing, reconnecting with backoff.
func (b *EventBus) listen(ctx context.Context, ready chan struct{}) {
	backoff := 100 * time.Millisecond
	once := sync.OnceFunc(func() { close(ready) })
	for ctx.Err() == nil {
		err := b.listenOnce(ctx, once)
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("run events: listening failed; retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func (b *EventBus) listenOnce(ctx context.Context, ready func()) error {
	conn, err := b.db.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection ends in LISTEN state: it is taken from the pool and
	// closed, never given back.
	pc := conn.Hijack()
	defer pc.Close(context.WithoutCancel(ctx))
	if _, err := pc.Exec(ctx, `LISTEN "`+b.channel+`"`); err != nil {
		return err
	}
	ready()
	for {
		n, err := pc.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		var m notification
		if json.Unmarshal([]byte(n.Payload), &m) != nil || m.Origin == b.origin {
			continue
		}
		b.hub.Publish(wasmwiz.RunEvent{RunID: m.RunID, Kind: m.Kind, Offset: m.Offset, Data: m.Data})
	}
}
