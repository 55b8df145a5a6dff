package http

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
)

func (s *Server) validKeyRequest(req *api.KeyRequest) error {
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" {
		req.Name = "default"
	}
	if len(req.Name) > 64 {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "key name is at most 64 bytes")
	}
	if req.ExpiresAt != nil && !req.ExpiresAt.After(s.now()) {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "expires_at must be in the future")
	}
	return nil
}

// createKey is POST /api/v1/keys: a key for the caller itself.
func (s *Server) createKey(w http.ResponseWriter, r *http.Request) error {
	u, err := wasmwiz.RequireUser(r.Context())
	if err != nil {
		return err
	}
	var req api.KeyRequest
	if err := decodeSmallJSON(w, r, &req); err != nil {
		return err
	}
	if req.UserID != 0 {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "user_id is for POST /api/v1/admin/keys; this route makes a key for you")
	}
	return s.writeNewKey(w, r, u.ID, &req)
}

func (s *Server) findKeys(w http.ResponseWriter, r *http.Request, userID int64) error {
	limit, offset, err := pageParams(r)
	if err != nil {
		return err
	}
	inclRevoked, err := boolParam(r, "include_revoked")
	if err != nil {
		return err
	}
	keys, total, err := s.opts.Keys.FindAPIKeys(r.Context(), wasmwiz.APIKeyFilter{
		UserID: userID, IncludeRevoked: inclRevoked, Limit: limit, Offset: offset})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.KeyList{Keys: apiList(keys, apiKey), Total: total.Count, TotalCapped: total.Capped})
	return nil
}

// listKeys is GET /api/v1/keys: the caller's own keys, always.
func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) error {
	u, err := wasmwiz.RequireUser(r.Context())
	if err != nil {
		return err
	}
	return s.findKeys(w, r, u.ID)
}

// revokeKey is DELETE /api/v1/keys/{id}: one of the caller's own keys
// (the store answers ENOTFOUND for another user's; admins may revoke any).
func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "key")
	if err != nil {
		return err
	}
	if err := s.limitChange(r.Context()); err != nil {
		return err
	}
	revoked, err := s.opts.Keys.RevokeAPIKey(r.Context(), id)
	if err != nil {
		return err
	}
	if revoked { // a revoked key revoked again: 204 all the same, nothing moved
		s.changed(r.Context(), "key revoked")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// adminListKeys is GET /api/v1/admin/keys?user_id=.
func (s *Server) adminListKeys(w http.ResponseWriter, r *http.Request) error {
	var userID int64
	if v := r.URL.Query().Get("user_id"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			return wasmwiz.Errorf(wasmwiz.EINVALID, "user_id must be a positive number")
		}
		userID = id
	}
	return s.findKeys(w, r, userID)
}

// adminCreateKey is POST /api/v1/admin/keys: a key for any user.
func (s *Server) adminCreateKey(w http.ResponseWriter, r *http.Request) error {
	var req api.KeyRequest
	if err := decodeSmallJSON(w, r, &req); err != nil {
		return err
	}
	if req.UserID <= 0 {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "user_id is required")
	}
	return s.writeNewKey(w, r, req.UserID, &req)
}

// writeNewKey makes the key req asks for, for user userID, and answers 201
// with it and its secret (shown this once).
func (s *Server) writeNewKey(w http.ResponseWriter, r *http.Request, userID int64, req *api.KeyRequest) error {
	if err := s.validKeyRequest(req); err != nil {
		return err
	}
	// Creating a key may delete the user's old ones (CreateAPIKey), which
	// may move the cache epoch: it counts as a change.
	if err := s.limitChange(r.Context()); err != nil {
		return err
	}
	k, secret, err := s.opts.Keys.CreateAPIKey(r.Context(), userID, req.Name, req.ExpiresAt)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, api.CreatedKey{Key: apiKey(k), Secret: secret})
	return nil
}
