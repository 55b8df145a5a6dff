package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/hostiletest"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

func shaOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestFootprintCoversWazero instantiates modules that make the host
// allocate through each part the footprint counts and checks, on the Go
// heap, that an instance never holds more than its footprint: the
// constants in account.go are measured, and this says when a wazero
// upgrade changes what they measure. Not parallel: it reads the heap.
func TestFootprintCoversWazero(t *testing.T) {
	e := newEngine(t, Options{})
	tests := []struct {
		name string
		wasm []byte
		grow bool // call _start, which grows a table until it is full
	}{
		{"empty", hostiletest.Tables(0, 0), false},
		{"a big table", hostiletest.Tables(1, 200_000), false},
		{"many small tables", hostiletest.Tables(2_000, 10), false},
		{"globals", hostiletest.Globals(30_000), false},
		{"active element segment", hostiletest.Elements(30_000, false), false},
		{"passive element segment", hostiletest.Elements(30_000, true), false},
		{"data segments", hostiletest.DataSegments(30_000, 1), false},
		{"functions", hostiletest.ManyFunctions(2000), false},
		{"a table grown to its maximum", hostiletest.TableGrowLoop(1000, -1, hostiletest.Return), true},
		{"a table grown one by one", hostiletest.TableGrowLoop(1, -1, hostiletest.Return), true},
	}
	const instances = 4
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, _, err := e.cache.get("", tt.wasm, shaOf(tt.wasm))
			if err != nil {
				t.Fatal(err)
			}
			defer e.cache.release(c)
			fp := c.info.footprint.total()
			linear := int64(c.info.minPages) * 65536 // a small memory lives on the Go heap too
			ctx := context.Background()
			var mods []api.Module
			var caps []*memoryCap
			before := heapAlloc()
			for range instances {
				mc := &memoryCap{limit: 1 << 30}
				caps = append(caps, mc)
				m, err := e.runtime.InstantiateModule(experimental.WithMemoryAllocator(ctx, mc), c.mod,
					wazero.NewModuleConfig().WithName("").WithStartFunctions())
				if err != nil {
					t.Fatal(err)
				}
				if tt.grow {
					if _, err := m.ExportedFunction("_start").Call(ctx); err != nil {
						t.Fatal(err)
					}
				}
				mods = append(mods, m)
			}
			per := (int64(heapAlloc()) - int64(before)) / instances
			for i, m := range mods {
				_ = m.Close(ctx)
				caps[i].release()
			}
			t.Logf("footprint %d (%s), measured %d per instance", fp, c.info.footprint, per-linear)
			if per-linear > fp {
				t.Errorf("an instance holds %d bytes of Go heap, over its footprint of %d (%s)", per-linear, fp, c.info.footprint)
			}
		})
	}
}

