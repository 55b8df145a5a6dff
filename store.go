package wasmwiz

import "context"

// Store is everything a WasmWiz database provides: every service interface
// of this package, the first admin's creation, and a health check. The
// SQLite and PostgreSQL stores are Stores, and pass one conformance suite
// (internal/storetest); cmd/wasmwiz opens one of them and wires it to the
// layers that each take the service they need.
type Store interface {
	UserService
	APIKeyService
	TierService
	ModuleService
	RunService
	CacheEpochService
	RunQueueService

	// Bootstrap creates the first admin (the enterprise tier) and a key
	// named "bootstrap" for it when there is no user at all, and returns the
	// key's plaintext, which is never stored and shown only here. On a
	// database with any user it does nothing and returns created false.
	// EINVALID for a bad email.
	Bootstrap(ctx context.Context, email string) (user *User, key string, created bool, err error)
	// Ping returns nil when the database answers, EUNAVAILABLE otherwise.
	Ping(ctx context.Context) error
}
