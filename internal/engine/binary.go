package engine

import (
	"fmt"
	"unicode/utf8"

	"github.com/wasmwiz/wasmwiz"
)

// header is what the engine reads of a module's binary itself, before wazero
// compiles it: enough to refuse clearly what wazero would refuse obscurely
// (components, truncation) and to list the imports wazero's API does not show
// (tables and globals) with their kinds.
type header struct {
	imports []rawImport
	exports []rawExport
	// memory is the module's own memory (memory section), nil when it has none.
	memory *wasmwiz.MemoryInfo

	// What an instance of the module makes the host allocate (account.go).
	tables       []tableDecl
	tableSection span // the table section's body, for rewriting
	types        uint64
	tags         uint64
	globals      uint64 // defined globals
	elemEntries  uint64 // entries of active and passive element segments
	dataSegments uint64
}

// span is a range of a module's bytes.
type span struct{ start, end int }

// tableDecl is one table of the table section: its limits, and where they
// are in the module's bytes.
type tableDecl struct {
	limits span // the limits' bytes: flags, min and the max if any
	flags  byte
	min    uint32
	max    *uint32
}

type rawExport struct {
	name, kind string
}

var externKinds = []string{"func", "table", "memory", "global", "tag"}

type rawImport struct {
	module, name string
	kind         string // func, table, memory, global, tag
	memory       *wasmwiz.MemoryInfo
}

// parseHeader checks the preamble (wasmwiz.CheckPreamble) and walks the
// sections. It returns EINVALID with a message a module's author can act on.
func parseHeader(b []byte) (*header, error) {
	if err := wasmwiz.CheckPreamble(b); err != nil {
		return nil, err
	}
	h := &header{}
	// The sections of which the header keeps only their count: types,
	// globals, data segments and tags.
	counts := map[byte]*uint64{1: &h.types, 6: &h.globals, 11: &h.dataSegments, 13: &h.tags}
	r := &reader{b: b, pos: 8}
	for r.pos < len(b) {
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		size, err := r.u32()
		if err != nil {
			return nil, err
		}
		if uint64(r.pos)+uint64(size) > uint64(len(b)) {
			return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "truncated module: section %d declares %d bytes but only %d remain", id, size, len(b)-r.pos)
		}
		sec := &reader{b: b[:r.pos+int(size)], pos: r.pos}
		r.pos += int(size)
		if err := checkSectionBounds(id, &reader{b: sec.b, pos: sec.pos}); err != nil {
			return nil, err
		}
		switch id {
		case 2:
			if h.imports, err = parseImports(sec); err != nil {
				return nil, err
			}
		case 7:
			if h.exports, err = parseExports(sec); err != nil {
				return nil, err
			}
		case 4:
			h.tableSection = span{sec.pos, len(sec.b)}
			if h.tables, err = parseTables(sec); err != nil {
				return nil, err
			}
		case 1, 6, 11, 13:
			if n, err := sec.u32(); err == nil {
				*counts[id] = uint64(n)
			}
		case 9:
			if h.elemEntries, err = countElements(sec); err != nil {
				return nil, err
			}
		case 5:
			n, err := sec.u32()
			if err != nil {
				return nil, err
			}
			if n > 0 {
				if h.memory, err = sec.limits(); err != nil {
					return nil, err
				}
			}
		}
	}
	return h, nil
}

// parseTables reads the table section: for each table an optional 0x40 0x00
// prefix (a table with an initializer), a reference type, limits, and the
// initializer's constant expression after the prefix.
func parseTables(r *reader) ([]tableDecl, error) {
	n, err := r.count("table", 3)
	if err != nil {
		return nil, err
	}
	out := make([]tableDecl, 0, n)
	for range n {
		b, err := r.byte()
		if err != nil {
			return nil, err
		}
		withInit := b == 0x40
		if withInit {
			if _, err := r.byte(); err != nil {
				return nil, err
			}
			if b, err = r.byte(); err != nil {
				return nil, err
			}
		}
		if b == 0x63 || b == 0x64 { // (ref null ht), (ref ht)
			if err := r.leb(); err != nil {
				return nil, err
			}
		}
		t := tableDecl{limits: span{start: r.pos}}
		if t.flags, err = r.byte(); err != nil {
			return nil, err
		}
		if t.min, err = r.u32(); err != nil {
			return nil, err
		}
		if t.flags&0x01 != 0 {
			mx, err := r.u32()
			if err != nil {
				return nil, err
			}
			t.max = &mx
		}
		t.limits.end = r.pos
		if withInit {
			if err := r.constExpr("table"); err != nil {
				return nil, err
			}
		}
		out = append(out, t)
	}
	return out, nil
}

