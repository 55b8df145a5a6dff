package hostiletest

// Module is a WebAssembly module under construction: just enough of the
// binary format to write the hostile shapes of this package by hand,
// without a text-format toolchain and at any size.
type Module struct {
	Types    [][]byte // encoded function types (0x60 params results)
	Funcs    []uint32 // type index of each defined function
	Tables   [][]byte // encoded table types
	Memories [][]byte // encoded memory types
	Globals  [][]byte // encoded globals (type, mut, init expr)
	Exports  [][]byte // encoded exports
	Elements [][]byte // encoded element segments
	Code     [][]byte // encoded function bodies (locals and instructions, without the size)
	Data     [][]byte // encoded data segments
	// DataCount writes the data count section, which memory.init and
	// data.drop need.
	DataCount bool
}

// Opcodes and types the generators use.
const (
	I32 = 0x7f
	I64 = 0x7e

	FuncRef = 0x70

	OpUnreachable = 0x00
	OpBlock       = 0x02
	OpLoop        = 0x03
	OpIf          = 0x04
	OpEnd         = 0x0b
	OpReturn      = 0x0f
	OpBr          = 0x0c
	OpBrIf        = 0x0d
	OpBrTable     = 0x0e
	OpCall        = 0x10
	OpDrop        = 0x1a
	OpLocalGet    = 0x20
	OpLocalSet    = 0x21
	OpLocalTee    = 0x22
	OpGlobalGet   = 0x23
	OpGlobalSet   = 0x24
	OpI32Const    = 0x41
	OpI32Eq       = 0x46
	OpI32Add      = 0x6a
	OpRefNull     = 0xd0
	OpRefFunc     = 0xd2
	OpPrefixFC    = 0xfc
	OpTableGrow   = 0x0f // after 0xfc
	OpTableSize   = 0x10 // after 0xfc

	BlockEmpty = 0x40
)

// ULEB appends v as an unsigned LEB128 number.
func ULEB(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

// SLEB appends v as a signed LEB128 number.
func SLEB(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// Name appends a length-prefixed name.
func Name(b []byte, s string) []byte { return append(ULEB(b, uint64(len(s))), s...) }

// FuncType encodes a function type.
func FuncType(params, results []byte) []byte {
	b := []byte{0x60}
	b = ULEB(b, uint64(len(params)))
	b = append(b, params...)
	b = ULEB(b, uint64(len(results)))
	return append(b, results...)
}

// Limits encodes limits; max < 0 means none.
func Limits(min uint32, max int64) []byte {
	if max < 0 {
		return ULEB([]byte{0x00}, uint64(min))
	}
	return ULEB(ULEB([]byte{0x01}, uint64(min)), uint64(max))
}

// Table encodes a funcref table type; max < 0 means none.
func Table(min uint32, max int64) []byte { return append([]byte{FuncRef}, Limits(min, max)...) }

// Export encodes an export of kind (0 func, 1 table, 2 memory, 3 global).
func Export(name string, kind byte, index uint32) []byte {
	return ULEB(append(Name(nil, name), kind), uint64(index))
}

// Body encodes a function body with locals (count, type) pairs.
func Body(locals [][2]uint32, code []byte) []byte {
	b := ULEB(nil, uint64(len(locals)))
	for _, l := range locals {
		b = ULEB(b, uint64(l[0]))
		b = append(b, byte(l[1]))
	}
	return append(b, code...)
}

// Bytes encodes the module.
func (m *Module) Bytes() []byte {
	out := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	vec := func(items [][]byte) []byte {
		b := ULEB(nil, uint64(len(items)))
		for _, it := range items {
			b = append(b, it...)
		}
		return b
	}
	section := func(id byte, body []byte) {
		out = append(out, id)
		out = ULEB(out, uint64(len(body)))
		out = append(out, body...)
	}
	if len(m.Types) > 0 {
		section(1, vec(m.Types))
	}
	if len(m.Funcs) > 0 {
		b := ULEB(nil, uint64(len(m.Funcs)))
		for _, t := range m.Funcs {
			b = ULEB(b, uint64(t))
		}
		section(3, b)
	}
	if len(m.Tables) > 0 {
		section(4, vec(m.Tables))
	}
	if len(m.Memories) > 0 {
		section(5, vec(m.Memories))
	}
	if len(m.Globals) > 0 {
		section(6, vec(m.Globals))
	}
	if len(m.Exports) > 0 {
		section(7, vec(m.Exports))
	}
	if len(m.Elements) > 0 {
		section(9, vec(m.Elements))
	}
	if m.DataCount {
		section(12, ULEB(nil, uint64(len(m.Data))))
	}
	if len(m.Code) > 0 {
		b := ULEB(nil, uint64(len(m.Code)))
		for _, c := range m.Code {
			b = ULEB(b, uint64(len(c)))
			b = append(b, c...)
		}
		section(10, b)
	}
	if len(m.Data) > 0 {
		section(11, vec(m.Data))
	}
	return out
}

// i32Const appends i32.const v.
func i32Const(b []byte, v int32) []byte { return SLEB(append(b, OpI32Const), int64(v)) }

// Const is a tiny plain module whose export "get" returns n: distinct
// bytes for each n, all of one size for n in [-64, 63].
func Const(n int32) []byte {
	// (module (func (export "get") (result i32) (i32.const n)))
	m := Module{
		Types:   [][]byte{FuncType(nil, []byte{I32})},
		Funcs:   []uint32{0},
		Exports: [][]byte{Export("get", 0, 0)},
		Code:    [][]byte{Body(nil, append(SLEB([]byte{OpI32Const}, int64(n)), OpEnd))},
	}
	return m.Bytes()
}
