package engine

import (
	"strconv"
	"strings"

	"github.com/wasmwiz/wasmwiz"
)

// A run's memory cap covers every byte the guest can make the host
// allocate, not only its linear memory: wazero allocates an instance's
// tables, globals, element and data segments and its own bookkeeping on the
// Go heap, where the memory allocator (memory.go) does not see them. The
// engine counts them from the module's sections before compiling (a
// footprint, the same for every instance of the module), gives the linear
// memory what is left of the cap, and refuses a module whose footprint and
// minimum memory do not fit (EINVALID, like a minimum memory over the cap).
//
// Tables can also grow at run time (table.grow), on the Go heap and up to
// 2^32 elements when the module declares no maximum: a 61-byte guest
// growing a table took a worker to 3.9 GB under a 128 MiB cap. Before
// compiling, the engine rewrites each table's maximum to at most
// tableGrowthAllowance elements past its minimum (growth past it fails in
// the guest, table.grow returning -1, as the specification allows), and
// counts that growth in the footprint. The rewrite touches only the limits
// of the table section; the module's digest, inspection and cache key stay
// those of the bytes the caller sent.
//
// What remains dynamic is bounded by the worker process's own limit
// (internal/worker): wazero's call stack (host memory, grown by doubling to
// about 100 MB) and the function references ref.func allocates each time it
// runs.

// The host's bytes per instance of each part of a module, measured with
// wazero v1.12.0 on linux/amd64 and rounded up (TestFootprintCoversWazero
// checks every one against the Go heap).
const (
	instanceBaseBytes = 32 * wasmwiz.KiB // module instance, engine context, first call stack, the run's buffers
	tableBytes        = 128              // a table
	tableElementBytes = 8                // an element of a table's minimum
	// tableGrowthBytes is an element a table may grow by: table.grow
	// appends to a Go slice, whose capacity may double, and copies it.
	tableGrowthBytes  = 24
	globalBytes       = 96 // a global: its instance, pointer and engine slot
	elementEntryBytes = 64 // an entry of an active or passive element segment: a function reference
	dataSegmentBytes  = 32 // a data segment (its bytes stay the module's)
	importedFuncBytes = 32 // an imported function's engine slot
	typeBytes         = 8  // a function type's id
	tagBytes          = 32 // an exception tag
)

// tableGrowthAllowance is how many elements a table may grow by past its
// minimum, whatever maximum it declares: enough for the legitimate growth
// of a WASI program (functions added at run time, a few hundred), small
// enough that its reservation (384 KiB at tableGrowthBytes) fits under even
// a 1 MiB cap with room for a memory.
const tableGrowthAllowance = 1 << 14

// footprint is what one instance of a module makes the host allocate
// before its guest runs, beside its linear memory.
type footprint struct {
	tables   int64 // tables at their minimum, plus the growth they may do
	globals  int64
	segments int64 // element and data segments
	other    int64 // the instance itself, imports, types, tags
}

func (f footprint) total() int64 { return f.tables + f.globals + f.segments + f.other }

// String describes the footprint for an error message.
func (f footprint) String() string {
	var parts []string
	add := func(n int64, what string) {
		if n >= wasmwiz.KiB {
			parts = append(parts, what+" "+approxSize(n))
		}
	}
	add(f.tables, "tables")
	add(f.globals, "globals")
	add(f.segments, "segments")
	add(f.other, "instance")
	return strings.Join(parts, ", ")
}

