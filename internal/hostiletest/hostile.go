// Package hostiletest writes the hostile WebAssembly modules the engine and
// the worker pool are tested against: compile bombs of several shapes, and
// modules that make the host allocate through tables, globals and segments.
// They are generated, not committed, because the interesting sizes are
// large (and a generator says what a module is better than its bytes do);
// testdata/hostile in the engine holds small committed examples built with
// `go run ./internal/hostiletest/cmd/hostile`. Every module is a plain module
// exporting _start, so the engine runs it without WASI.
//
// It is test support: nothing in the service imports it.
package hostiletest

import "strconv"

// startModule returns a module with one function type () -> () and body as
// its exported _start.
func startModule(locals [][2]uint32, code []byte) *Module {
	return &Module{
		Types:   [][]byte{FuncType(nil, nil)},
		Funcs:   []uint32{0},
		Exports: [][]byte{Export("_start", 0, 0)},
		Code:    [][]byte{Body(locals, append(code, OpEnd))},
	}
}

// openBlocks appends n nested empty-typed blocks of kind op (OpLoop, OpBlock).
func openBlocks(code []byte, n int, op byte) []byte {
	for range n {
		code = append(code, op, BlockEmpty)
	}
	return code
}

// endBlocks appends n ends.
func endBlocks(code []byte, n int) []byte {
	for range n {
		code = append(code, OpEnd)
	}
	return code
}

// DeepLoops is one function of n nested empty loops: wazero's compiler
// spends time superlinear in the nesting (loop analysis), so a module of a
// few hundred kilobytes keeps it busy for seconds to minutes.
func DeepLoops(n int) []byte {
	return startModule(nil, endBlocks(openBlocks(make([]byte, 0, 3*n), n, OpLoop), n)).Bytes()
}

// DeepLoopsBranching is DeepLoops where every loop may branch back to every
// enclosing loop's header through one br_if at the innermost level, which
// turns the nesting into a dense control-flow graph.
func DeepLoopsBranching(n int) []byte {
	code := openBlocks(make([]byte, 0, 8*n), n, OpLoop)
	for i := range n {
		code = i32Const(code, 0)
		code = ULEB(append(code, OpBrIf), uint64(i))
	}
	return startModule(nil, endBlocks(code, n)).Bytes()
}

// DeepBlocks is one function of n nested blocks, each left by a br_if to
// the outermost, the shape a big switch compiles to.
func DeepBlocks(n int) []byte {
	code := openBlocks(make([]byte, 0, 8*n), n, OpBlock)
	for i := range n {
		code = i32Const(code, 0)
		code = ULEB(append(code, OpBrIf), uint64(n-1-i))
		code = append(code, OpEnd)
	}
	return startModule(nil, code).Bytes()
}

// HugeFunction is one function of n straight-line additions to a local
// (six bytes each).
func HugeFunction(n int) []byte {
	code := make([]byte, 0, 7*n)
	for range n {
		code = append(code, OpLocalGet, 0)
		code = i32Const(code, 1)
		code = append(code, OpI32Add, OpLocalSet, 0)
	}
	return startModule([][2]uint32{{1, I32}}, code).Bytes()
}

// ManyLocals is one function with n i32 locals whose values are all live at
// once: each is pushed on the stack, then they are added up, which keeps
// the register allocator busy with n simultaneous values.
func ManyLocals(n int) []byte {
	code := make([]byte, 0, 6*n)
	for i := range n {
		code = ULEB(append(code, OpLocalGet), uint64(i))
	}
	for range n - 1 {
		code = append(code, OpI32Add)
	}
	code = append(code, OpDrop)
	return startModule([][2]uint32{{uint32(n), I32}}, code).Bytes()
}

// HugeBrTable is a br_table of n targets spread over depth nested blocks,
// repeated reps times.
func HugeBrTable(n, depth, reps int) []byte {
	code := openBlocks(nil, depth, OpBlock)
	for range reps {
		code = i32Const(code, 0)
		code = ULEB(append(code, OpBrTable), uint64(n))
		for i := range n {
			code = ULEB(code, uint64(i%depth))
		}
		code = ULEB(code, 0)
	}
	code = endBlocks(code, depth)
	return startModule(nil, code).Bytes()
}

