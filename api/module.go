package api

import (
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// Module is a stored module (POST, GET /api/v1/modules): uploaded once, run
// many times by its id.
type Module struct {
	ID          string      `json:"id"` // mod_…
	OwnerID     int64       `json:"owner_id"`
	Name        string      `json:"name"` // argv[0] of its runs
	Description string      `json:"description"`
	SHA256      string      `json:"sha256"`
	SizeBytes   int64       `json:"size_bytes"`
	Inspection  *Inspection `json:"inspection"`
	Public      bool        `json:"public"` // any authenticated caller may run it
	CreatedAt   time.Time   `json:"created_at"`
	LastRunAt   *time.Time  `json:"last_run_at,omitempty"`
	RunCount    int64       `json:"run_count"`
}

// ModuleList is a page of modules and how many there are in all, counted up to
// MaxListTotal: past it Total is MaxListTotal and TotalCapped is set.
type ModuleList struct {
	Modules     []*Module `json:"modules"`
	Total       int       `json:"total"`
	TotalCapped bool      `json:"total_capped"`
}

// ModuleUpdate is the body of PATCH /api/v1/modules/{id}; nil fields are
// left alone.
type ModuleUpdate struct {
	Name        *string `json:"name,omitempty"`
	Description *string `json:"description,omitempty"`
	Public      *bool   `json:"public,omitempty"`
}

// Inspection is what the server learned about a module without running
// it: the domain's type, whose JSON the stores keep and the API sends.
type Inspection = wasmwiz.Inspection

// FuncSignature is a function type, e.g. params ["i32","i32"], results
// ["i32"].
type FuncSignature = wasmwiz.FuncSignature

// Import is one import of a module.
type Import = wasmwiz.Import

// Export is one export of a module.
type Export = wasmwiz.Export

// MemoryInfo is a module's declared linear memory, in 64 KiB pages.
type MemoryInfo = wasmwiz.MemoryInfo
