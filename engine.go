package wasmwiz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"strconv"
	"time"
)

// Limits bound one run. Zero means "no limit" only where a field says so; the
// engine refuses a zero Timeout or MaxMemoryBytes from a server path because
// every tier sets them. Each field is a tier limit too: its tags declare it
// (see TierField), and the worker protocol carries Limits as Values, so a
// new field needs no change there.
type Limits struct {
	// Timeout is the wall time of a run, compiling its module included (a
	// module held compiled costs nothing); the guest is stopped when it
	// passes, and a module that does not compile within it is refused.
	Timeout time.Duration `tier:"timeout_ms,duration,min=1ms,max=1h" flag:"timeout" help:"wall time of a run"`
	// MaxMemoryBytes caps linear memory; growth past it fails inside the guest.
	MaxMemoryBytes int64 `tier:"max_memory_bytes,bytes,min=64KiB,max=4GiB" flag:"memory" help:"linear memory of a run"`
	// MaxModuleBytes: larger modules are ETOOLARGE before any work.
	MaxModuleBytes int64 `tier:"max_module_bytes,bytes,min=1,max=1GiB" flag:"max-module" help:"size of a module"`
	// MaxStdinBytes: larger stdin is ETOOLARGE before any work.
	MaxStdinBytes int64 `tier:"max_stdin_bytes,bytes,min=0,max=1GiB" flag:"max-stdin" help:"size of stdin"`
	// MaxOutputBytes caps a run's output: stdout and stderr together. The
	// run stops when it is passed (StatusOutputLimit), and what the answer
	// carries is bounded by it (api.Result).
	MaxOutputBytes int64 `tier:"max_output_bytes,bytes,min=1,max=1GiB" flag:"max-output" help:"output of a run, stdout and stderr together"`

	// Files of a run (RunFiles). A caller's files over MaxFilesInBytes or
	// MaxFiles are ETOOLARGE before any work (0: a caller may send none).
	MaxFilesInBytes int64 `tier:"max_files_in_bytes,bytes,min=0,max=1GiB" flag:"max-files-in" help:"bytes of the files sent into a run, archives unpacked"`
	// MaxFiles bounds the files, directories and links sent into a run,
	// and the files that come back.
	MaxFiles int64 `tier:"max_files,count,min=0,max=1000000" flag:"max-files" help:"files, directories and links sent into a run, and files that come back"`
	// MaxFileWriteBytes bounds how much a run's files may grow: past it the
	// guest's write fails with ENOSPC (0: no limit, wasmwiz run only).
	MaxFileWriteBytes int64 `tier:"max_file_write_bytes,bytes,min=1,max=64GiB" flag:"max-file-write" help:"bytes a run's files may grow by; past it a write fails with ENOSPC"`
	// MaxFilesOutBytes bounds the content of the files that come back; the
	// files past it are listed without their content.
	MaxFilesOutBytes int64 `tier:"max_files_out_bytes,bytes,min=0,max=1GiB" flag:"max-files-out" help:"bytes of the files that come back from a run"`
}

// Status is the outcome of a guest run. Every status is a successful result,
// not a server error.
type Status string

// Run statuses.
const (
	StatusOK          Status = "ok"           // finished, exit code 0 or function returned
	StatusExit        Status = "exit"         // WASI proc_exit with a non-zero code
	StatusTrap        Status = "trap"         // the guest trapped; Result.Trap says how
	StatusTimeout     Status = "timeout"      // stopped at the wall-time limit
	StatusMemoryLimit Status = "memory_limit" // died of the memory cap
	StatusOutputLimit Status = "output_limit" // stopped when its output (stdout and stderr together) passed the cap
)

// Exited reports whether a run with this status ended by the guest's own
// exit or return (ok, exit), so that it has an exit code; a guest stopped
// by a trap or a limit has none (null in the API's JSON).
func (s Status) Exited() bool { return s == StatusOK || s == StatusExit }

// exitCode returns code as the JSON of a run with status s: nil when the
// guest did not exit.
func (s Status) exitCode(code int) *int {
	if !s.Exited() {
		return nil
	}
	return &code
}

// Statuses lists every Status, for metrics, validation and documentation.
var Statuses = []Status{StatusOK, StatusExit, StatusTrap, StatusTimeout, StatusMemoryLimit, StatusOutputLimit}

