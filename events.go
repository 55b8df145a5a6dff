package wasmwiz

import "sync"

// Run event kinds, as GET /api/v1/runs/{id}/events names them.
const (
	EventStdout = "stdout" // a piece of the guest's stdout
	EventStderr = "stderr" // a piece of its stderr
	EventState  = "state"  // the run's state changed (Data: the state)
	EventResult = "result" // the run ended: read its record
)

// RunEvent is one event of a run's life. Output events say where their
// bytes start in their stream, so that a reader that joins late, or
// resumes, or misses some, knows what it has and what it lacks.
type RunEvent struct {
	RunID  string
	Kind   string
	Offset int64  // stdout, stderr: the offset of Data in its stream
	Data   []byte // stdout, stderr: the bytes; state: the state's name
}

// RunEvents carries run events from the replica running a run to the
// readers of its events, on any replica.
type RunEvents interface {
	// Publish sends ev to the run's subscribers. It never blocks.
	Publish(ev RunEvent)
	// Subscribe returns the run's events from now on, until cancel. The
	// channel is closed when the subscriber falls behind (its buffer is
	// full) or cancel is called: a reader then reads the record again.
	Subscribe(runID string) (events <-chan RunEvent, cancel func())
}

// EventHub is the in-process RunEvents: every replica has one, and the
// embedded default (one replica) needs nothing else. A subscriber gets a
// buffer of EventBuffer events; one that falls behind is dropped, its
// channel closed, so that a slow reader never slows a run.
type EventHub struct {
	mu   sync.Mutex
	subs map[string]map[*hubSub]struct{}
}

// EventBuffer is how many events a subscriber may be behind.
const EventBuffer = 256

type hubSub struct {
	ch     chan RunEvent
	closed bool
}

var _ RunEvents = (*EventHub)(nil)

// NewEventHub returns an empty hub.
func NewEventHub() *EventHub { return &EventHub{subs: map[string]map[*hubSub]struct{}{}} }

// Publish implements RunEvents.
func (h *EventHub) Publish(ev RunEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[ev.RunID] {
		select {
		case s.ch <- ev:
		default:
			h.dropLocked(ev.RunID, s)
		}
	}
}

// Subscribe implements RunEvents.
func (h *EventHub) Subscribe(runID string) (<-chan RunEvent, func()) {
	s := &hubSub{ch: make(chan RunEvent, EventBuffer)}
	h.mu.Lock()
	if h.subs[runID] == nil {
		h.subs[runID] = map[*hubSub]struct{}{}
	}
	h.subs[runID][s] = struct{}{}
	h.mu.Unlock()
	return s.ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.dropLocked(runID, s)
	}
}

// Subscribers returns how many subscriptions are open, for tests and
// metrics.
func (h *EventHub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.subs {
		n += len(m)
	}
	return n
}

func (h *EventHub) dropLocked(runID string, s *hubSub) {
	if s.closed {
		return
	}
	s.closed = true
	close(s.ch)
	delete(h.subs[runID], s)
	if len(h.subs[runID]) == 0 {
		delete(h.subs, runID)
	}
}
