package client

import (
	"bytes"
	"context"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/wasmwiz/wasmwiz/api"
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
func (c *Client) CreateModule(ctx context.Context, m ModuleUpload) (*api.Module, error) {
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
		return nil, errorf(api.EINTERNAL, err, "cannot encode the request: %v", err)
	}
	a, err := c.send(ctx, request{method: http.MethodPost, path: "/api/v1/modules", body: &buf, ctype: mw.FormDataContentType()})
	if err != nil {
		return nil, err
	}
	var out api.Module
	return result(&out, decode(a, &out))
}

// ListModules returns the caller's modules, newest first, and the total
// (GET /api/v1/modules); name filters by name. Errors: EUNAUTHORIZED,
// EINVALID for a bad page.
func (c *Client) ListModules(ctx context.Context, name string, page Page) ([]*api.Module, api.ListTotal, error) {
	var out api.ModuleList
	err := c.call(ctx, http.MethodGet, "/api/v1/modules", page.query("name", name), nil, &out)
	return listResult(out.Modules, out.Total, out.TotalCapped, err)
}

// GetModule returns a module the caller can see (GET /api/v1/modules/{id}).
// ENOTFOUND when it does not exist or is another user's private module.
func (c *Client) GetModule(ctx context.Context, id string) (*api.Module, error) {
	var out api.Module
	return result(&out, c.call(ctx, http.MethodGet, "/api/v1/modules/"+url.PathEscape(id), nil, nil, &out))
}

// UpdateModule renames one of the caller's modules (any, for admins),
// changes its description, or makes it public or private (PATCH
// /api/v1/modules/{id}; nil fields of ch are left alone); a change of name
// or visibility applies to the next run on every replica. ENOTFOUND for a
// module that is not the caller's, EINVALID for a bad name or description.
func (c *Client) UpdateModule(ctx context.Context, id string, ch api.ModuleUpdate) (*api.Module, error) {
	var out api.Module
	return result(&out, c.call(ctx, http.MethodPatch, "/api/v1/modules/"+url.PathEscape(id), nil, ch, &out))
}

// DeleteModule deletes one of the caller's modules (DELETE
// /api/v1/modules/{id}). ENOTFOUND for anything else.
func (c *Client) DeleteModule(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/api/v1/modules/"+url.PathEscape(id), nil, nil, nil)
}

// RunQuery selects the caller's runs.
type RunQuery struct {
	Status api.Status // empty: any
	Since  time.Time  // zero: no lower bound (inclusive)
	Until  time.Time  // zero: no upper bound (exclusive)
	Page
}

// ListRuns returns the caller's runs, newest first, and the total (GET
// /api/v1/runs). Errors: EUNAUTHORIZED, EINVALID.
func (c *Client) ListRuns(ctx context.Context, rq RunQuery) ([]*api.Run, api.ListTotal, error) {
	q := rq.Page.query("status", string(rq.Status), "since", timeParam(rq.Since), "until", timeParam(rq.Until))
	var out api.RunList
	err := c.call(ctx, http.MethodGet, "/api/v1/runs", q, nil, &out)
	return listResult(out.Runs, out.Total, out.TotalCapped, err)
}

// GetRun returns one of the caller's runs (GET /api/v1/runs/{id}); ENOTFOUND
// for another user's or a missing run.
func (c *Client) GetRun(ctx context.Context, id string) (*api.Run, error) {
	var out api.Run
	return result(&out, c.call(ctx, http.MethodGet, "/api/v1/runs/"+url.PathEscape(id), nil, nil, &out))
}

// Usage returns the caller's runs against its tier's quotas (GET
// /api/v1/usage). EUNAUTHORIZED without a valid key.
func (c *Client) Usage(ctx context.Context) (*api.Usage, error) {
	var out api.Usage
	return result(&out, c.call(ctx, http.MethodGet, "/api/v1/usage", nil, nil, &out))
}

// Me returns the caller, its tier with the per-run limits as they apply to
// it, and each limit described (GET /api/v1/me). EUNAUTHORIZED without a
// valid key.
func (c *Client) Me(ctx context.Context) (*api.Me, error) {
	var out api.Me
	return result(&out, c.call(ctx, http.MethodGet, "/api/v1/me", nil, nil, &out))
}

// CreateKey creates a key for the caller (POST /api/v1/keys); expiresAt nil
// never expires. The secret is in the answer only. Errors: EUNAUTHORIZED,
// EINVALID.
func (c *Client) CreateKey(ctx context.Context, name string, expiresAt *time.Time) (*api.CreatedKey, error) {
	var out api.CreatedKey
	return result(&out, c.call(ctx, http.MethodPost, "/api/v1/keys", nil, api.KeyRequest{Name: name, ExpiresAt: expiresAt}, &out))
}

// timeParam is t as a query parameter; "" (left out) for the zero time.
func timeParam(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
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
func (c *Client) ListKeys(ctx context.Context, includeRevoked bool, page Page) ([]*api.APIKey, api.ListTotal, error) {
	var out api.KeyList
	err := c.call(ctx, http.MethodGet, "/api/v1/keys", keysQuery(includeRevoked, page), nil, &out)
	return listResult(out.Keys, out.Total, out.TotalCapped, err)
}

// RevokeKey revokes one of the caller's keys (DELETE /api/v1/keys/{id});
// ENOTFOUND for another user's key.
func (c *Client) RevokeKey(ctx context.Context, id int64) error {
	return c.call(ctx, http.MethodDelete, idPath("/api/v1/keys", id), nil, nil, nil)
}
