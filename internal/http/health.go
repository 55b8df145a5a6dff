package http

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// readinessTimeout bounds one /readyz check.
const readinessTimeout = 2 * time.Second

// healthz is GET /healthz: the process is alive and serving.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// readyz is GET /readyz: every readiness check answers, or 503 naming the
// ones that do not.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
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
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "checks": checks})
		return nil
	}
	if info := routeInfoFrom(r.Context()); info != nil {
		info.errorCode = wasmwiz.EUNAVAILABLE
	}
	writeJSON(w, http.StatusServiceUnavailable, map[string]any{
		"error":  errorJSON{Code: wasmwiz.EUNAVAILABLE, Message: "not ready: " + strings.Join(down, ", ")},
		"status": "unavailable",
		"checks": checks,
	})
	return nil
}
