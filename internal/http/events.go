package http

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
)

// Server-Sent Events of runs: GET /api/v1/runs/{id}/events, and a
// synchronous execute with Accept: text/event-stream.
//
// Events: "stdout" and "stderr" with {"offset","data","encoding"} (the
// piece's place in its stream, its bytes as in results), "state" with
// {"state"}, and a last "result" with the run's record (GET
// /api/v1/runs/{id}; for a synchronous execute, the result JSON). Every
// event's id is "o<stdout bytes>.e<stderr bytes>" sent so far, so a client
// that reconnects with Last-Event-ID gets only what it lacks.

// maxEventStreamsPerUser bounds a caller's open event streams, on each
// replica.
const maxEventStreamsPerUser = 8

// eventKeepAlive is how often an idle stream gets a comment, so that
// proxies keep it open; eventRecheck how often the record is read again in
// case an event was lost on its way from another replica.
const (
	eventKeepAlive = 15 * time.Second
	eventRecheck   = 2 * time.Second
)

// streamSlots counts open event streams per user.
type streamSlots struct {
	mu sync.Mutex
	n  map[int64]int
}

func (s *streamSlots) acquire(user int64) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		s.n = map[int64]int{}
	}
	if s.n[user] >= maxEventStreamsPerUser {
		return nil, wasmwiz.RetryLater(wasmwiz.ERATELIMIT, time.Second, "too many event streams open: at most %d at a time", maxEventStreamsPerUser)
	}
	s.n[user]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.n[user]--; s.n[user] == 0 {
				delete(s.n, user)
			}
		})
	}, nil
}

// sse writes one event stream.
type sse struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	t       transfer // each event's write deadline
	started bool
	out     int64 // stdout bytes sent
	errb    int64 // stderr bytes sent
}

func newSSE(w http.ResponseWriter, t transfer) *sse {
	return &sse{w: w, rc: http.NewResponseController(w), t: t}
}

// deadline gives the next write of n bytes its time, from now: the
// transfer grace plus n at the minimum rate. A stream lasts as long as its
// run, but a client that stops reading it ends it at the next event (a
// keep-alive included) instead of holding the handler.
func (s *sse) deadline(n int) {
	if s.t.minRate <= 0 {
		_ = s.rc.SetWriteDeadline(time.Time{})
		return
	}
	_ = s.rc.SetWriteDeadline(s.t.at(time.Now(), int64(n)))
}

func (s *sse) start() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
}

func (s *sse) id() string {
	return "o" + strconv.FormatInt(s.out, 10) + ".e" + strconv.FormatInt(s.errb, 10)
}

// event writes one event and flushes it.
func (s *sse) event(kind string, data any) error {
	s.start()
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	s.deadline(len(b) + 64)
	if _, err := fmt.Fprintf(s.w, "id: %s\nevent: %s\ndata: %s\n\n", s.id(), kind, b); err != nil {
		return err
	}
	return s.rc.Flush()
}

func (s *sse) comment() error {
	s.start()
	s.deadline(16)
	if _, err := s.w.Write([]byte(": keep-alive\n\n")); err != nil {
		return err
	}
	return s.rc.Flush()
}

// output sends the part of p, which starts at offset off of its stream,
// that the client has not had; a piece that starts past what was sent
// leaves a gap and is not sent (the caller fills it from the record).
func (s *sse) output(stderr bool, off int64, p []byte) (gap bool, err error) {
	sent := &s.out
	kind := wasmwiz.EventStdout
	if stderr {
		sent, kind = &s.errb, wasmwiz.EventStderr
	}
	if off > *sent {
		return true, nil
	}
	if end := off + int64(len(p)); end > *sent {
		p = p[*sent-off:]
		o := *sent
		*sent = end
		return false, s.event(kind, api.OutputEvent{Offset: o, Data: p})
	}
	return false, nil
}

