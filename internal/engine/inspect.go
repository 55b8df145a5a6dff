package engine

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmwiz/wasmwiz"
)

// analysis is what the engine keeps about a compiled module.
type analysis struct {
	insp       *wasmwiz.Inspection // shared: callers get copies
	funcs      map[string]api.FunctionDefinition
	minPages   uint32 // the module's own memory minimum (0 without memory)
	initialize bool   // exports _initialize (a WASI reactor)
	footprint  footprint
}

// defaultEntries are tried in order when a plain module is run without a
// function name.
var defaultEntries = []string{"_start", "main", "run"}

// Inspect decodes, validates and compiles a module without running it; the
// compiled code is kept for the runs that follow. It returns ETOOLARGE for
// a module over limits.MaxModuleBytes and EINVALID for anything that cannot
// run: empty, not wasm, a component, truncated, invalid, unsatisfiable
// imports (all named), or a minimum memory (linear memory, tables, globals,
// segments: account.go) above limits.MaxMemoryBytes; and
// EUNAVAILABLE after Close.
func (e *Engine) Inspect(ctx context.Context, wasm []byte, limits wasmwiz.Limits) (*wasmwiz.Inspection, error) {
	if err := checkModuleSize(wasm, limits); err != nil {
		return nil, err
	}
	if err := e.begin(); err != nil {
		return nil, err
	}
	defer e.end()
	c, _, _, err := e.cache.get(wasm, wasmwiz.ModuleDigest(wasm))
	if err != nil {
		return nil, err
	}
	defer e.cache.release(c)
	if err := checkFits(c.info, limits); err != nil {
		return nil, err
	}
	return copyInspection(c.info.insp), nil
}

func checkModuleSize(wasm []byte, limits wasmwiz.Limits) error {
	if limits.MaxModuleBytes > 0 && int64(len(wasm)) > limits.MaxModuleBytes {
		return wasmwiz.SizeError("module", int64(len(wasm)), limits.MaxModuleBytes, "")
	}
	return nil
}

func copyInspection(in *wasmwiz.Inspection) *wasmwiz.Inspection {
	out := *in
	out.Imports = slices.Clone(in.Imports)
	out.Exports = slices.Clone(in.Exports)
	if in.Memory != nil {
		m := *in.Memory
		out.Memory = &m
	}
	return &out
}

// checkImportNames refuses, before compiling, every import that no WASI
// function of that name satisfies, naming all of them.
func (e *Engine) checkImportNames(h *header) error {
	var missing []string
	for _, im := range h.imports {
		funcs, isWASI := e.wasiFuncs[im.module]
		switch {
		case im.kind == "memory":
			missing = append(missing, fmt.Sprintf("%s (an imported memory; the module must define its own)", im))
		case im.kind != "func":
			missing = append(missing, fmt.Sprintf("%s (an imported %s)", im, im.kind))
		case !isWASI:
			missing = append(missing, im.String())
		case funcs[im.name] == nil:
			missing = append(missing, fmt.Sprintf("%s (not a WASI preview1 function)", im))
		}
	}
	if len(missing) > 0 {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "the module needs imports this engine does not provide: %s; only WASI preview1 (wasi_snapshot_preview1, or wasi_unstable) functions can be imported",
			strings.Join(missing, ", "))
	}
	return nil
}

func signatureOf(d api.FunctionDefinition) *wasmwiz.FuncSignature {
	s := &wasmwiz.FuncSignature{Params: []string{}, Results: []string{}}
	for _, t := range d.ParamTypes() {
		s.Params = append(s.Params, api.ValueTypeName(t))
	}
	for _, t := range d.ResultTypes() {
		s.Results = append(s.Results, api.ValueTypeName(t))
	}
	return s
}

