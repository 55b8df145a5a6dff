package wasmwiz

import (
	"context"
	"time"
)

type contextKey int

const (
	userContextKey contextKey = iota + 1
	apiKeyContextKey
	requestIDContextKey
	admittedContextKey
	ownDeadlineContextKey
	ownerContextKey
)

// NewContextWithUser returns ctx carrying the authenticated user, whose id
// every store method uses to scope what it reads and writes.
func NewContextWithUser(ctx context.Context, u *User) context.Context {
	return context.WithValue(ctx, userContextKey, u)
}

// UserFromContext returns the authenticated user, or nil.
func UserFromContext(ctx context.Context) *User {
	u, _ := ctx.Value(userContextKey).(*User)
	return u
}

// NewContextWithOwner returns ctx naming whose work it does: RateKey's
// string ("user:<id>", or "ip:<address>" for an anonymous caller), the
// identity the tier's limits count. The engine shares its compiled-code
// caches among owners by it: when a cache is full, the owner holding the
// most gives up its least recently used module first, so one tenant
// compiling a stream of distinct modules evicts its own code, not the
// others'.
func NewContextWithOwner(ctx context.Context, owner string) context.Context {
	return context.WithValue(ctx, ownerContextKey, owner)
}

// OwnerFromContext returns the owner NewContextWithOwner set, else the
// authenticated user's RateKey, else "" (work of no one in particular,
// such as the server's own).
func OwnerFromContext(ctx context.Context) string {
	if o, ok := ctx.Value(ownerContextKey).(string); ok {
		return o
	}
	if u := UserFromContext(ctx); u != nil {
		return RateKey(u, "")
	}
	return ""
}

// NewContextWithAPIKey returns ctx carrying the key the caller used.
func NewContextWithAPIKey(ctx context.Context, k *APIKey) context.Context {
	return context.WithValue(ctx, apiKeyContextKey, k)
}

// APIKeyFromContext returns the key the caller used, or nil.
func APIKeyFromContext(ctx context.Context) *APIKey {
	k, _ := ctx.Value(apiKeyContextKey).(*APIKey)
	return k
}

// NewContextWithRequestID returns ctx carrying the request id.
func NewContextWithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDContextKey, id)
}

// RequestIDFromContext returns the request id, or "".
func RequestIDFromContext(ctx context.Context) string {
	id, _ := ctx.Value(requestIDContextKey).(string)
	return id
}

// NewContextWithAdmitted returns ctx carrying f, which the Executor calls
// once it admits the request's run (Admit, or Execute's own admission):
// from then on the run holds one of its tier's concurrency slots, and what
// bounded the request until then (the HTTP layer's bound on a user's
// execute requests waiting for admission) may let it go. f may be called
// more than once, and is not called for a request refused before.
func NewContextWithAdmitted(ctx context.Context, f func()) context.Context {
	return context.WithValue(ctx, admittedContextKey, f)
}

// admitted calls ctx's NewContextWithAdmitted function, if any.
func admitted(ctx context.Context) {
	if f, ok := ctx.Value(admittedContextKey).(func()); ok {
		f()
	}
}

// WithOwnDeadline returns ctx marked so that the store calls made with it
// are bounded by ctx's own deadline instead of the store's call timeout
// (WASMWIZ_DATABASE_TIMEOUT, which a store otherwise applies to each call
// even when ctx would allow longer). It is for background work that
// deliberately waits longer than a request should: writing a finished
// background run's record, a usage batch. A marked ctx without a deadline
// still gets the call timeout, so no call is unbounded. Never for a
// request's context: a request must fail at the call timeout, not hold its
// slots while the database is slow.
func WithOwnDeadline(ctx context.Context) context.Context {
	return context.WithValue(ctx, ownDeadlineContextKey, true)
}

// OwnDeadline returns ctx's deadline when ctx is marked by WithOwnDeadline
// and has one: the stores then bound their calls by it alone.
func OwnDeadline(ctx context.Context) (time.Time, bool) {
	if marked, _ := ctx.Value(ownDeadlineContextKey).(bool); !marked {
		return time.Time{}, false
	}
	return ctx.Deadline()
}

// SystemContext returns ctx acting as the system administrator, for the admin
// CLI and the bootstrap in serve, which act on the database directly.
func SystemContext(ctx context.Context) context.Context {
	return NewContextWithUser(ctx, &User{ID: 0, Email: "system", Role: RoleAdmin})
}

// RequireUser returns the caller, or EUNAUTHORIZED.
func RequireUser(ctx context.Context) (*User, error) {
	u := UserFromContext(ctx)
	if u == nil {
		return nil, Errorf(EUNAUTHORIZED, "authentication required")
	}
	return u, nil
}

// RequireAdmin returns the caller when it is an admin, EUNAUTHORIZED without
// a caller and EFORBIDDEN for others.
func RequireAdmin(ctx context.Context) (*User, error) {
	u, err := RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	if !u.IsAdmin() {
		return nil, Errorf(EFORBIDDEN, "admin only")
	}
	return u, nil
}