// fromRecord sends the output of rec the client has not had.
func (s *sse) fromRecord(rec *wasmwiz.UsageRecord) error {
	if _, err := s.output(false, 0, rec.Stdout); err != nil {
		return err
	}
	_, err := s.output(true, 0, rec.Stderr)
	return err
}

// resume reads Last-Event-ID.
func (s *sse) resume(r *http.Request) {
	id := r.Header.Get("Last-Event-ID")
	if id == "" {
		id = r.URL.Query().Get("last_event_id")
	}
	o, e, ok := strings.Cut(id, ".")
	if !ok || !strings.HasPrefix(o, "o") || !strings.HasPrefix(e, "e") {
		return
	}
	if n, err := strconv.ParseInt(o[1:], 10, 64); err == nil && n >= 0 {
		s.out = n
	}
	if n, err := strconv.ParseInt(e[1:], 10, 64); err == nil && n >= 0 {
		s.errb = n
	}
}

// stateEvent is a state event's data.
func stateEvent(st wasmwiz.RunState) api.StateEvent { return api.StateEvent{State: api.RunState(st)} }

// runEvents is GET /api/v1/runs/{id}/events.
func (s *Server) runEvents(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id := r.PathValue("id")
	if !wasmwiz.ValidRunID(id) {
		return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "run %q not found", id)
	}
	caller, err := wasmwiz.RequireUser(ctx)
	if err != nil {
		return err
	}
	release, err := s.streams.acquire(caller.ID)
	if err != nil {
		return err
	}
	defer release()

	// Subscribe first, then read the record: what happens between is in
	// the subscription, and the offsets drop what the record already had.
	var events <-chan wasmwiz.RunEvent
	unsubscribe := func() {}
	subscribe := func() {
		if s.opts.Events != nil {
			events, unsubscribe = s.opts.Events.Subscribe(id)
		}
	}
	subscribe()
	defer func() { unsubscribe() }()
	rec, err := s.findRun(ctx, id)
	if err != nil {
		return err
	}
	out := newSSE(w, s.transfer)
	out.resume(r)
	state := rec.State
	if err := out.event(wasmwiz.EventState, stateEvent(state)); err != nil {
		return nil
	}
	// reread reads the record again and sends what it has that the client
	// lacks; it reports whether the run is over (then the result is sent).
	// While the run runs, a store of background runs reads only the output
	// past what was sent.
	since, _ := s.opts.Runs.(wasmwiz.RunQueueService)
	reread := func() (bool, error) {
		if since != nil {
			st, tails, err := since.RunOutputSince(ctx, id, [2]int64{out.out, out.errb})
			if err != nil {
				return false, err
			}
			if !st.Final() {
				for i, t := range tails {
					if _, err := out.output(i == 1, t.Offset, t.Data); err != nil {
						return false, err
					}
				}
				if st != state {
					state = st
					return false, out.event(wasmwiz.EventState, stateEvent(state))
				}
				return false, nil
			}
		}
		rec, err := s.opts.Runs.FindRunByID(ctx, id)
		if err != nil {
			return false, err
		}
		if err := out.fromRecord(rec); err != nil {
			return false, err
		}
		if rec.State != state {
			state = rec.State
			if err := out.event(wasmwiz.EventState, stateEvent(state)); err != nil {
				return false, err
			}
		}
		if !rec.State.Final() {
			return false, nil
		}
		return true, out.event(wasmwiz.EventResult, rec)
	}
	if err := out.fromRecord(rec); err != nil {
		return nil
	}
	if rec.State.Final() {
		_ = out.event(wasmwiz.EventResult, rec)
		return nil
	}
	keepAlive := time.NewTicker(eventKeepAlive)
	defer keepAlive.Stop()
	recheck := time.NewTicker(eventRecheck)
	defer recheck.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-keepAlive.C:
			if out.comment() != nil {
				return nil
			}
		case <-recheck.C:
			if done, err := reread(); done || err != nil {
				return nil
			}
		case ev, ok := <-events:
			if !ok {
				// Fell behind: catch up from the record, then listen again.
				unsubscribe()
				subscribe()
				if done, err := reread(); done || err != nil {
					return nil
				}
				continue
			}
			switch ev.Kind {
			case wasmwiz.EventStdout, wasmwiz.EventStderr:
				gap, err := out.output(ev.Kind == wasmwiz.EventStderr, ev.Offset, ev.Data)
				if err != nil {
					return nil
				}
				if gap {
					if done, err := reread(); done || err != nil {
						return nil
					}
					if _, err := out.output(ev.Kind == wasmwiz.EventStderr, ev.Offset, ev.Data); err != nil {
						return nil
					}
				}
			case wasmwiz.EventState:
				if st := wasmwiz.RunState(ev.Data); st != state && !st.Final() {
					state = st
					if out.event(wasmwiz.EventState, stateEvent(st)) != nil {
						return nil
					}
				}
			case wasmwiz.EventResult:
				if done, err := reread(); done || err != nil {
					return nil
				}
			}
		}
	}
}

