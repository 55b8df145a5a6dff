package api

import "github.com/wasmwiz/wasmwiz"

// List bounds (docs/API.md, Lists): a list takes an offset up to
// MaxListOffset (400 EINVALID past it), and its total counts matching items
// up to MaxListTotal; past that it answers "total": MaxListTotal with
// "total_capped": true.
const (
	MaxListOffset = wasmwiz.MaxListOffset
	MaxListTotal  = wasmwiz.MaxListTotal
)

// ListTotal is a list's total as package client returns it: Count is the
// answer's "total", Capped its "total_capped" (more than MaxListTotal
// items match).
type ListTotal = wasmwiz.ListTotal