// approxSize writes n bytes in the largest binary unit it reaches, with
// one decimal: "1.5MiB".
func approxSize(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{wasmwiz.GiB, "GiB"}, {wasmwiz.MiB, "MiB"}, {wasmwiz.KiB, "KiB"}} {
		if n >= u.size {
			return strconv.FormatFloat(float64(n)/float64(u.size), 'f', 1, 64) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// tableMax returns the maximum the engine gives a table: its declared one,
// lowered to tableGrowthAllowance elements past its minimum.
func tableMax(t tableDecl) uint32 {
	limit := uint64(t.min) + tableGrowthAllowance
	if t.max != nil && uint64(*t.max) < limit {
		return *t.max
	}
	return uint32(min(limit, 1<<32-1))
}

// accountInstance counts the footprint of an instance of the module h
// describes.
func accountInstance(h *header) footprint {
	var f footprint
	for _, t := range h.tables {
		f.tables += tableBytes + tableElementBytes*int64(t.min) + tableGrowthBytes*int64(tableMax(t)-t.min)
	}
	f.globals = globalBytes * int64(h.globals)
	f.segments = elementEntryBytes*int64(h.elemEntries) + dataSegmentBytes*int64(h.dataSegments)
	f.other = instanceBaseBytes + typeBytes*int64(h.types) + tagBytes*int64(h.tags)
	for _, im := range h.imports {
		if im.kind == "func" {
			f.other += importedFuncBytes
		}
	}
	return f
}

// rewriteTables returns the module with every table's maximum set to
// tableMax, or wasm itself when no table needs it. Only the limits change;
// a table whose limits wazero will refuse anyway (shared) is left alone.
func rewriteTables(wasm []byte, h *header) []byte {
	var edits []tableDecl
	for _, t := range h.tables {
		if t.flags > 0x01 {
			continue
		}
		if t.max == nil || *t.max != tableMax(t) {
			edits = append(edits, t)
		}
	}
	if len(edits) == 0 {
		return wasm
	}
	sec := h.tableSection
	body := make([]byte, 0, sec.end-sec.start+5*len(edits))
	pos := sec.start
	for _, t := range edits {
		body = append(body, wasm[pos:t.limits.start]...)
		body = append(body, 0x01)
		body = appendULEB(body, uint64(t.min))
		body = appendULEB(body, uint64(tableMax(t)))
		pos = t.limits.end
	}
	body = append(body, wasm[pos:sec.end]...)

	// The section's id and size come just before its body.
	hdr := sectionHeaderStart(wasm, sec.start)
	out := make([]byte, 0, len(wasm)+len(body)-(sec.end-sec.start)+5)
	out = append(out, wasm[:hdr]...)
	out = append(out, 4)
	out = appendULEB(out, uint64(len(body)))
	out = append(out, body...)
	return append(out, wasm[sec.end:]...)
}

// sectionHeaderStart returns where the header (id and size) of the section
// whose body starts at body begins: the size is a LEB128 number ending just
// before body, and the id one byte before it.
func sectionHeaderStart(wasm []byte, body int) int {
	i := body - 1 // the size's last byte has no continuation bit
	for i > 0 && wasm[i-1]&0x80 != 0 {
		i--
	}
	return i - 1
}

func appendULEB(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// checkFits refuses a module whose footprint and minimum linear memory do
// not fit in the memory cap.
func checkFits(a *analysis, limits wasmwiz.Limits) error {
	mem := int64(a.minPages) * 65536
	need := mem + a.footprint.total()
	if limits.MaxMemoryBytes <= 0 || need <= limits.MaxMemoryBytes {
		return nil
	}
	if a.footprint.total() < 64*wasmwiz.KiB || mem > limits.MaxMemoryBytes {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "the module declares a minimum memory of %d pages (%s), over the memory limit of %s",
			a.minPages, wasmwiz.FormatSize(mem), wasmwiz.FormatSize(limits.MaxMemoryBytes))
	}
	return wasmwiz.Errorf(wasmwiz.EINVALID, "the module needs %s of host memory before it runs (%s) and a minimum linear memory of %s, over the memory limit of %s",
		approxSize(a.footprint.total()), a.footprint, approxSize(mem), wasmwiz.FormatSize(limits.MaxMemoryBytes))
}

// linearLimit is what a run's linear memory may use: the cap less the
// instance's footprint.
func linearLimit(a *analysis, limits wasmwiz.Limits) uint64 {
	if limits.MaxMemoryBytes <= 0 || limits.MaxMemoryBytes >= 1<<32+a.footprint.total() {
		return 1 << 32
	}
	return uint64(max(limits.MaxMemoryBytes-a.footprint.total(), 0))
}