// ManyFunctions is n functions, each calling the next, the last empty.
func ManyFunctions(n int) []byte {
	m := &Module{Types: [][]byte{FuncType(nil, nil)}, Exports: [][]byte{Export("_start", 0, 0)}}
	m.Funcs = make([]uint32, n)
	m.Code = make([][]byte, n)
	for i := range n {
		var code []byte
		if i+1 < n {
			code = ULEB([]byte{OpCall}, uint64(i+1))
		}
		m.Code[i] = Body(nil, append(code, OpEnd))
	}
	return m.Bytes()
}

// ManyExports is one function of params i32 params returning their count,
// exported n times (f0, f1, …): small to send, and long to list with each
// export's signature.
func ManyExports(n, params int) []byte {
	ps := make([]byte, params)
	for i := range ps {
		ps[i] = I32
	}
	m := &Module{Types: [][]byte{FuncType(ps, []byte{I32})}, Funcs: []uint32{0}}
	m.Code = [][]byte{Body(nil, append(i32Const(nil, int32(params)), OpEnd))}
	m.Exports = make([][]byte, n)
	for i := range n {
		m.Exports[i] = Export("f"+strconv.Itoa(i), 0, 0)
	}
	return m.Bytes()
}

// OnFailure is what a growth loop does when table.grow fails.
type OnFailure int

// What a growth loop does when its growth fails.
const (
	Trap   OnFailure = iota // unreachable
	Return                  // return from _start, leaving the table as it is
	Ignore                  // drop the answer and grow again, for ever
)

// TableGrowLoop is a module with an empty funcref table (no maximum, or max
// when max >= 0) whose _start grows it by delta elements at a time until
// table.grow fails, then does what onFailure says. With Ignore it is the
// 61-byte attack that took a worker to 3.9 GB.
func TableGrowLoop(delta int32, max int64, onFailure OnFailure) []byte {
	var code []byte
	code = append(code, OpLoop, BlockEmpty)
	code = append(code, OpRefNull, FuncRef)
	code = i32Const(code, delta)
	code = append(code, OpPrefixFC, OpTableGrow, 0)
	switch onFailure {
	case Ignore:
		code = append(code, OpDrop, OpBr, 0)
	default:
		code = i32Const(code, -1)
		code = append(code, OpI32Eq, OpIf, BlockEmpty)
		if onFailure == Trap {
			code = append(code, OpUnreachable)
		} else {
			code = append(code, OpReturn)
		}
		code = append(code, OpEnd, OpBr, 0)
	}
	code = append(code, OpEnd)
	m := startModule(nil, code)
	m.Tables = [][]byte{Table(0, max)}
	return m.Bytes()
}

// Tables is a module of count funcref tables of min elements each (max
// none), whose _start returns at once: the host allocates the tables when
// it instantiates the module, before any guest code runs.
func Tables(count int, min uint32) []byte {
	m := startModule(nil, nil)
	for range count {
		m.Tables = append(m.Tables, Table(min, -1))
	}
	return m.Bytes()
}

// Globals is a module of n mutable i32 globals.
func Globals(n int) []byte {
	m := startModule(nil, nil)
	g := append([]byte{I32, 1}, i32Const(nil, 7)...)
	g = append(g, OpEnd)
	m.Globals = make([][]byte, n)
	for i := range m.Globals {
		m.Globals[i] = g
	}
	return m.Bytes()
}

// Elements is a module whose one funcref table of n elements is filled by
// one active element segment of n references to _start; with passive, the
// segment is passive instead (kept by the instance for table.init).
func Elements(n int, passive bool) []byte {
	m := startModule(nil, nil)
	m.Tables = [][]byte{Table(uint32(n), int64(n))}
	var seg []byte
	if passive {
		seg = ULEB(nil, 1) // passive, elemkind funcref
		seg = append(seg, 0x00)
	} else {
		seg = ULEB(nil, 0) // active, table 0, offset expr, vec(funcidx)
		seg = i32Const(seg, 0)
		seg = append(seg, OpEnd)
	}
	seg = ULEB(seg, uint64(n))
	for range n {
		seg = append(seg, 0) // function 0
	}
	m.Elements = [][]byte{seg}
	return m.Bytes()
}

