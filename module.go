package wasmwiz

import (
	"context"
	"time"
)

// Module is a stored module: uploaded once, run many times. The same bytes
// uploaded by two users are two modules. The API sends it as api.Module.
type Module struct {
	ID          string
	OwnerID     int64
	Name        string
	Description string
	SHA256      string
	SizeBytes   int64
	Wasm        []byte // loaded only by FindModuleWasm
	Inspection  *Inspection
	Public      bool
	CreatedAt   time.Time
	LastRunAt   *time.Time
	RunCount    int64
}

// ModuleFilter selects the caller's modules.
type ModuleFilter struct {
	Name   string
	Limit  int
	Offset int
}

// ModuleUpdate changes a stored module; nil fields are left alone.
type ModuleUpdate struct {
	Name        *string
	Description *string
	Public      *bool
}

// ModuleService stores modules. A module is visible to its owner, to admins,
// and when Public to any authenticated caller (run and read, never delete).
type ModuleService interface {
	// CreateModule stores m (Name, Description, Wasm, Inspection, Public) for
	// the caller and sets ID, OwnerID, SHA256, SizeBytes and CreatedAt.
	CreateModule(ctx context.Context, m *Module) error
	// FindModuleByID returns a module without its bytes. ENOTFOUND when it
	// does not exist or the caller may not see it.
	FindModuleByID(ctx context.Context, id string) (*Module, error)
	// FindModuleWasm returns a module with its bytes, under the same rules.
	FindModuleWasm(ctx context.Context, id string) (*Module, error)
	// FindModules lists the caller's own modules, newest first, with the total.
	FindModules(ctx context.Context, filter ModuleFilter) ([]*Module, int, error)
	// UpdateModule applies upd to a module of the caller (any, for admins)
	// and returns it without its bytes. ENOTFOUND otherwise, also for
	// another user's public module; EINVALID for an empty name or a name or
	// description that is too long.
	UpdateModule(ctx context.Context, id string, upd ModuleUpdate) (*Module, error)
	// DeleteModule deletes a module of the caller (any, for admins). Runs that
	// used it keep their records. ENOTFOUND otherwise.
	DeleteModule(ctx context.Context, id string) error
}
