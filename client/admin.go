package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/wasmwiz/wasmwiz/api"
)

// Every method here calls an admin route: EFORBIDDEN for a caller that is
// not an admin, EUNAUTHORIZED without a valid key.

// AdminCreateUser creates a user (POST /api/v1/admin/users) and, with
// req.CreateKey, a key for it (CreatedUser.Key and Secret; nil and "" without).
// Errors: ECONFLICT for a taken email, EINVALID for a bad email, role or
// unknown tier.
func (c *Client) AdminCreateUser(ctx context.Context, req api.UserRequest) (*api.CreatedUser, error) {
	if !req.CreateKey {
		var out api.User
		if err := c.call(ctx, http.MethodPost, "/api/v1/admin/users", nil, req, &out); err != nil {
			return nil, err
		}
		return &api.CreatedUser{User: &out}, nil
	}
	var out api.CreatedUser
	return result(&out, c.call(ctx, http.MethodPost, "/api/v1/admin/users", nil, req, &out))
}

// AdminListUsers lists users by id with the total (GET
// /api/v1/admin/users); email filters by email.
func (c *Client) AdminListUsers(ctx context.Context, email string, page Page) ([]*api.User, api.ListTotal, error) {
	var out api.UserList
	err := c.call(ctx, http.MethodGet, "/api/v1/admin/users", page.query("email", email), nil, &out)
	return listResult(out.Users, out.Total, out.TotalCapped, err)
}

// AdminGetUser returns a user (GET /api/v1/admin/users/{id}); ENOTFOUND.
func (c *Client) AdminGetUser(ctx context.Context, id int64) (*api.User, error) {
	var out api.User
	return result(&out, c.call(ctx, http.MethodGet, idPath("/api/v1/admin/users", id), nil, nil, &out))
}

// AdminUpdateUser changes a user's tier, role or disabled flag (PATCH
// /api/v1/admin/users/{id}; nil fields of ch are left alone). ENOTFOUND,
// EINVALID for an unknown tier or role, ECONFLICT for the last active admin.
func (c *Client) AdminUpdateUser(ctx context.Context, id int64, ch api.UserUpdate) (*api.User, error) {
	var out api.User
	return result(&out, c.call(ctx, http.MethodPatch, idPath("/api/v1/admin/users", id), nil, ch, &out))
}

// AdminListTiers returns every tier (GET /api/v1/admin/tiers).
func (c *Client) AdminListTiers(ctx context.Context) ([]*api.Tier, error) {
	var out api.TierList
	if err := c.call(ctx, http.MethodGet, "/api/v1/admin/tiers", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Tiers, nil
}

// AdminGetTier returns a tier (GET /api/v1/admin/tiers/{name}); ENOTFOUND.
func (c *Client) AdminGetTier(ctx context.Context, name string) (*api.Tier, error) {
	var out api.Tier
	if err := c.call(ctx, http.MethodGet, "/api/v1/admin/tiers/"+url.PathEscape(name), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AdminCreateTier creates a tier (POST /api/v1/admin/tiers); every limit
// the server declares must be in t.Limits (AdminGetTier of an existing tier
// gives a complete set to start from). ECONFLICT when the name exists,
// EINVALID for a limit out of range or one the server does not know.
func (c *Client) AdminCreateTier(ctx context.Context, t *api.Tier) (*api.Tier, error) {
	var out api.Tier
	if err := c.call(ctx, http.MethodPost, "/api/v1/admin/tiers", nil, t, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AdminPutTier creates or replaces the tier t.Name (PUT
// /api/v1/admin/tiers/{name}) with t.Limits, as AdminCreateTier; it applies
// to the next request of every replica. EINVALID for a tier out of range.
func (c *Client) AdminPutTier(ctx context.Context, t *api.Tier) (*api.Tier, error) {
	var out api.Tier
	if err := c.call(ctx, http.MethodPut, "/api/v1/admin/tiers/"+url.PathEscape(t.Name), nil, t, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AdminListKeys lists keys (GET /api/v1/admin/keys); userID 0 lists every
// user's.
func (c *Client) AdminListKeys(ctx context.Context, userID int64, includeRevoked bool, page Page) ([]*api.APIKey, api.ListTotal, error) {
	q := keysQuery(includeRevoked, page)
	if userID != 0 {
		q.Set("user_id", strconv.FormatInt(userID, 10))
	}
	var out api.KeyList
	err := c.call(ctx, http.MethodGet, "/api/v1/admin/keys", q, nil, &out)
	return listResult(out.Keys, out.Total, out.TotalCapped, err)
}

// AdminCreateKey creates a key for any user (POST /api/v1/admin/keys).
// ENOTFOUND for an unknown user.
func (c *Client) AdminCreateKey(ctx context.Context, userID int64, name string, expiresAt *time.Time) (*api.CreatedKey, error) {
	var out api.CreatedKey
	return result(&out, c.call(ctx, http.MethodPost, "/api/v1/admin/keys", nil, api.KeyRequest{UserID: userID, Name: name, ExpiresAt: expiresAt}, &out))
}

// AdminRevokeKey revokes any key (DELETE /api/v1/admin/keys/{id}); ENOTFOUND.
func (c *Client) AdminRevokeKey(ctx context.Context, id int64) error {
	return c.call(ctx, http.MethodDelete, idPath("/api/v1/admin/keys", id), nil, nil, nil)
}

// AdminStats returns the admin totals (GET /api/v1/admin/stats).
func (c *Client) AdminStats(ctx context.Context) (*api.Stats, error) {
	var out api.Stats
	return result(&out, c.call(ctx, http.MethodGet, "/api/v1/admin/stats", nil, nil, &out))
}
