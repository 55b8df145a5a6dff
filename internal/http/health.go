package http

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
)

// readinessTimeout bounds one /readyz check.
const readinessTimeout = 2 * time.Second

// readinessReuse is how long a round of /readyz's checks answers every
// /readyz after it: load balancers and probes ask every few seconds, and
// anyone may ask as often as they like.
const readinessReuse = time.Second

// readiness runs /readyz's checks for every caller: one round at a time,
// whose answer callers during it wait for and callers within
// readinessReuse of its end reuse. /readyz needs no credentials, so
// without this each call pinged every dependency (on SQLite the one
// writer connection) and logged a warning per call while one was down.
// A check's failure is logged when its state changes, not per round.
type readiness struct {
	checks []ReadinessCheck
	log    *slog.Logger
	now    func() time.Time

	mu     sync.Mutex
	last   *readinessRound   // in flight, or the last to end
	states map[string]string // each check's state when last logged
}

// readinessRound is one round of the checks; done is closed when checks
// holds every check's state ("ok" or "down").
type readinessRound struct {
	done   chan struct{}
	ended  time.Time
	checks map[string]string
}

// result returns the checks' states of a round in flight or of one that
// ended within readinessReuse, else of a new round. A caller whose request
// ends while it waits gets EUNAVAILABLE; the round goes on for the others.
func (g *readiness) result(ctx context.Context) (map[string]string, error) {
	g.mu.Lock()
	round := g.last
	start := round == nil
	if !start {
		select {
		case <-round.done:
			start = g.now().Sub(round.ended) >= readinessReuse
		default: // in flight: wait for it
		}
	}
	if start {
		round = &readinessRound{done: make(chan struct{})}
		g.last = round
		go g.run(round)
	}
	g.mu.Unlock()
	select {
	case <-round.done:
		return round.checks, nil
	case <-ctx.Done():
		return nil, wasmwiz.WrapError(wasmwiz.EUNAVAILABLE, ctx.Err(), "not ready: the request ended during the checks")
	}
}

// run pings every check at once, each within readinessTimeout, whoever
// waits, and logs the checks whose state changed.
func (g *readiness) run(round *readinessRound) {
	checks := make(map[string]string, len(g.checks))
	errs := make(map[string]error)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range g.checks {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), readinessTimeout)
			defer cancel()
			err := c.Ping(ctx)
			mu.Lock()
			defer mu.Unlock()
			checks[c.Name] = "ok"
			if err != nil {
				checks[c.Name], errs[c.Name] = "down", err
			}
		})
	}
	wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.checks {
		state, was := checks[c.Name], g.states[c.Name]
		if state == was || state == "ok" && was == "" {
			continue
		}
		if g.states == nil {
			g.states = map[string]string{}
		}
		g.states[c.Name] = state
		if state == "down" {
			g.log.Warn("readiness check failed", "check", c.Name, "err", errs[c.Name])
		} else {
			g.log.Info("readiness check recovered", "check", c.Name)
		}
	}
	round.checks, round.ended = checks, g.now()
	close(round.done)
}

// healthz is GET /healthz: the process is alive and serving.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, api.Health{Status: "ok"})
	return nil
}

// Drain marks the server as shutting down, before its listener closes:
// from now on /readyz answers 503 (so that load balancers stop sending it
// requests) while every other route is still served, and every answer
// carries Connection: close, so that keep-alive connections end after
// their next request instead of being cut while a request is on its way.
func (s *Server) Drain() { s.draining.Store(true) }

// closeWhenDraining asks clients to close their connection once the server
// drains (see Drain).
func (s *Server) closeWhenDraining(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

// readyz is GET /readyz: every readiness check answers, or 503 naming the
// ones that do not; 503 as soon as the server drains for a shutdown.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	if s.draining.Load() {
		if info := routeInfoFrom(r.Context()); info != nil {
			info.errorCode = wasmwiz.EUNAVAILABLE
		}
		writeJSON(w, http.StatusServiceUnavailable, api.Ready{
			Error:  &api.ErrorDetail{Code: wasmwiz.EUNAVAILABLE, Message: "not ready: shutting down"},
			Status: "unavailable",
			Checks: map[string]string{"shutdown": "draining"},
		})
		return nil
	}
	checks, err := s.readiness.result(r.Context())
	if err != nil {
		return err
	}
	var down []string
	for _, c := range s.opts.Readiness {
		if checks[c.Name] != "ok" {
			down = append(down, c.Name)
		}
	}
	if len(down) == 0 {
		writeJSON(w, http.StatusOK, api.Ready{Status: "ok", Checks: checks})
		return nil
	}
	if info := routeInfoFrom(r.Context()); info != nil {
		info.errorCode = wasmwiz.EUNAVAILABLE
	}
	writeJSON(w, http.StatusServiceUnavailable, api.Ready{
		Error:  &api.ErrorDetail{Code: wasmwiz.EUNAVAILABLE, Message: "not ready: " + strings.Join(down, ", ")},
		Status: "unavailable",
		Checks: checks,
	})
	return nil
}
