package http

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
)

// readinessTimeout bounds one /readyz check.
const readinessTimeout = 2 * time.Second

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
	checks := make(map[string]string, len(s.opts.Readiness))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range s.opts.Readiness {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(r.Context(), readinessTimeout)
			defer cancel()
			state := "ok"
			if err := c.Ping(ctx); err != nil {
				state = "down"
				s.log.WarnContext(r.Context(), "readiness check failed", "check", c.Name, "err", err)
			}
			mu.Lock()
			checks[c.Name] = state
			mu.Unlock()
		}()
	}
	wg.Wait()
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