// countElements returns the entries of the element section's active and
// passive segments (declarative ones cost an instance nothing).
func countElements(r *reader) (uint64, error) {
	n, err := r.count("element", 2)
	if err != nil {
		return 0, err
	}
	var total uint64
	for range n {
		flag, err := (&reader{b: r.b, pos: r.pos}).u32()
		if err != nil {
			return 0, err
		}
		entries, err := elementEntries(r)
		if err != nil {
			return 0, err
		}
		if flag&0x03 != 0x03 { // not declarative
			total += uint64(entries)
		}
	}
	return total, nil
}

func parseImports(r *reader) ([]rawImport, error) {
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	var out []rawImport
	for i := uint32(0); i < n; i++ {
		var im rawImport
		if im.module, err = r.name(); err != nil {
			return nil, err
		}
		if im.name, err = r.name(); err != nil {
			return nil, err
		}
		kind, err := r.byte()
		if err != nil {
			return nil, err
		}
		switch kind {
		case 0x00: // func: type index
			im.kind = "func"
			_, err = r.u32()
		case 0x01: // table: reftype, limits
			im.kind = "table"
			if _, err = r.byte(); err == nil {
				_, err = r.limits()
			}
		case 0x02:
			im.kind = "memory"
			im.memory, err = r.limits()
		case 0x03: // global: valtype, mut
			im.kind = "global"
			if _, err = r.byte(); err == nil {
				_, err = r.byte()
			}
		case 0x04: // tag (exception handling): attribute, type index
			im.kind = "tag"
			if _, err = r.byte(); err == nil {
				_, err = r.u32()
			}
		default:
			return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "invalid module: import %s.%s has unknown kind 0x%02x", im.module, im.name, kind)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, im)
	}
	return out, nil
}

func parseExports(r *reader) ([]rawExport, error) {
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	var out []rawExport
	for i := uint32(0); i < n; i++ {
		name, err := r.name()
		if err != nil {
			return nil, err
		}
		kind, err := r.byte()
		if err != nil {
			return nil, err
		}
		if int(kind) >= len(externKinds) {
			return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "invalid module: export %q has unknown kind 0x%02x", name, kind)
		}
		if _, err := r.u32(); err != nil {
			return nil, err
		}
		out = append(out, rawExport{name: name, kind: externKinds[kind]})
	}
	return out, nil
}

type reader struct {
	b   []byte
	pos int
}

func (r *reader) truncated() error {
	return wasmwiz.Errorf(wasmwiz.EINVALID, "truncated module: unexpected end at byte %d", r.pos)
}

func (r *reader) byte() (byte, error) {
	if r.pos >= len(r.b) {
		return 0, r.truncated()
	}
	c := r.b[r.pos]
	r.pos++
	return c, nil
}

// u32 reads an unsigned LEB128 number of at most 32 bits.
func (r *reader) u32() (uint32, error) {
	var v uint64
	for shift := 0; shift < 35; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			if v > 1<<32-1 {
				break
			}
			return uint32(v), nil
		}
	}
	return 0, wasmwiz.Errorf(wasmwiz.EINVALID, "invalid module: malformed number at byte %d", r.pos)
}

func (r *reader) name() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	if uint64(r.pos)+uint64(n) > uint64(len(r.b)) {
		return "", r.truncated()
	}
	s := r.b[r.pos : r.pos+int(n)]
	r.pos += int(n)
	if !utf8.Valid(s) {
		return "", wasmwiz.Errorf(wasmwiz.EINVALID, "invalid module: a name is not valid UTF-8")
	}
	return string(s), nil
}

func (r *reader) limits() (*wasmwiz.MemoryInfo, error) {
	flags, err := r.byte()
	if err != nil {
		return nil, err
	}
	if flags > 0x07 {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "invalid module: limits flags 0x%02x", flags)
	}
	if flags&0x04 != 0 {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "64-bit memories (memory64) are not supported")
	}
	m := &wasmwiz.MemoryInfo{}
	if m.MinPages, err = r.u32(); err != nil {
		return nil, err
	}
	if flags&0x01 != 0 {
		mx, err := r.u32()
		if err != nil {
			return nil, err
		}
		m.MaxPages = &mx
	}
	return m, nil
}

func (im rawImport) String() string { return fmt.Sprintf("%s.%s", im.module, im.name) }
