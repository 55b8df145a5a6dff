package wasmwiz

import (
	"context"
	"fmt"
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

// StoredModules is what a user keeps in the module registry: how many
// modules, and their bytes together. Every stored module counts, also one
// whose bytes another of the user's modules already holds: each is a copy.
type StoredModules struct {
	Count int64
	Bytes int64
}

// CheckStore returns ETOOLARGE when storing one more module of size bytes
// beside have would pass the tier's max_stored_modules or
// max_stored_module_bytes. The message names the tier, the limit and the
// figures, so that the caller knows what to delete. The stores call it in
// the transaction that inserts the module, after counting have.
func (t *Tier) CheckStore(have StoredModules, size int64) error {
	if n := have.Count + 1; n > t.MaxStoredModules {
		return Errorf(ETOOLARGE, "stored modules would be %d, over the %s tier's %d (max_stored_modules); delete one to store another",
			n, t.Name, t.MaxStoredModules)
	}
	if b := have.Bytes + size; b > t.MaxStoredModuleBytes {
		return Errorf(ETOOLARGE, "stored modules would be %s, over the %s tier's %s (max_stored_module_bytes): %d stored take %s and this one %s",
			roughSize(b), t.Name, FormatSize(t.MaxStoredModuleBytes), have.Count, roughSize(have.Bytes), roughSize(size))
	}
	return nil
}

// roughSize writes n bytes for a message: exact when a unit divides it
// ("20MiB"), else to a tenth of the largest unit it reaches, rounded up
// ("20.1MiB" for a byte over 20MiB), so that a figure over a limit never
// reads as the limit.
func roughSize(n int64) string {
	unit, name := int64(0), ""
	switch {
	case n >= GiB:
		unit, name = GiB, "GiB"
	case n >= MiB:
		unit, name = MiB, "MiB"
	case n >= KiB:
		unit, name = KiB, "KiB"
	}
	if unit == 0 || n%unit == 0 {
		return FormatSize(n)
	}
	tenths := (n*10 + unit - 1) / unit
	return fmt.Sprintf("%d.%d%s", tenths/10, tenths%10, name)
}

// ModuleService stores modules. A module is visible to its owner, to admins,
// and when Public to any authenticated caller (run and read, never delete).
type ModuleService interface {
	// CreateModule stores m (Name, Description, Wasm, Inspection, Public) for
	// the caller and sets ID, OwnerID, SHA256, SizeBytes and CreatedAt.
	// ETOOLARGE (Tier.CheckStore) when the module would take the caller past
	// its tier's registry quota, as it stands in the store when the module is
	// inserted: concurrent uploads cannot pass it together, and nothing is
	// stored when it refuses.
	CreateModule(ctx context.Context, m *Module) error
	// StoredModules returns what the caller keeps in the registry, as
	// CreateModule counts it: an upload that cannot be stored is refused
	// with it before its body is read or compiled. CreateModule still
	// decides, under concurrent uploads. EUNAUTHORIZED without a caller.
	StoredModules(ctx context.Context) (StoredModules, error)
	// FindModuleByID returns a module without its bytes. ENOTFOUND when it
	// does not exist or the caller may not see it.
	FindModuleByID(ctx context.Context, id string) (*Module, error)
	// FindModuleWasm returns a module with its bytes, under the same rules.
	FindModuleWasm(ctx context.Context, id string) (*Module, error)
	// FindModules lists the caller's own modules, newest first, with the
	// matching count up to MaxListTotal. EINVALID for a filter Validate
	// refuses (an offset past MaxListOffset).
	FindModules(ctx context.Context, filter ModuleFilter) ([]*Module, ListTotal, error)
	// UpdateModule applies upd to a module of the caller (any, for admins)
	// and returns it without its bytes. ENOTFOUND otherwise, also for
	// another user's public module; EINVALID for an empty name or a name or
	// description that is too long. changed reports a new name or
	// visibility (what the execute path caches; a description is not), the
	// changes that move the cache epoch.
	UpdateModule(ctx context.Context, id string, upd ModuleUpdate) (m *Module, changed bool, err error)
	// DeleteModule deletes a module of the caller (any, for admins). Runs that
	// used it keep their records. ENOTFOUND otherwise.
	DeleteModule(ctx context.Context, id string) error
}
