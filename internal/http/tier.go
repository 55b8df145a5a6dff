package http

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// tierJSON is a tier in answers: the Tier's fields plus its timeout.
type tierJSON struct {
	*wasmwiz.Tier
	TimeoutMS int64 `json:"timeout_ms"`
}

func tierOut(t *wasmwiz.Tier) tierJSON {
	return tierJSON{Tier: t, TimeoutMS: t.Timeout.Milliseconds()}
}

// sizeField is a byte count written as a number or a size string ("128MiB").
type sizeField int64

// UnmarshalJSON reads a number or a size string.
func (f *sizeField) UnmarshalJSON(b []byte) error {
	var n int64
	if err := json.Unmarshal(b, &n); err == nil {
		*f = sizeField(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "sizes are numbers of bytes or strings like \"128MiB\"")
	}
	v, err := wasmwiz.ParseSize(s)
	if err != nil {
		return err
	}
	*f = sizeField(v)
	return nil
}

// tierIn is a tier in requests.
type tierIn struct {
	Name           string     `json:"name"`
	RunsPerMinute  int64      `json:"runs_per_minute"`
	RunsPerDay     int64      `json:"runs_per_day"`
	MaxMemoryBytes sizeField  `json:"max_memory_bytes"`
	TimeoutMS      *int64     `json:"timeout_ms"`
	Timeout        string     `json:"timeout"`
	MaxModuleBytes sizeField  `json:"max_module_bytes"`
	MaxStdinBytes  sizeField  `json:"max_stdin_bytes"`
	MaxOutputBytes sizeField  `json:"max_output_bytes"`
	MaxConcurrent  int        `json:"max_concurrent"`
	UpdatedAt      *time.Time `json:"updated_at"` // ignored, so that a GET answer can be sent back
}

func (s *Server) readTier(w http.ResponseWriter, r *http.Request) (*wasmwiz.Tier, error) {
	var in tierIn
	if err := limitBody(w, r, smallBodyLimit); err != nil {
		return nil, err
	}
	if err := decodeJSON(r.Body, &in); err != nil {
		return nil, err
	}
	t := &wasmwiz.Tier{
		Name: strings.TrimSpace(in.Name), RunsPerMinute: in.RunsPerMinute, RunsPerDay: in.RunsPerDay,
		MaxMemoryBytes: int64(in.MaxMemoryBytes), MaxModuleBytes: int64(in.MaxModuleBytes),
		MaxStdinBytes: int64(in.MaxStdinBytes), MaxOutputBytes: int64(in.MaxOutputBytes), MaxConcurrent: in.MaxConcurrent,
	}
	switch {
	case in.TimeoutMS != nil && in.Timeout != "":
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "send timeout_ms or timeout, not both")
	case in.TimeoutMS != nil:
		t.Timeout = time.Duration(*in.TimeoutMS) * time.Millisecond
	case in.Timeout != "":
		d, err := wasmwiz.ParseDuration(in.Timeout)
		if err != nil {
			return nil, err
		}
		t.Timeout = d
	}
	return t, nil
}

// adminListTiers is GET /api/v1/admin/tiers.
func (s *Server) adminListTiers(w http.ResponseWriter, r *http.Request) error {
	tiers, err := s.opts.Tiers.ListTiers(r.Context())
	if err != nil {
		return err
	}
	out := make([]tierJSON, 0, len(tiers))
	for _, t := range tiers {
		out = append(out, tierOut(t))
	}
	writeJSON(w, http.StatusOK, map[string]any{"tiers": out})
	return nil
}

// adminGetTier is GET /api/v1/admin/tiers/{name}.
func (s *Server) adminGetTier(w http.ResponseWriter, r *http.Request) error {
	t, err := s.opts.Tiers.FindTier(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tierOut(t))
	return nil
}

// adminCreateTier is POST /api/v1/admin/tiers: a new tier (ECONFLICT when
// the name is taken).
func (s *Server) adminCreateTier(w http.ResponseWriter, r *http.Request) error {
	t, err := s.readTier(w, r)
	if err != nil {
		return err
	}
	if err := t.Validate(); err != nil {
		return err
	}
	if _, err := s.opts.Tiers.FindTier(r.Context(), t.Name); err == nil {
		return wasmwiz.Errorf(wasmwiz.ECONFLICT, "tier %q exists; change it with PUT", t.Name)
	} else if wasmwiz.ErrorCode(err) != wasmwiz.ENOTFOUND {
		return err
	}
	if err := s.opts.Tiers.PutTier(r.Context(), t); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, tierOut(t))
	return nil
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
	if err := t.Validate(); err != nil {
		return err
	}
	if err := s.opts.Tiers.PutTier(r.Context(), t); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tierOut(t))
	return nil
}