// wantsEventStream reports whether the caller asked for an event stream.
func wantsEventStream(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.EqualFold(strings.TrimSpace(mt), "text/event-stream") {
				return true
			}
		}
	}
	return false
}

// streamExecute runs a synchronous execute and answers with its events:
// output as the guest writes it, then the result. A request refused before
// its guest ran answers as usual, with its status and error body.
func (s *Server) streamExecute(w http.ResponseWriter, r *http.Request, ctx context.Context, c *wasmwiz.Caller, req *wasmwiz.RunRequest) error {
	type piece struct {
		stderr bool
		off    int64
		p      []byte
	}
	pieces := make(chan piece, wasmwiz.EventBuffer)
	var mu sync.Mutex
	var offs [2]int64
	req.OnOutput = func(stderr bool, p []byte) {
		i := 0
		if stderr {
			i = 1
		}
		mu.Lock()
		off := offs[i]
		offs[i] += int64(len(p))
		mu.Unlock()
		select {
		case pieces <- piece{stderr, off, append([]byte(nil), p...)}:
		default: // the client reads slowly: the result has it all
		}
	}
	type outcome struct {
		ex  *wasmwiz.Execution
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		ex, err := s.exec.Execute(ctx, c, req)
		done <- outcome{ex, err}
	}()
	out := newSSE(w, s.transfer)
	keepAlive := time.NewTicker(eventKeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case pc := <-pieces:
			if !out.started {
				_ = out.event(wasmwiz.EventState, stateEvent(wasmwiz.RunRunning))
			}
			_, _ = out.output(pc.stderr, pc.off, pc.p)
		case <-keepAlive.C:
			if out.started {
				_ = out.comment()
			}
		case o := <-done:
			s.observeExecution(o.ex, o.err)
			if !out.started {
				setRateHeaders(w, o.ex)
				if o.err != nil {
					return o.err
				}
			}
			if o.err != nil {
				_ = out.event(wasmwiz.EventState, stateEvent(wasmwiz.RunFailed))
				_, _, msg := s.errorParts(w, r, o.err)
				_ = out.event(api.EventError, errorJSON{Code: wasmwiz.ErrorCode(o.err), Message: msg})
				return nil
			}
			// Output still in the channel, then the rest from the result.
			for drained := false; !drained; {
				select {
				case pc := <-pieces:
					_, _ = out.output(pc.stderr, pc.off, pc.p)
				default:
					drained = true
				}
			}
			_, _ = out.output(false, 0, o.ex.Result.Stdout)
			_, _ = out.output(true, 0, o.ex.Result.Stderr)
			_ = out.event(wasmwiz.EventState, stateEvent(wasmwiz.RunDone))
			_ = out.event(wasmwiz.EventResult, APIResult(o.ex.ID, o.ex.Result))
			return nil
		case <-ctx.Done():
			o := <-done
			s.observeExecution(o.ex, o.err)
			return nil
		}
	}
}
