package wasmwiz

import (
	"context"
	"strings"
	"time"
)

// Role is what a user may do.
type Role string

// Roles.
const (
	RoleUser  Role = "user"
	RoleAdmin Role = "admin"
)

// User is an account. Email is unique regardless of case. The API sends it
// as api.User.
type User struct {
	ID        int64
	Email     string
	Role      Role
	Tier      string
	CreatedAt time.Time
	Disabled  bool

	// TierLimits is the user's tier as read together with the user by
	// APIKeyService.Authenticate (the same query, so it is as current as
	// Tier); nil when not loaded. Executor.CallerTier uses it when its Name
	// equals Tier and looks the tier up otherwise.
	TierLimits *Tier
}

// IsAdmin reports whether u is a (non-disabled) admin.
func (u *User) IsAdmin() bool { return u != nil && u.Role == RoleAdmin && !u.Disabled }

// NormalizeEmail trims and lower-cases an email and checks its rough shape.
func NormalizeEmail(email string) (string, error) {
	if err := CheckText("email", email); err != nil {
		return "", err
	}
	e := strings.ToLower(strings.TrimSpace(email))
	at := strings.IndexByte(e, '@')
	if at < 1 || at == len(e)-1 || strings.ContainsAny(e, " \t\r\n") || len(e) > 254 {
		return "", Errorf(EINVALID, "invalid email %q", email)
	}
	return e, nil
}

// UserFilter selects users. Zero values select everything.
type UserFilter struct {
	Email  string
	Limit  int
	Offset int
}

// UserUpdate changes a user; nil fields are left alone.
type UserUpdate struct {
	Tier     *string
	Role     *Role
	Disabled *bool
}

// UserService stores users. Every method is admin only (EFORBIDDEN for other
// callers) except FindUserByID of the caller itself.
type UserService interface {
	// CreateUser creates u (Email, Role, Tier) and sets its ID and CreatedAt.
	// ECONFLICT for a taken email (any case), EINVALID for a bad email, role or
	// unknown tier.
	CreateUser(ctx context.Context, u *User) error
	// FindUserByID returns a user; ENOTFOUND when it does not exist or is not
	// the caller (for non-admins).
	FindUserByID(ctx context.Context, id int64) (*User, error)
	// FindUsers lists users ordered by id, with the matching count up to
	// MaxListTotal. EINVALID for a filter Validate refuses (an offset past
	// MaxListOffset).
	FindUsers(ctx context.Context, filter UserFilter) ([]*User, ListTotal, error)
	// UpdateUser applies upd and returns the user. ENOTFOUND, EINVALID for an
	// unknown tier or role.
	UpdateUser(ctx context.Context, id int64, upd UserUpdate) (*User, error)
	// CountUsers returns how many users exist. It needs no caller, so that
	// serve can bootstrap the first admin on an empty database.
	CountUsers(ctx context.Context) (int, error)
}

// CheckLastAdmin returns ECONFLICT when updated, read back after an update,
// was the only one of the active admins before it (admins, read in the same
// transaction) and is no longer an active admin: an installation never
// loses its last admin, whoever asks (API, web page or CLI). Stores call it
// before they commit.
func CheckLastAdmin(admins []int64, updated *User) error {
	if len(admins) != 1 || admins[0] != updated.ID || updated.IsAdmin() {
		return nil
	}
	return Errorf(ECONFLICT, "user %d is the last active admin: make another user an admin before demoting or disabling this one", updated.ID)
}
