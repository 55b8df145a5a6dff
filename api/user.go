package api

import (
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// Role is what a user may do.
type Role = wasmwiz.Role

// Roles.
const (
	RoleUser  = wasmwiz.RoleUser
	RoleAdmin = wasmwiz.RoleAdmin
)

// User is an account.
type User struct {
	ID        int64     `json:"id"`
	Email     string    `json:"email"`
	Role      Role      `json:"role"`
	Tier      string    `json:"tier"` // the name of its tier
	CreatedAt time.Time `json:"created_at"`
	Disabled  bool      `json:"disabled"`
}

// UserList is a page of users and how many there are in all, counted up to
// MaxListTotal: past it Total is MaxListTotal and TotalCapped is set.
type UserList struct {
	Users       []*User `json:"users"`
	Total       int     `json:"total"`
	TotalCapped bool    `json:"total_capped"`
}

// UserRequest is the body of POST /api/v1/admin/users.
type UserRequest struct {
	Email     string `json:"email"`
	Role      Role   `json:"role,omitempty"`       // default user
	Tier      string `json:"tier,omitempty"`       // default free
	CreateKey bool   `json:"create_key,omitempty"` // also create a key: the answer is a CreatedUser
}

// CreatedUser is the answer of POST /api/v1/admin/users with create_key:
// the user, its first key and that key's secret, shown only this once.
// Without create_key the answer is the User alone.
type CreatedUser struct {
	User   *User   `json:"user"`
	Key    *APIKey `json:"key"`
	Secret string  `json:"secret"`
}

// UserUpdate is the body of PATCH /api/v1/admin/users/{id}; nil fields are
// left alone.
type UserUpdate struct {
	Tier     *string `json:"tier,omitempty"`
	Role     *Role   `json:"role,omitempty"`
	Disabled *bool   `json:"disabled,omitempty"`
}

// APIKey is a key of a user, without its secret.
type APIKey struct {
	ID         int64      `json:"id"`
	UserID     int64      `json:"user_id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"` // the key's first characters, for listings
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

// KeyList is a page of keys and how many there are in all, counted up to
// MaxListTotal: past it Total is MaxListTotal and TotalCapped is set.
type KeyList struct {
	Keys        []*APIKey `json:"keys"`
	Total       int       `json:"total"`
	TotalCapped bool      `json:"total_capped"`
}

// KeyRequest is the body of POST /api/v1/keys (a key for the caller) and
// POST /api/v1/admin/keys (a key for UserID).
type KeyRequest struct {
	UserID    int64      `json:"user_id,omitempty"` // the admin route only
	Name      string     `json:"name"`              // default "default"
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// CreatedKey is a key just created and its secret, which the server shows
// only this once.
type CreatedKey struct {
	Key    *APIKey `json:"key"`
	Secret string  `json:"secret"`
}
