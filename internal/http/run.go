package http

import (
	"net/http"
	"slices"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// listRuns is GET /api/v1/runs.
func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) error {
	limit, offset, err := pageParams(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := wasmwiz.RunFilter{Status: wasmwiz.Status(q.Get("status")), Limit: limit, Offset: offset}
	if f.Status != "" && !slices.Contains(wasmwiz.Statuses, f.Status) {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "unknown status %q", f.Status)
	}
	for name, t := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(name); v != "" {
			if *t, err = time.Parse(time.RFC3339Nano, v); err != nil {
				return wasmwiz.Errorf(wasmwiz.EINVALID, "%s must be an RFC 3339 time", name)
			}
		}
	}
	runs, total, err := s.opts.Runs.FindRuns(r.Context(), f)
	if err != nil {
		return err
	}
	if runs == nil {
		runs = []*wasmwiz.Run{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"runs": runs, "total": total})
	return nil
}

// getRun is GET /api/v1/runs/{id}.
func (s *Server) getRun(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !wasmwiz.ValidRunID(id) {
		return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "run %q not found", id)
	}
	run, err := s.opts.Runs.FindRunByID(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, run)
	return nil
}

// usage is GET /api/v1/usage.
func (s *Server) usage(w http.ResponseWriter, r *http.Request) error {
	u, err := s.opts.Runs.Usage(r.Context(), s.now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

// me is GET /api/v1/me: the caller and its tier.
func (s *Server) me(w http.ResponseWriter, r *http.Request) error {
	u, err := wasmwiz.RequireUser(r.Context())
	if err != nil {
		return err
	}
	t, err := s.opts.Tiers.FindTier(r.Context(), u.Tier)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": u, "tier": tierOut(t)})
	return nil
}

// adminStats is GET /api/v1/admin/stats.
func (s *Server) adminStats(w http.ResponseWriter, r *http.Request) error {
	st, err := s.opts.Runs.Stats(r.Context(), s.now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}