// TestHostileFootprints runs modules that make the host allocate through
// tables, globals and segments: past the memory cap they are refused before
// anything runs, or their growth fails inside the guest; the host never
// allocates past the cap for them. Not parallel: it counts the bytes the
// process allocates during each run.
func TestHostileFootprints(t *testing.T) {
	e := newEngine(t, Options{})
	type want struct {
		status  wasmwiz.Status
		code    string   // error code instead of a result
		message []string // in the error message or the trap
	}
	tests := []struct {
		name string
		wasm []byte
		cap  int64
		want want
	}{
		{"table growth fails inside the guest under 1MiB", hostiletest.TableGrowLoop(100_000, -1, hostiletest.Trap), wasmwiz.MiB,
			want{status: wasmwiz.StatusTrap, message: []string{"unreachable"}}},
		{"table growth fails inside the guest under 128MiB", hostiletest.TableGrowLoop(1_000_000, -1, hostiletest.Trap), 128 * wasmwiz.MiB,
			want{status: wasmwiz.StatusTrap, message: []string{"unreachable"}}},
		{"table growth one element at a time", hostiletest.TableGrowLoop(1, -1, hostiletest.Trap), 128 * wasmwiz.MiB,
			want{status: wasmwiz.StatusTrap, message: []string{"unreachable"}}},
		{"a declared table maximum of 2^32-1 is lowered", hostiletest.TableGrowLoop(1_000_000, 1<<32-1, hostiletest.Trap), 128 * wasmwiz.MiB,
			want{status: wasmwiz.StatusTrap, message: []string{"unreachable"}}},
		{"a table grown within its declared maximum", hostiletest.TableGrowLoop(10, 1000, hostiletest.Return), wasmwiz.MiB,
			want{status: wasmwiz.StatusOK}},
		{"a huge initial table", hostiletest.Tables(1, 1<<27), 128 * wasmwiz.MiB,
			want{code: wasmwiz.EINVALID, message: []string{"host memory before it runs", "tables 1.0GiB", "over the memory limit of 128MiB"}}},
		{"many tables", hostiletest.Tables(10_000, 0), 128 * wasmwiz.MiB,
			want{code: wasmwiz.EINVALID, message: []string{"tables"}}},
		{"globals past the cap", hostiletest.Globals(50_000), 4 * wasmwiz.MiB,
			want{code: wasmwiz.EINVALID, message: []string{"globals 4.6MiB"}}},
		{"globals that fit", hostiletest.Globals(20_000), 4 * wasmwiz.MiB,
			want{status: wasmwiz.StatusOK}},
		{"a huge element segment", hostiletest.Elements(70_000, true), 4 * wasmwiz.MiB,
			want{code: wasmwiz.EINVALID, message: []string{"segments 4.3MiB"}}},
		{"many data segments", hostiletest.DataSegments(140_000, 0), 4 * wasmwiz.MiB,
			want{code: wasmwiz.EINVALID, message: []string{"segments 4.3MiB"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lim := testmodule.Limits()
			lim.MaxModuleBytes = 0
			lim.MaxMemoryBytes = tt.cap
			if tt.want.status == wasmwiz.StatusTrap {
				lim.Timeout = 0 // the guest ends by itself; a loaded machine must not turn it into a timeout
			}
			// Compile first, so that the bytes counted are the run's.
			if _, err := e.Inspect(context.Background(), tt.wasm, wasmwiz.Limits{}); err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			allocated := allocatedBytes()
			res, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: tt.wasm, Limits: lim})
			allocated = allocatedBytes() - allocated
			if tt.want.code != "" {
				if wasmwiz.ErrorCode(err) != tt.want.code {
					t.Fatalf("error %v, want %s", err, tt.want.code)
				}
				for _, m := range tt.want.message {
					if !strings.Contains(wasmwiz.ErrorMessage(err), m) {
						t.Errorf("message %q does not say %q", wasmwiz.ErrorMessage(err), m)
					}
				}
			} else {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				if res.Status != tt.want.status {
					t.Fatalf("status %s (trap %q), want %s", res.Status, res.Trap, tt.want.status)
				}
				for _, m := range tt.want.message {
					if !strings.Contains(res.Trap, m) {
						t.Errorf("trap %q does not say %q", res.Trap, m)
					}
				}
			}
			// Everything the process allocated during the run, garbage
			// included, stays within the cap.
			if allocated > uint64(tt.cap) {
				t.Errorf("the run allocated %s on the Go heap, over its cap of %s",
					wasmwiz.FormatSize(int64(allocated)), wasmwiz.FormatSize(tt.cap))
			}
		})
	}
}

