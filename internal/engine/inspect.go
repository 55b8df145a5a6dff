package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

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
	c, _, _, err := e.cache.get(wasmwiz.OwnerFromContext(ctx), wasm, wasmwiz.ModuleDigest(wasm))
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
			joinNames(missing, ", "))
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

// An inspection lists at most maxListed imports and as many exports, within
// maxListedBytes of JSON for both lists together, and counts the rest
// (Inspection.ImportsOmitted, ExportsOmitted): 100,000 exports of one
// function type of 50 params take 730 KB of module and would list as 35 MB,
// which the worker sends, serve decodes and the registry stores.
const (
	maxListed      = 1000
	maxListedBytes = 256 << 10
)

// listing keeps an inspection's lists within their bounds. Each list is a
// prefix of the module's: once an entry is left out, so is every later one.
type listing struct{ bytes int }

// add appends x to list unless the list or the listing is full, in which
// case it counts x in omitted.
func add[T any](l *listing, list *[]T, omitted *int, x T) {
	if *omitted == 0 && len(*list) < maxListed {
		if b, err := json.Marshal(x); err == nil && l.bytes+len(b)+1 <= maxListedBytes {
			l.bytes += len(b) + 1
			*list = append(*list, x)
			return
		}
	}
	*omitted++
}

// maxNamesBytes bounds the names an error message lists, and maxNameBytes
// each of them: the rest are counted.
const (
	maxNamesBytes = 4 << 10
	maxNameBytes  = 512
)

// joinNames joins names with sep within about maxNamesBytes, saying how
// many more there are.
func joinNames(names []string, sep string) string {
	var b strings.Builder
	for i, n := range names {
		n = cutText(n, maxNameBytes, "…")
		if i > 0 && b.Len()+len(sep)+len(n) > maxNamesBytes {
			fmt.Fprintf(&b, "%s… and %d more", sep, len(names)-i)
			break
		}
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(n)
	}
	return b.String()
}

// cutText cuts s to at most n bytes, at a rune boundary, followed by mark
// when cut.
func cutText(s string, n int, mark string) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + mark
}

// analyse checks the compiled module's import signatures and builds its
// inspection.
func (e *Engine) analyse(h *header, mod wazero.CompiledModule, wasm []byte, sha string) (*analysis, error) {
	a := &analysis{funcs: mod.ExportedFunctions()}
	insp := &wasmwiz.Inspection{
		SHA256: sha, SizeBytes: int64(len(wasm)),
		Imports: []wasmwiz.Import{}, Exports: []wasmwiz.Export{},
	}
	var l listing
	var wrong []string
	for _, d := range mod.ImportedFunctions() {
		modName, name, _ := d.Import()
		sig := signatureOf(d)
		add(&l, &insp.Imports, &insp.ImportsOmitted, wasmwiz.Import{Module: modName, Name: name, Kind: "func", Signature: sig})
		if modName == wasiPreview1 || modName == wasiUnstable {
			insp.WASI = true
			want := signatureOf(e.wasiFuncs[modName][name])
			if want.String() != sig.String() {
				wrong = append(wrong, fmt.Sprintf("%s.%s is imported as %s but WASI defines %s", modName, name, cutText(sig.String(), maxNameBytes, "…"), want))
			}
		}
	}
	if len(wrong) > 0 {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "the module imports WASI functions with the wrong signature: %s", joinNames(wrong, "; "))
	}
	for _, ex := range h.exports {
		if insp.ExportsOmitted > 0 {
			insp.ExportsOmitted++ // the list is full: spare the signature
			continue
		}
		x := wasmwiz.Export{Name: ex.name, Kind: ex.kind}
		if d, ok := a.funcs[ex.name]; ok && ex.kind == "func" {
			x.Signature = signatureOf(d)
		}
		add(&l, &insp.Exports, &insp.ExportsOmitted, x)
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

// callable lists the exports a caller may name, with their signatures,
// within about maxNamesBytes.
func (a *analysis) callable() string {
	var names []string
	for name, d := range a.funcs {
		if numericOnly(d) && name != "_initialize" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "none"
	}
	// Signatures only for what can be listed: each may be long.
	n := min(len(names), maxNamesBytes)
	for i, name := range names[:n] {
		names[i] = cutText(name, maxNameBytes, "…") + cutText(signatureOf(a.funcs[name]).String(), maxNameBytes, "…")
	}
	return joinNames(names, ", ")
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
		return "", nil, wasmwiz.Errorf(wasmwiz.EINVALID, "the module exports no function %q; callable exports: %s", cutText(name, maxNameBytes, "…"), a.callable())
	}
	sig := signatureOf(d)
	// Both the name and the signature may be long: messages cut them.
	what := func() string {
		return fmt.Sprintf("function %s has signature %s", cutText(name, maxNameBytes, "…"), cutText(sig.String(), maxNameBytes, "…"))
	}
	if !numericOnly(d) {
		return "", nil, wasmwiz.Errorf(wasmwiz.EINVALID, "%s, which takes or returns non-numeric values; only i32, i64, f32 and f64 can be passed", what())
	}
	if len(req.Params) != len(sig.Params) {
		return "", nil, wasmwiz.Errorf(wasmwiz.EINVALID, "%s: it takes %d params, got %d", what(), len(sig.Params), len(req.Params))
	}
	params := make([]uint64, len(req.Params))
	for i, p := range req.Params {
		v, err := wasmwiz.ParseValue(sig.Params[i], strings.TrimSpace(p))
		if err != nil {
			return "", nil, wasmwiz.Errorf(wasmwiz.EINVALID, "%s: param %d: %s", what(), i+1, wasmwiz.ErrorMessage(err))
		}
		params[i] = v.Bits
	}
	return name, params, nil
}