// RunRequest is one run of a module: the one request type from the HTTP
// layer to the worker. A caller of Executor.Execute fills in what it asks;
// Execute hands the engine a copy completed with the module's digest (and,
// for a stored module, LoadWasm instead of the bytes), its name and the
// run's limits.
type RunRequest struct {
	// The module: its bytes (Wasm), or the id of a stored module the caller
	// may see (ModuleID; Execute only), never both.
	ModuleID string
	Wasm     []byte
	// SHA256 is the hex digest of the module (ModuleDigest), computed once
	// and trusted by every engine; an engine computes it only when it is
	// empty.
	SHA256 string
	// LoadWasm, when Wasm is nil, returns the module's bytes: an engine
	// calls it only when it does not already hold the module SHA256 names,
	// so a warm run of a stored module never reads the store.
	LoadWasm func(ctx context.Context) ([]byte, error)
	// Name is argv[0]: the caller's name for inline bytes, a stored
	// module's own name, or "module.wasm".
	Name string

	Args  []string          // argv after argv[0]
	Env   map[string]string // the guest's whole environment; nothing comes from the host
	Stdin []byte

	// Function names the export to call. Empty runs the default entry point:
	// _start for a WASI command, else the first of _start, main, run.
	Function string
	// Params are the function's arguments written as decimal numbers (floats
	// also as "nan", "inf", "-inf"), parsed against its signature.
	Params []string

	// Mounts are host directories the guest sees, preopened in this order.
	// Only the program sets them (wasmwiz run --dir, the server's private
	// directory of a run), never a caller.
	Mounts []Mount
	// Files, when set, give the run a private directory made fresh from a
	// caller's files (RunFiles; checked by RunFiles.Check), mounted after
	// Mounts; the files matching its Outputs come back in Result.Files.
	Files *RunFiles

	// Limits bound the run. To Execute, a caller's Timeout and
	// MaxMemoryBytes lower the tier's (zero keeps them; the other fields are
	// ignored); the engine gets the run's limits.
	Limits Limits

	// OnOutput, when set, gets the guest's output as it is written, in
	// order, each piece once (stderr false: stdout), up to the output cap.
	// It must not keep p (copy it) and must return quickly: it runs on the
	// engine's path. An engine that cannot stream calls it never; the
	// Result has all the output either way.
	OnOutput func(stderr bool, p []byte)

	// OnMemory, when set, gets the size in bytes of the guest's linear
	// memory each time it reaches a new peak, so that a run ended from
	// outside (its worker killed at the deadline, say) still reports the
	// memory it used. It must return quickly: it runs on the guest's
	// memory.grow. An engine that cannot tell calls it never.
	OnMemory func(peakBytes int64)
}

// ModuleWasm returns the request's module bytes: Wasm, or what LoadWasm
// reads. EINVALID when there is neither.
func (r *RunRequest) ModuleWasm(ctx context.Context) ([]byte, error) {
	if r.Wasm != nil || r.LoadWasm == nil {
		if len(r.Wasm) == 0 {
			return nil, Errorf(EINVALID, "no module to run")
		}
		return r.Wasm, nil
	}
	return r.LoadWasm(ctx)
}

// ModuleDigest returns the hex SHA-256 of a module, the digest by which
// stores, engines, workers and records know it. Computed once per module
// and carried (RunRequest.SHA256, Module.SHA256).
func ModuleDigest(wasm []byte) string {
	sum := sha256.Sum256(wasm)
	return hex.EncodeToString(sum[:])
}

// Value is one wasm number returned by a function call.
type Value struct {
	Type string // "i32", "i64", "f32" or "f64"
	Bits uint64 // raw bits as wasm holds them
}

// String writes the value as a decimal number; i32 and i64 are signed.
func (v Value) String() string {
	switch v.Type {
	case "i32":
		return strconv.FormatInt(int64(int32(uint32(v.Bits))), 10)
	case "i64":
		return strconv.FormatInt(int64(v.Bits), 10)
	case "f32":
		return formatFloat(float64(math.Float32frombits(uint32(v.Bits))), 32)
	case "f64":
		return formatFloat(math.Float64frombits(v.Bits), 64)
	}
	return strconv.FormatUint(v.Bits, 10)
}

func formatFloat(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	return strconv.FormatFloat(f, 'g', -1, bits)
}

// ModuleInfo identifies the module a result came from.
type ModuleInfo struct {
	SHA256    string
	SizeBytes int64
	WASI      bool
	Entry     string // the function that ran
}

// Result is what a run did. Output is bytes; the API sends results as
// api.Result (internal/http maps them).
type Result struct {
	Status          Status
	ExitCode        int
	Stdout          []byte
	StdoutTruncated bool
	Stderr          []byte
	StderrTruncated bool
	Trap            string // trap message and wasm stack, for StatusTrap (and memory_limit)
	Results         []Value
	Duration        time.Duration // the guest's wall time
	MemoryPeakBytes int64
	Module          ModuleInfo
	CompileCached   bool          // the compiled code came from a cache (memory or disk)
	CompileDuration time.Duration // compiling (or finding compiled) the module for this run, before Duration
	CPUTime         time.Duration // user+system CPU time of the worker for the run; 0 when not measured
	// Files are the files of RunRequest.Files that matched its Outputs, in
	// path order; nil without outputs.
	Files []OutputFile
}

// MaxFileDepth bounds how deep below its mount a guest may create a file,
// directory or link, counted in path components ("a/b/c" is 3): a mkdir,
// open, rename, symlink or link past it fails in the guest with
// ENAMETOOLONG. Removing a tree holds a descriptor per level, so depth is
// a cost of the server's (its descriptors), not only of disk.
const MaxFileDepth = 64

