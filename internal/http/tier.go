package http

import (
	"net/http"
	"strings"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
)

// readTier reads a tier from a JSON body; wasmwiz.Tier's own codec names
// and parses every limit (numbers in bytes and milliseconds, or strings such
// as "128MiB" and "5s").
func (s *Server) readTier(w http.ResponseWriter, r *http.Request) (*wasmwiz.Tier, error) {
	var t wasmwiz.Tier
	if err := decodeSmallJSON(w, r, &t); err != nil {
		return nil, err
	}
	t.Name = strings.TrimSpace(t.Name)
	return &t, nil
}

// checkTier validates a tier to be saved, including the server's maxima:
// a limit the server would clamp is refused rather than shown as it never
// applies.
func (s *Server) checkTier(t *wasmwiz.Tier) error {
	if err := t.Validate(); err != nil {
		return err
	}
	return t.CheckMax(s.exec.MaxLimits)
}

// adminListTiers is GET /api/v1/admin/tiers.
func (s *Server) adminListTiers(w http.ResponseWriter, r *http.Request) error {
	tiers, err := s.opts.Tiers.ListTiers(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.TierList{Tiers: apiList(tiers, apiTier)})
	return nil
}

// adminGetTier is GET /api/v1/admin/tiers/{name}.
func (s *Server) adminGetTier(w http.ResponseWriter, r *http.Request) error {
	t, err := s.opts.Tiers.FindTier(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiTier(t))
	return nil
}

// adminCreateTier is POST /api/v1/admin/tiers: a new tier (ECONFLICT when
// the name is taken).
func (s *Server) adminCreateTier(w http.ResponseWriter, r *http.Request) error {
	t, err := s.readTier(w, r)
	if err != nil {
		return err
	}
	if err := s.checkTier(t); err != nil {
		return err
	}
	if _, err := s.opts.Tiers.FindTier(r.Context(), t.Name); err == nil {
		return wasmwiz.Errorf(wasmwiz.ECONFLICT, "tier %q exists; change it with PUT", t.Name)
	} else if wasmwiz.ErrorCode(err) != wasmwiz.ENOTFOUND {
		return err
	}
	return s.storeTier(w, r, t, http.StatusCreated)
}

// adminPutTier is PUT /api/v1/admin/tiers/{name}: create or replace.
func (s *Server) adminPutTier(w http.ResponseWriter, r *http.Request) error {
	t, err := s.readTier(w, r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if t.Name != "" && t.Name != name {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "the body names tier %q but the path %q", t.Name, name)
	}
	t.Name = name
	if err := s.checkTier(t); err != nil {
		return err
	}
	return s.storeTier(w, r, t, http.StatusOK)
}

// storeTier stores t, tells every replica's cache (changed), and answers
// status with it.
func (s *Server) storeTier(w http.ResponseWriter, r *http.Request, t *wasmwiz.Tier, status int) error {
	if err := s.opts.Tiers.PutTier(r.Context(), t); err != nil {
		return err
	}
	s.changed(r.Context(), "tier changed")
	writeJSON(w, status, apiTier(t))
	return nil
}