// DataSegments is a module with one page of memory and count passive data
// segments of size bytes each.
func DataSegments(count, size int) []byte {
	m := startModule(nil, nil)
	m.Memories = [][]byte{Limits(1, 1)}
	m.DataCount = true
	seg := ULEB([]byte{0x01}, uint64(size))
	seg = append(seg, make([]byte, size)...)
	m.Data = make([][]byte, count)
	for i := range m.Data {
		m.Data[i] = seg
	}
	return m.Bytes()
}

// RefFuncLoop loops on ref.func for ever: wazero allocates a function
// reference on the host for every ref.func it executes, so the host's
// memory grows while the guest's does not.
func RefFuncLoop() []byte {
	var code []byte
	code = append(code, OpLoop, BlockEmpty, OpRefFunc, 0, OpDrop, OpBr, 0, OpEnd)
	m := startModule(nil, code)
	// ref.func needs the function declared in an element segment.
	m.Elements = [][]byte{{0x03, 0x00, 0x01, 0x00}} // declarative, funcref, [0]
	return m.Bytes()
}

// DeepRecursion is a function calling itself without end: wazero's call
// stack is host memory, grown by doubling up to its ceiling.
func DeepRecursion() []byte {
	return startModule(nil, []byte{OpCall, 0}).Bytes()
}

// Example is one hostile module at a size small enough to commit and to
// use as a fuzz seed: internal/engine/testdata/hostile holds each one as
// Name+".wasm", written by cmd/hostile.
type Example struct {
	Name string
	Wasm []byte
}

// Examples returns one small module of every hostile class.
func Examples() []Example {
	return []Example{
		{"deep_loops", DeepLoops(2000)},
		{"deep_loops_branching", DeepLoopsBranching(1000)},
		{"deep_blocks", DeepBlocks(1000)},
		{"huge_function", HugeFunction(9000)},
		{"many_locals", ManyLocals(5000)},
		{"huge_br_table", HugeBrTable(10_000, 100, 1)},
		{"many_functions", ManyFunctions(5000)},
		{"table_grow_trap", TableGrowLoop(100_000, -1, Trap)},
		{"table_grow_ignore", TableGrowLoop(100_000, -1, Ignore)},
		{"table_grow_max", TableGrowLoop(100_000, 1<<32-1, Trap)},
		{"huge_table", Tables(1, 1<<27)},
		{"many_tables", Tables(10_000, 0)},
		{"many_globals", Globals(5000)},
		{"element_segment", Elements(20_000, false)},
		{"passive_element_segment", Elements(20_000, true)},
		{"data_segments", DataSegments(20_000, 0)},
		{"ref_func_loop", RefFuncLoop()},
		{"deep_recursion", DeepRecursion()},
	}
}

// Attack is a hostile module at the size that hurts, with what it costs an
// unprotected engine (wazero v1.12.0, 2-core AMD EPYC, 2026-12-03).
type Attack struct {
	Name string
	Cost string
	Wasm func() []byte
}

// Attacks returns the compile bombs at their hurting sizes: too big or too
// slow to commit or to run in every test, written by cmd/hostile -attacks.
func Attacks() []Attack {
	return []Attack{
		{"deep_loops_30000", "90 KB; 18 s and 147 MB to compile", func() []byte { return DeepLoops(30_000) }},
		{"deep_loops_branching_8000", "64 KB; 3.2 s to compile", func() []byte { return DeepLoopsBranching(8000) }},
		{"deep_blocks_16000", "128 KB; 24 s to compile", func() []byte { return DeepBlocks(16_000) }},
		{"huge_function_1000000", "7 MB; 0.6 s and 354 MB to compile", func() []byte { return HugeFunction(1_000_000) }},
		{"huge_br_table_1000000", "1 MB; 14 s and 2.3 GB to compile", func() []byte { return HugeBrTable(1_000_000, 100, 1) }},
		{"many_functions_1000000", "8 MB; 9 s and 337 MB to compile", func() []byte { return ManyFunctions(1_000_000) }},
		{"many_locals_50000", "234 KB; cheap (locals are bounded at 50,000)", func() []byte { return ManyLocals(50_000) }},
	}
}
