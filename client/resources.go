package client

import (
	"bytes"
	"context"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// ModuleUpload is a module to store.
type ModuleUpload struct {
	Wasm        []byte
	Name        string // default: the server's ("module.wasm")
	Description string
	Public      bool
}

// CreateModule uploads a module (POST /api/v1/modules, multipart) and returns
// it with the server's inspection. Errors: EINVALID for a module that cannot
// run (not wasm, a component, unsatisfiable imports…; nothing is stored),
// ETOOLARGE, EUNAUTHORIZED, ERATELIMIT, EUNAVAILABLE.
func (c *Client) CreateModule(ctx context.Context, m ModuleUpload) (*wasmwiz.Module, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	name := m.Name
	if name == "" {
		name = "module.wasm"
	}
	w, _ := mw.CreateFormFile("wasm", name)
	_, _ = w.Write(m.Wasm)
	if m.Name != "" {
		_ = mw.WriteField("name", m.Name)
	}
	if m.Description != "" {
		_ = mw.WriteField("description", m.Description)
	}
	_ = mw.WriteField("public", strconv.FormatBool(m.Public))
	if err := mw.Close(); err != nil {
		return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "cannot encode the request: %v", err)
	}
	a, err := c.send(ctx, request{method: http.MethodPost, path: "/api/v1/modules", body: &buf, ctype: mw.FormDataContentType()})
	if err != nil {
		return nil, err
	}
	var out wasmwiz.Module
	return &out, decode(a, &out)
}

// ListModules returns the caller's modules, newest first, and the total
// (GET /api/v1/modules); name filters by name. Errors: EUNAUTHORIZED,
// EINVALID for a bad page.
func (c *Client) ListModules(ctx context.Context, name string, page Page) ([]*wasmwiz.Module, int, error) {
	q := page.query()
	if name != "" {
		q.Set("name", name)
	}
	var out struct {
		Modules []*wasmwiz.Module `json:"modules"`
		Total   int               `json:"total"`
	}
	err := c.call(ctx, http.MethodGet, "/api/v1/modules", q, nil, &out)
	return out.Modules, out.Total, err
}

// GetModule returns a module the caller can see (GET /api/v1/modules/{id}).
// ENOTFOUND when it does not exist or is another user's private module.
func (c *Client) GetModule(ctx context.Context, id string) (*wasmwiz.Module, error) {
	var out wasmwiz.Module
	return &out, c.call(ctx, http.MethodGet, "/api/v1/modules/"+url.PathEscape(id), nil, nil, &out)
}

// ModuleChange is what UpdateModule changes; nil fields are left alone.
type ModuleChange struct {
	Name        *string `json:"name,omitempty"`
	Description *string `json:"description,omitempty"`
	Public      *bool   `json:"public,omitempty"`
}

// UpdateModule renames one of the caller's modules (any, for admins),
// changes its description, or makes it public or private (PATCH
// /api/v1/modules/{id}); a change of name or visibility applies to the next
// run on every replica. ENOTFOUND for a module that is not the caller's,
// EINVALID for a bad name or description.
func (c *Client) UpdateModule(ctx context.Context, id string, ch ModuleChange) (*wasmwiz.Module, error) {
	var out wasmwiz.Module
	return &out, c.call(ctx, http.MethodPatch, "/api/v1/modules/"+url.PathEscape(id), nil, ch, &out)
}

// DeleteModule deletes one of the caller's modules (DELETE
// /api/v1/modules/{id}). ENOTFOUND for anything else.
func (c *Client) DeleteModule(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/api/v1/modules/"+url.PathEscape(id), nil, nil, nil)
}

// RunQuery selects the caller's runs.
type RunQuery struct {
	Status wasmwiz.Status
	Since  time.Time
	Until  time.Time
	Page
}