// analyse checks the compiled module's import signatures and builds its
// inspection.
func (e *Engine) analyse(h *header, mod wazero.CompiledModule, wasm []byte, sha string) (*analysis, error) {
	a := &analysis{funcs: mod.ExportedFunctions()}
	insp := &wasmwiz.Inspection{
		SHA256: sha, SizeBytes: int64(len(wasm)),
		Imports: []wasmwiz.Import{}, Exports: []wasmwiz.Export{},
	}
	var wrong []string
	for _, d := range mod.ImportedFunctions() {
		modName, name, _ := d.Import()
		sig := signatureOf(d)
		insp.Imports = append(insp.Imports, wasmwiz.Import{Module: modName, Name: name, Kind: "func", Signature: sig})
		if modName == wasiPreview1 || modName == wasiUnstable {
			insp.WASI = true
			want := signatureOf(e.wasiFuncs[modName][name])
			if want.String() != sig.String() {
				wrong = append(wrong, fmt.Sprintf("%s.%s is imported as %s but WASI defines %s", modName, name, sig, want))
			}
		}
	}
	if len(wrong) > 0 {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "the module imports WASI functions with the wrong signature: %s", strings.Join(wrong, "; "))
	}
	for _, ex := range h.exports {
		x := wasmwiz.Export{Name: ex.name, Kind: ex.kind}
		if d, ok := a.funcs[ex.name]; ok && ex.kind == "func" {
			x.Signature = signatureOf(d)
		}
		insp.Exports = append(insp.Exports, x)
	}
	if h.memory != nil {
		m := *h.memory
		insp.Memory = &m
		a.minPages = m.MinPages
	}
	if _, ok := a.funcs["_initialize"]; ok {
		a.initialize = true
	}
	if insp.WASI {
		if _, ok := a.funcs["_start"]; ok {
			insp.Entry = "_start"
		}
	} else {
		for _, name := range defaultEntries {
			if _, ok := a.funcs[name]; ok {
				insp.Entry = name
				break
			}
		}
	}
	a.insp = insp
	return a, nil
}

// callable lists the exports a caller may name, with their signatures.
func (a *analysis) callable() string {
	var names []string
	for name, d := range a.funcs {
		if numericOnly(d) && name != "_initialize" {
			names = append(names, name+signatureOf(d).String())
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func numericOnly(d api.FunctionDefinition) bool {
	for _, ts := range [][]api.ValueType{d.ParamTypes(), d.ResultTypes()} {
		for _, t := range ts {
			switch t {
			case api.ValueTypeI32, api.ValueTypeI64, api.ValueTypeF32, api.ValueTypeF64:
			default:
				return false
			}
		}
	}
	return true
}

// resolve picks the function a request runs and parses its params. It
// returns EINVALID for an unknown function, a non-numeric signature, or
// params of the wrong count or type.
func (a *analysis) resolve(req *wasmwiz.RunRequest) (string, []uint64, error) {
	name := req.Function
	if name == "" {
		name = a.insp.Entry
		if name == "" {
			what := "the module exports none of _start, main, run"
			if a.insp.WASI {
				what = "the WASI module exports no _start (a reactor needs a function name)"
			}
			return "", nil, wasmwiz.Errorf(wasmwiz.EINVALID, "%s; name a function to call: %s", what, a.callable())
		}
	}
	d, ok := a.funcs[name]
	if !ok {
		return "", nil, wasmwiz.Errorf(wasmwiz.EINVALID, "the module exports no function %q; callable exports: %s", name, a.callable())
	}
	sig := signatureOf(d)
	if !numericOnly(d) {
		return "", nil, wasmwiz.Errorf(wasmwiz.EINVALID, "function %s has signature %s, which takes or returns non-numeric values; only i32, i64, f32 and f64 can be passed", name, sig)
	}
	if len(req.Params) != len(sig.Params) {
		return "", nil, wasmwiz.Errorf(wasmwiz.EINVALID, "function %s has signature %s: it takes %d params, got %d", name, sig, len(sig.Params), len(req.Params))
	}
	params := make([]uint64, len(req.Params))
	for i, p := range req.Params {
		v, err := wasmwiz.ParseValue(sig.Params[i], strings.TrimSpace(p))
		if err != nil {
			return "", nil, wasmwiz.Errorf(wasmwiz.EINVALID, "function %s has signature %s: param %d: %s", name, sig, i+1, wasmwiz.ErrorMessage(err))
		}
		params[i] = v.Bits
	}
	return name, params, nil
}
