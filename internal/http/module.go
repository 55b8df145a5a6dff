package http

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
)

// createModule is POST /api/v1/modules: inspect (admitted like a run), then
// store.
func (s *Server) createModule(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	tier, err := s.exec.CallerTier(ctx)
	if err != nil {
		return err
	}
	limits := s.exec.TierLimits(tier)
	// The registry quota, checked before the body is read and again before
	// the compile: an upload that cannot be stored costs neither. The size
	// of an application/wasm body is the module's; CreateModule decides
	// under concurrent uploads.
	have, err := s.opts.Modules.StoredModules(ctx)
	if err != nil {
		return err
	}
	declared := int64(0)
	if mediaType(r) == "application/wasm" && r.ContentLength > 0 {
		declared = r.ContentLength
	}
	if err := tier.CheckStore(have, declared); err != nil {
		return err
	}
	// A large upload is read only once its caller was admitted for the
	// compile, and there is room for it (as an execute body).
	var held *wasmwiz.Caller
	if limit := limits.MaxModuleBytes + bodyOverhead; r.ContentLength > largeBody && r.ContentLength <= limit || r.ContentLength < 0 {
		c, err := s.exec.Caller(ctx, "")
		if err != nil {
			return err
		}
		var done func()
		if ctx, held, done, err = s.admitBody(w, r, ctx, c, limit); err != nil {
			return err
		}
		defer done()
	}
	m := &wasmwiz.Module{}
	switch mediaType(r) {
	case "multipart/form-data":
		if err := limitBody(w, r, limits.MaxModuleBytes+bodyOverhead); err != nil {
			return err
		}
		small := partLimit{max: fieldLimit, tooBig: "form field over 64KiB"}
		parts, err := readMultipart(r, map[string]partLimit{
			"wasm":        {max: limits.MaxModuleBytes, tooBig: wasmwiz.ErrorMessage(wasmwiz.SizeError("module", -1, limits.MaxModuleBytes, tier.Name))},
			"name":        small,
			"description": small,
			"public":      small,
		}, false)
		if err != nil {
			return err
		}
		m.Wasm = parts["wasm"].data
		m.Name = strings.TrimSpace(string(parts["name"].data))
		if m.Name == "" {
			m.Name = parts["wasm"].filename
		}
		m.Description = string(parts["description"].data)
		if p, ok := parts["public"]; ok && len(p.data) > 0 {
			if m.Public, err = strconv.ParseBool(strings.TrimSpace(string(p.data))); err != nil {
				return wasmwiz.Errorf(wasmwiz.EINVALID, "public must be true or false")
			}
		}
	case "application/wasm":
		if err := limitBody(w, r, limits.MaxModuleBytes); err != nil {
			return sizeRefusal("module", limits.MaxModuleBytes, tier.Name, err)
		}
		q := r.URL.Query()
		for name := range q {
			if name != "name" && name != "description" && name != "public" {
				return wasmwiz.Errorf(wasmwiz.EINVALID, "unknown query parameter %q", name)
			}
		}
		if m.Public, err = boolParam(r, "public"); err != nil {
			return err
		}
		m.Name, m.Description = strings.TrimSpace(q.Get("name")), q.Get("description")
		if m.Wasm, err = readAll(r); err != nil {
			return sizeRefusal("module", limits.MaxModuleBytes, tier.Name, err)
		}
	default:
		return wasmwiz.Errorf(wasmwiz.EINVALID, "send the module as multipart/form-data (wasm) or application/wasm")
	}
	if len(m.Wasm) == 0 {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "no module: send it as the wasm field or the body")
	}
	if m.Name == "" {
		m.Name = "module.wasm"
	}
	// What the store would refuse is refused before the compile, which
	// takes one of the caller's runs.
	if err := m.Validate(); err != nil {
		return err
	}
	if err := tier.CheckStore(have, int64(len(m.Wasm))); err != nil {
		return err
	}
	// Compiling is work: the upload holds one of the caller's concurrency
	// slots and counts against its run quota (Executor.Inspect).
	insp, ex, err := s.exec.InspectAdmitted(ctx, held, m.Wasm)
	setRateHeaders(w, ex)
	if err != nil {
		return err
	}
	m.Inspection = insp
	if err := s.opts.Modules.CreateModule(ctx, m); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, apiModule(m))
	return nil
}

// listModules is GET /api/v1/modules.
func (s *Server) listModules(w http.ResponseWriter, r *http.Request) error {
	limit, offset, err := pageParams(r)
	if err != nil {
		return err
	}
	ms, total, err := s.opts.Modules.FindModules(r.Context(), wasmwiz.ModuleFilter{
		Name: r.URL.Query().Get("name"), Limit: limit, Offset: offset})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.ModuleList{Modules: apiList(ms, apiModule), Total: total.Count, TotalCapped: total.Capped})
	return nil
}

// getModule is GET /api/v1/modules/{id}.
func (s *Server) getModule(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !wasmwiz.ValidModuleID(id) {
		return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module %q not found", id)
	}
	m, err := s.opts.Modules.FindModuleByID(r.Context(), id)
	if err != nil {
		return err
	}
	am := apiModule(m)
	if u := wasmwiz.UserFromContext(r.Context()); u == nil || u.ID != m.OwnerID && !u.IsAdmin() {
		// Another's public module: what it is, not whose it is nor when
		// and how often it runs, which would show its owner's activity.
		am.OwnerID, am.LastRunAt, am.RunCount = 0, nil, 0
	}
	writeJSON(w, http.StatusOK, am)
	return nil
}

// deleteModule is DELETE /api/v1/modules/{id}.
func (s *Server) deleteModule(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !wasmwiz.ValidModuleID(id) {
		return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module %q not found", id)
	}
	if err := s.limitChange(r.Context()); err != nil {
		return err
	}
	if err := s.opts.Modules.DeleteModule(r.Context(), id); err != nil {
		return err
	}
	s.changed(r.Context(), "module deleted")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// updateModule is PATCH /api/v1/modules/{id}: the owner (or an admin)
// renames a module, changes its description or makes it public or private.
// A change of name or visibility applies to the next run of every replica.
func (s *Server) updateModule(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !wasmwiz.ValidModuleID(id) {
		return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module %q not found", id)
	}
	var upd api.ModuleUpdate
	if err := decodeSmallJSON(w, r, &upd); err != nil {
		return err
	}
	if upd.Name == nil && upd.Description == nil && upd.Public == nil {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "nothing to change: send name, description or public")
	}
	if upd.Name != nil {
		n := strings.TrimSpace(*upd.Name)
		upd.Name = &n
	}
	if err := s.limitChange(r.Context()); err != nil {
		return err
	}
	m, changed, err := s.opts.Modules.UpdateModule(r.Context(), id, wasmwiz.ModuleUpdate{Name: upd.Name, Description: upd.Description, Public: upd.Public})
	if err != nil {
		return err
	}
	if changed {
		s.changed(r.Context(), "module changed")
	}
	writeJSON(w, http.StatusOK, apiModule(m))
	return nil
}