// ListRuns returns the caller's runs, newest first, and the total (GET
// /api/v1/runs). Errors: EUNAUTHORIZED, EINVALID.
func (c *Client) ListRuns(ctx context.Context, rq RunQuery) ([]*wasmwiz.UsageRecord, int, error) {
	q := rq.Page.query()
	if rq.Status != "" {
		q.Set("status", string(rq.Status))
	}
	if !rq.Since.IsZero() {
		q.Set("since", rq.Since.UTC().Format(time.RFC3339Nano))
	}
	if !rq.Until.IsZero() {
		q.Set("until", rq.Until.UTC().Format(time.RFC3339Nano))
	}
	var out struct {
		Runs  []*wasmwiz.UsageRecord `json:"runs"`
		Total int                    `json:"total"`
	}
	err := c.call(ctx, http.MethodGet, "/api/v1/runs", q, nil, &out)
	return out.Runs, out.Total, err
}

// GetRun returns one of the caller's runs (GET /api/v1/runs/{id}); ENOTFOUND
// for another user's or a missing run.
func (c *Client) GetRun(ctx context.Context, id string) (*wasmwiz.UsageRecord, error) {
	var out wasmwiz.UsageRecord
	return &out, c.call(ctx, http.MethodGet, "/api/v1/runs/"+url.PathEscape(id), nil, nil, &out)
}

// Usage returns the caller's runs against its tier's quotas (GET
// /api/v1/usage). EUNAUTHORIZED without a valid key.
func (c *Client) Usage(ctx context.Context) (*wasmwiz.Usage, error) {
	var out wasmwiz.Usage
	return &out, c.call(ctx, http.MethodGet, "/api/v1/usage", nil, nil, &out)
}

// Me returns the caller and its tier (GET /api/v1/me). EUNAUTHORIZED without
// a valid key.
func (c *Client) Me(ctx context.Context) (*wasmwiz.User, *wasmwiz.Tier, error) {
	var out struct {
		User *wasmwiz.User `json:"user"`
		Tier *wasmwiz.Tier `json:"tier"`
	}
	if err := c.call(ctx, http.MethodGet, "/api/v1/me", nil, nil, &out); err != nil {
		return nil, nil, err
	}
	return out.User, out.Tier, nil
}

// NewKey is a key just created: its record and its secret, which the server
// shows only this once.
type NewKey struct {
	Key    *wasmwiz.APIKey `json:"key"`
	Secret string          `json:"secret"`
}

type keyRequest struct {
	UserID    int64      `json:"user_id,omitempty"`
	Name      string     `json:"name"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// CreateKey creates a key for the caller (POST /api/v1/keys); expiresAt nil
// never expires. Errors: EUNAUTHORIZED, EINVALID.
func (c *Client) CreateKey(ctx context.Context, name string, expiresAt *time.Time) (*NewKey, error) {
	var out NewKey
	return &out, c.call(ctx, http.MethodPost, "/api/v1/keys", nil, keyRequest{Name: name, ExpiresAt: expiresAt}, &out)
}

func keysQuery(includeRevoked bool, page Page) url.Values {
	q := page.query()
	if includeRevoked {
		q.Set("include_revoked", "true")
	}
	return q
}

// ListKeys returns the caller's keys, newest first, and the total (GET
// /api/v1/keys). EUNAUTHORIZED.
func (c *Client) ListKeys(ctx context.Context, includeRevoked bool, page Page) ([]*wasmwiz.APIKey, int, error) {
	var out struct {
		Keys  []*wasmwiz.APIKey `json:"keys"`
		Total int               `json:"total"`
	}
	err := c.call(ctx, http.MethodGet, "/api/v1/keys", keysQuery(includeRevoked, page), nil, &out)
	return out.Keys, out.Total, err
}

// RevokeKey revokes one of the caller's keys (DELETE /api/v1/keys/{id});
// ENOTFOUND for another user's key.
func (c *Client) RevokeKey(ctx context.Context, id int64) error {
	return c.call(ctx, http.MethodDelete, idPath("/api/v1/keys", id), nil, nil, nil)
}