// FuncSignature describes a function type, e.g. "(i32, i64) -> (f64)".
type FuncSignature struct {
	Params  []string `json:"params"`
	Results []string `json:"results"`
}

// String writes the signature as "(i32, i32) -> (i32)".
func (s FuncSignature) String() string {
	join := func(ts []string) string {
		out := "("
		for i, t := range ts {
			if i > 0 {
				out += ", "
			}
			out += t
		}
		return out + ")"
	}
	return join(s.Params) + " -> " + join(s.Results)
}

// Import is one import of a module.
type Import struct {
	Module    string         `json:"module"`
	Name      string         `json:"name"`
	Kind      string         `json:"kind"` // func, memory, table, global
	Signature *FuncSignature `json:"signature,omitempty"`
}

// Export is one export of a module.
type Export struct {
	Name      string         `json:"name"`
	Kind      string         `json:"kind"` // func, memory, table, global
	Signature *FuncSignature `json:"signature,omitempty"`
}

// MemoryInfo is a module's declared linear memory, in 64 KiB pages.
type MemoryInfo struct {
	MinPages uint32  `json:"min_pages"`
	MaxPages *uint32 `json:"max_pages,omitempty"` // nil: no declared maximum
}

// Inspection is what the engine learned about a module without running it.
type Inspection struct {
	SHA256    string      `json:"sha256"`
	SizeBytes int64       `json:"size_bytes"`
	WASI      bool        `json:"wasi"`            // a WASI command: it runs _start
	Entry     string      `json:"entry,omitempty"` // default entry point, "" when none
	Imports   []Import    `json:"imports"`
	Exports   []Export    `json:"exports"`
	Memory    *MemoryInfo `json:"memory,omitempty"`
	// ImportsOmitted and ExportsOmitted count the imports and exports that
	// Imports and Exports leave out: an inspection lists a bounded number
	// of each (the engine decides how many), so that a module with very many
	// cannot make its inspection, or what sends and stores it, large. A
	// call by name reaches every exported function, listed or not.
	ImportsOmitted int `json:"imports_omitted,omitempty"`
	ExportsOmitted int `json:"exports_omitted,omitempty"`
}

// Summary returns i without its lists of imports and exports, which it
// counts in ImportsOmitted and ExportsOmitted instead: what a list of
// modules carries of each (up to about 256 KiB of lists each otherwise).
// The stores keep it beside the inspection (modules.summary). Nil for nil.
func (i *Inspection) Summary() *Inspection {
	if i == nil {
		return nil
	}
	s := *i
	s.Imports, s.Exports = []Import{}, []Export{}
	s.ImportsOmitted += len(i.Imports)
	s.ExportsOmitted += len(i.Exports)
	return &s
}

// Info returns the ModuleInfo of the inspected module.
func (i *Inspection) Info() ModuleInfo {
	return ModuleInfo{SHA256: i.SHA256, SizeBytes: i.SizeBytes, WASI: i.WASI, Entry: i.Entry}
}

// DefaultCompileCacheBytes bounds the compiled modules an engine keeps in
// memory when nothing else is configured (WASMWIZ_COMPILE_CACHE).
const DefaultCompileCacheBytes = 256 * MiB

// CacheStats describe an engine's compiled-code cache: the engine reports
// them, worker processes forward them to the pool, and the metrics show them.
type CacheStats struct {
	Hits           uint64  // runs and inspections served from memory, including waits on another's compile
	Misses         uint64  // compiles (which may have been served by the disk cache)
	DiskHits       uint64  // misses whose compiled code came from the on-disk cache
	CompileSeconds float64 // total time spent compiling, including disk-cache loads
	Entries        int     // modules held
	Bytes          int64   // their estimated size
	DiskEvictions  uint64  // files deleted from the on-disk cache to keep its bound
}

// Engine runs WebAssembly modules.
type Engine interface {
	// Inspect decodes and validates a module under limits without running it.
	// It returns ETOOLARGE for a module over limits.MaxModuleBytes and EINVALID
	// for anything that cannot run: not wasm, a component, truncated, invalid,
	// unsatisfiable imports (all named), or a minimum memory above the limit.
	Inspect(ctx context.Context, wasm []byte, limits Limits) (*Inspection, error)

	// Run runs one module in a fresh instance. A guest outcome, including a
	// trap or a timeout, is a Result with a nil error. Errors are the caller's
	// mistakes (EINVALID, ETOOLARGE, checked before the guest starts),
	// EUNAVAILABLE when the engine is shutting down or saturated, and EINTERNAL.
	// A run stopped because ctx ended may come back with its error and a
	// Result that says what it used until then (Duration, output so far),
	// so that its usage is recorded; its Status means nothing.
	Run(ctx context.Context, req *RunRequest) (*Result, error)
}
