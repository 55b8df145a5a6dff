package http

import (
	"net/http"
	"strings"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
)

// adminCreateUser is POST /api/v1/admin/users.
func (s *Server) adminCreateUser(w http.ResponseWriter, r *http.Request) error {
	var req api.UserRequest
	if err := decodeSmallJSON(w, r, &req); err != nil {
		return err
	}
	email, err := wasmwiz.NormalizeEmail(req.Email)
	if err != nil {
		return err
	}
	u := &wasmwiz.User{Email: email, Role: wasmwiz.Role(req.Role), Tier: strings.TrimSpace(req.Tier)}
	if u.Role == "" {
		u.Role = wasmwiz.RoleUser
	}
	if u.Role != wasmwiz.RoleUser && u.Role != wasmwiz.RoleAdmin {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "role must be user or admin")
	}
	if u.Tier == "" {
		u.Tier = wasmwiz.TierFree
	}
	if err := s.opts.Users.CreateUser(r.Context(), u); err != nil {
		return err
	}
	if !req.CreateKey {
		writeJSON(w, http.StatusCreated, apiUser(u))
		return nil
	}
	k, secret, err := s.opts.Keys.CreateAPIKey(r.Context(), u.ID, "default", nil)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, api.CreatedUser{User: apiUser(u), Key: apiKey(k), Secret: secret})
	return nil
}

// adminListUsers is GET /api/v1/admin/users.
func (s *Server) adminListUsers(w http.ResponseWriter, r *http.Request) error {
	limit, offset, err := pageParams(r)
	if err != nil {
		return err
	}
	users, total, err := s.opts.Users.FindUsers(r.Context(), wasmwiz.UserFilter{
		Email: r.URL.Query().Get("email"), Limit: limit, Offset: offset})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.UserList{Users: apiList(users, apiUser), Total: total.Count, TotalCapped: total.Capped})
	return nil
}

// adminGetUser is GET /api/v1/admin/users/{id}.
func (s *Server) adminGetUser(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "user")
	if err != nil {
		return err
	}
	u, err := s.opts.Users.FindUserByID(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiUser(u))
	return nil
}

// adminUpdateUser is PATCH /api/v1/admin/users/{id}: tier, role, disabled.
func (s *Server) adminUpdateUser(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "user")
	if err != nil {
		return err
	}
	var upd api.UserUpdate
	if err := decodeSmallJSON(w, r, &upd); err != nil {
		return err
	}
	if upd.Tier == nil && upd.Role == nil && upd.Disabled == nil {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "nothing to change: send tier, role or disabled")
	}
	var role *wasmwiz.Role
	if upd.Role != nil {
		if *upd.Role != api.RoleUser && *upd.Role != api.RoleAdmin {
			return wasmwiz.Errorf(wasmwiz.EINVALID, "role must be user or admin")
		}
		v := wasmwiz.Role(*upd.Role)
		role = &v
	}
	u, err := s.opts.Users.UpdateUser(r.Context(), id, wasmwiz.UserUpdate{Tier: upd.Tier, Role: role, Disabled: upd.Disabled})
	if err != nil {
		return err
	}
	s.changed(r.Context(), "user changed")
	writeJSON(w, http.StatusOK, apiUser(u))
	return nil
}