// allocatedBytes is the process's cumulative heap allocation.
func allocatedBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestRewriteTables: every table's maximum becomes tableMax, nothing else
// in the module changes, and the module's identity stays the caller's bytes.
func TestRewriteTables(t *testing.T) {
	t.Parallel()
	m := &hostiletest.Module{
		Types:   [][]byte{hostiletest.FuncType(nil, nil)},
		Funcs:   []uint32{0},
		Exports: [][]byte{hostiletest.Export("_start", 0, 0)},
		Code:    [][]byte{hostiletest.Body(nil, []byte{hostiletest.OpEnd})},
		Tables: [][]byte{
			hostiletest.Table(3, -1),           // no maximum
			hostiletest.Table(5, 5),            // fixed: untouched
			hostiletest.Table(0, 1<<32-1),      // a maximum past the allowance
			hostiletest.Table(1<<20, 1<<20+10), // within it
			append([]byte{0x40, 0x00}, append(hostiletest.Table(2, -1), hostiletest.OpRefNull, hostiletest.FuncRef, hostiletest.OpEnd)...), // with an initializer
		},
	}
	wasm := m.Bytes()
	h, err := parseHeader(wasm)
	if err != nil {
		t.Fatal(err)
	}
	out := rewriteTables(wasm, h)
	h2, err := parseHeader(out)
	if err != nil {
		t.Fatalf("the rewritten module does not parse: %v", err)
	}
	want := []uint32{3 + tableGrowthAllowance, 5, tableGrowthAllowance, 1<<20 + 10, 2 + tableGrowthAllowance}
	if len(h2.tables) != len(want) {
		t.Fatalf("%d tables after the rewrite, want %d", len(h2.tables), len(want))
	}
	for i, tb := range h2.tables {
		if tb.max == nil || *tb.max != want[i] || tb.min != h.tables[i].min {
			t.Errorf("table %d: min %d max %v, want min %d max %d", i, tb.min, tb.max, h.tables[i].min, want[i])
		}
	}
	e := sharedEngine(t)
	insp, err := e.Inspect(context.Background(), wasm, testmodule.Limits())
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if insp.SHA256 != shaOf(wasm) || insp.SizeBytes != int64(len(wasm)) {
		t.Errorf("inspection %s, %d bytes: not the caller's module", insp.SHA256, insp.SizeBytes)
	}
	fixed := (&hostiletest.Module{Tables: [][]byte{hostiletest.Table(7, 7)}}).Bytes()
	hf, err := parseHeader(fixed)
	if err != nil {
		t.Fatal(err)
	}
	if out := rewriteTables(fixed, hf); &out[0] != &fixed[0] {
		t.Errorf("a module whose tables all have their maximum was copied")
	}
}

// TestMemoryCapCountsTheFootprint: the linear memory of a module with a
// growable table gets the cap less the table's reservation, so memory and
// tables together stay within the cap.
func TestMemoryCapCountsTheFootprint(t *testing.T) {
	t.Parallel()
	e := sharedEngine(t)
	// memory_bomb grows its memory until it fails; give it a table too.
	m := &hostiletest.Module{
		Types:    [][]byte{hostiletest.FuncType(nil, nil)},
		Funcs:    []uint32{0},
		Tables:   [][]byte{hostiletest.Table(0, -1)},
		Memories: [][]byte{hostiletest.Limits(1, -1)},
		Exports:  [][]byte{hostiletest.Export("_start", 0, 0)},
		Code: [][]byte{hostiletest.Body(nil, []byte{
			hostiletest.OpLoop, hostiletest.BlockEmpty,
			hostiletest.OpI32Const, 1, 0x40, 0x00, // memory.grow 1
			hostiletest.OpI32Const, 0x7f, hostiletest.OpI32Eq, // == -1
			hostiletest.OpIf, hostiletest.BlockEmpty, hostiletest.OpUnreachable, hostiletest.OpEnd,
			hostiletest.OpBr, 0, hostiletest.OpEnd, hostiletest.OpEnd})},
	}
	lim := testmodule.Limits()
	lim.MaxMemoryBytes = 8 * wasmwiz.MiB
	lim.Timeout = 0
	res, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: m.Bytes(), Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	reserve := int64(instanceBaseBytes + tableBytes + tableGrowthBytes*tableGrowthAllowance + typeBytes)
	if res.Status != wasmwiz.StatusMemoryLimit || res.MemoryPeakBytes > lim.MaxMemoryBytes-reserve {
		t.Fatalf("status %s, peak %d: want memory_limit with a peak of at most %d", res.Status, res.MemoryPeakBytes, lim.MaxMemoryBytes-reserve)
	}
	if !strings.Contains(res.Trap, "unreachable") {
		t.Errorf("trap %q", res.Trap)
	}
}
