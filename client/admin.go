package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// Every method here calls an admin route: EFORBIDDEN for a caller that is
// not an admin, EUNAUTHORIZED without a valid key.

// NewUser is a user to create.
type NewUser struct {
	Email string       `json:"email"`
	Role  wasmwiz.Role `json:"role,omitempty"` // default user
	Tier  string       `json:"tier,omitempty"` // default free
}

// CreatedUser is a new user and, when asked for, its first key.
type CreatedUser struct {
	User *wasmwiz.User
	Key  *NewKey // nil unless a key was asked for
}

// AdminCreateUser creates a user (POST /api/v1/admin/users) and, with
// withKey, a key for it. Errors: ECONFLICT for a taken email, EINVALID for
// a bad email, role or unknown tier.
func (c *Client) AdminCreateUser(ctx context.Context, u NewUser, withKey bool) (*CreatedUser, error) {
	body := struct {
		NewUser
		CreateKey bool `json:"create_key,omitempty"`
	}{u, withKey}
	if !withKey {
		var out wasmwiz.User
		if err := c.call(ctx, http.MethodPost, "/api/v1/admin/users", nil, body, &out); err != nil {
			return nil, err
		}
		return &CreatedUser{User: &out}, nil
	}
	var out struct {
		User   *wasmwiz.User   `json:"user"`
		Key    *wasmwiz.APIKey `json:"key"`
		Secret string          `json:"secret"`
	}
	if err := c.call(ctx, http.MethodPost, "/api/v1/admin/users", nil, body, &out); err != nil {
		return nil, err
	}
	return &CreatedUser{User: out.User, Key: &NewKey{Key: out.Key, Secret: out.Secret}}, nil
}

// AdminListUsers lists users by id with the total (GET
// /api/v1/admin/users); email filters by email.
func (c *Client) AdminListUsers(ctx context.Context, email string, page Page) ([]*wasmwiz.User, int, error) {
	q := page.query()
	if email != "" {
		q.Set("email", email)
	}
	var out struct {
		Users []*wasmwiz.User `json:"users"`
		Total int             `json:"total"`
	}
	err := c.call(ctx, http.MethodGet, "/api/v1/admin/users", q, nil, &out)
	return out.Users, out.Total, err
}

// AdminGetUser returns a user (GET /api/v1/admin/users/{id}); ENOTFOUND.
func (c *Client) AdminGetUser(ctx context.Context, id int64) (*wasmwiz.User, error) {
	var out wasmwiz.User
	return &out, c.call(ctx, http.MethodGet, idPath("/api/v1/admin/users", id), nil, nil, &out)
}

// UserChange changes a user; nil fields are left alone.
type UserChange struct {
	Tier     *string       `json:"tier,omitempty"`
	Role     *wasmwiz.Role `json:"role,omitempty"`
	Disabled *bool         `json:"disabled,omitempty"`
}

// AdminUpdateUser changes a user's tier, role or disabled flag (PATCH
// /api/v1/admin/users/{id}). ENOTFOUND, EINVALID for an unknown tier or role.
func (c *Client) AdminUpdateUser(ctx context.Context, id int64, ch UserChange) (*wasmwiz.User, error) {
	var out wasmwiz.User
	return &out, c.call(ctx, http.MethodPatch, idPath("/api/v1/admin/users", id), nil, ch, &out)
}

// AdminListTiers returns every tier (GET /api/v1/admin/tiers).
func (c *Client) AdminListTiers(ctx context.Context) ([]*wasmwiz.Tier, error) {
	var out struct {
		Tiers []*wasmwiz.Tier `json:"tiers"`
	}
	if err := c.call(ctx, http.MethodGet, "/api/v1/admin/tiers", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Tiers, nil
}

// AdminGetTier returns a tier (GET /api/v1/admin/tiers/{name}); ENOTFOUND.
func (c *Client) AdminGetTier(ctx context.Context, name string) (*wasmwiz.Tier, error) {
	var out wasmwiz.Tier
	if err := c.call(ctx, http.MethodGet, "/api/v1/admin/tiers/"+url.PathEscape(name), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AdminCreateTier creates a tier (POST /api/v1/admin/tiers). ECONFLICT when
// the name exists, EINVALID for a tier out of range.
func (c *Client) AdminCreateTier(ctx context.Context, t *wasmwiz.Tier) (*wasmwiz.Tier, error) {
	var out wasmwiz.Tier
	if err := c.call(ctx, http.MethodPost, "/api/v1/admin/tiers", nil, t, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AdminPutTier creates or replaces the tier t.Name (PUT
// /api/v1/admin/tiers/{name}); it applies to the next request of every
// replica. EINVALID for a tier out of range.
func (c *Client) AdminPutTier(ctx context.Context, t *wasmwiz.Tier) (*wasmwiz.Tier, error) {
	var out wasmwiz.Tier
	if err := c.call(ctx, http.MethodPut, "/api/v1/admin/tiers/"+url.PathEscape(t.Name), nil, t, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AdminListKeys lists keys (GET /api/v1/admin/keys); userID 0 lists every
// user's.
func (c *Client) AdminListKeys(ctx context.Context, userID int64, includeRevoked bool, page Page) ([]*wasmwiz.APIKey, int, error) {
	q := keysQuery(includeRevoked, page)
	if userID != 0 {
		q.Set("user_id", strconv.FormatInt(userID, 10))
	}
	var out struct {
		Keys  []*wasmwiz.APIKey `json:"keys"`
		Total int               `json:"total"`
	}
	err := c.call(ctx, http.MethodGet, "/api/v1/admin/keys", q, nil, &out)
	return out.Keys, out.Total, err
}

// AdminCreateKey creates a key for any user (POST /api/v1/admin/keys).
// ENOTFOUND for an unknown user.
func (c *Client) AdminCreateKey(ctx context.Context, userID int64, name string, expiresAt *time.Time) (*NewKey, error) {
	var out NewKey
	return &out, c.call(ctx, http.MethodPost, "/api/v1/admin/keys", nil, keyRequest{UserID: userID, Name: name, ExpiresAt: expiresAt}, &out)
}

// AdminRevokeKey revokes any key (DELETE /api/v1/admin/keys/{id}); ENOTFOUND.
func (c *Client) AdminRevokeKey(ctx context.Context, id int64) error {
	return c.call(ctx, http.MethodDelete, idPath("/api/v1/admin/keys", id), nil, nil, nil)
}

// AdminStats returns the admin totals (GET /api/v1/admin/stats).
func (c *Client) AdminStats(ctx context.Context) (*wasmwiz.Stats, error) {
	var out wasmwiz.Stats
	return &out, c.call(ctx, http.MethodGet, "/api/v1/admin/stats", nil, nil, &out)
}
