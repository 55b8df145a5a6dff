package engine

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/hostiletest"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

func TestRefusals(t *testing.T) {
	t.Parallel()
	e := sharedEngine(t)
	hello := testmodule.Read(t, "hello.wasm")
	tests := []struct {
		name     string
		wasm     []byte
		req      func(r *wasmwiz.RunRequest)
		code     string
		contains []string
		absent   []string
		runOnly  bool // a refusal of the request, not of the module
	}{
		{name: "empty", wasm: []byte{}, code: wasmwiz.EINVALID, contains: []string{"empty"}},
		{name: "text file", wasm: []byte("hello, this is just text\n"), code: wasmwiz.EINVALID, contains: []string{"text file"}},
		{name: "wat text", wasm: testmodule.Read(t, "add.wat"), code: wasmwiz.EINVALID, contains: []string{"text format", "wat2wasm"}},
		{name: "random bytes", wasm: []byte{0xff, 0x00, 0x13, 0x37, 0x01}, code: wasmwiz.EINVALID, contains: []string{"magic"}},
		{name: "wrong version", wasm: []byte{0, 'a', 's', 'm', 2, 0, 0, 0}, code: wasmwiz.EINVALID, contains: []string{"version 2"}},
		{name: "component", wasm: []byte{0, 'a', 's', 'm', 0x0d, 0, 1, 0}, code: wasmwiz.EINVALID,
			contains: []string{"components are not supported; build a core module for wasm32-wasip1"}},
		{name: "header only truncated", wasm: hello[:6], code: wasmwiz.EINVALID, contains: []string{"truncated"}},
		{name: "truncated", wasm: hello[:len(hello)/2], code: wasmwiz.EINVALID, contains: []string{"truncated"}},
		{name: "fails validation", wasm: testmodule.Read(t, "invalid_type.wasm"), code: wasmwiz.EINVALID, contains: []string{"invalid module"}},
		// Modules whose declared counts made wazero allocate GiBs (the
		// process died) or panic, found by fuzzing; see bounds.go.
		{name: "type with 2^32-1 params", wasm: unhex(t, "0061736d0100000001080160ffffffff0f00"), code: wasmwiz.EINVALID,
			contains: []string{"type section: declares 4294967295 entries"}},
		{name: "function with 2^32-1 locals", wasm: unhex(t, "0061736d01000000010401600000030201000a0a010701ffffffff0f7f0b"), code: wasmwiz.EINVALID,
			contains: []string{"more than 50000 locals"}},
		{name: "data segment of 4 GiB", wasm: unhex(t, "0061736d0100000005030100010b0d010041000bffffffff0f616263"), code: wasmwiz.EINVALID,
			contains: []string{"data section: declares 4294967295 bytes"}},
		{name: "name section with 2^32-1 names", wasm: unhex(t, "0061736d01000000000d046e616d650106ffffffff0f00"), code: wasmwiz.EINVALID,
			contains: []string{"name section: declares 4294967295 entries"}},
		{name: "call to a function of a missing type", wasm: unhex(t, "0061736d0100000001040160000003030200050a0902040010010b02000b"), code: wasmwiz.EINVALID,
			contains: []string{"invalid module"}},
		{name: "unsatisfiable imports", wasm: testmodule.Read(t, "bad_imports.wasm"), code: wasmwiz.EINVALID,
			contains: []string{"env.console_log", "wasi.thread-spawn", "env.memory (an imported memory"},
			absent:   []string{"fd_write"}},
		{name: "wrong WASI signature", wasm: testmodule.Read(t, "bad_signature.wasm"), code: wasmwiz.EINVALID,
			contains: []string{"wasi_snapshot_preview1.fd_write is imported as (i32) -> (i32) but WASI defines (i32, i32, i32, i32) -> (i32)"}},
		{name: "minimum memory over the limit", wasm: testmodule.Read(t, "big_memory.wasm"), code: wasmwiz.EINVALID,
			req:      func(r *wasmwiz.RunRequest) { r.Limits.MaxMemoryBytes = 128 * wasmwiz.MiB },
			contains: []string{"4096 pages", "256MiB", "128MiB"}},
		{name: "module too large", wasm: hello, code: wasmwiz.ETOOLARGE,
			req: func(r *wasmwiz.RunRequest) { r.Limits.MaxModuleBytes = 100 }, contains: []string{"over the 100B limit"}},
		{name: "stdin too large", wasm: hello, code: wasmwiz.ETOOLARGE,
			req:      func(r *wasmwiz.RunRequest) { r.Limits.MaxStdinBytes = 4; r.Stdin = []byte("12345") },
			contains: []string{"stdin"}},
		{name: "env name with =", wasm: hello, code: wasmwiz.EINVALID,
			req:     func(r *wasmwiz.RunRequest) { r.Env = map[string]string{"A=B": "c"} },
			runOnly: true, contains: []string{`"A=B"`, "without '='"}},
		{name: "env value with NUL", wasm: hello, code: wasmwiz.EINVALID,
			req:     func(r *wasmwiz.RunRequest) { r.Env = map[string]string{"A": "b\x00c"} },
			runOnly: true, contains: []string{"A contains a NUL byte"}},
		{name: "arg with NUL", wasm: hello, code: wasmwiz.EINVALID,
			req:     func(r *wasmwiz.RunRequest) { r.Args = []string{"ok", "no\x00"} },
			runOnly: true, contains: []string{"argument 2 contains a NUL byte"}},
		{name: "too many args", wasm: hello, code: wasmwiz.ETOOLARGE,
			req:     func(r *wasmwiz.RunRequest) { r.Args = make([]string, wasmwiz.MaxArgs+1) },
			runOnly: true, contains: []string{"more than 4096 arguments"}},
		{name: "env over the total", wasm: hello, code: wasmwiz.ETOOLARGE,
			req: func(r *wasmwiz.RunRequest) {
				r.Env = map[string]string{}
				for i := range 9 {
					r.Env[fmt.Sprint("V", i)] = strings.Repeat("x", 120<<10)
				}
			},
			runOnly: true, contains: []string{"over the 1MiB limit of both together"}},
		{name: "unknown function", wasm: testmodule.Read(t, "add.wasm"), code: wasmwiz.EINVALID,
			req:      func(r *wasmwiz.RunRequest) { r.Function = "sub" },
			contains: []string{`no function "sub"`, "add(i32, i32) -> (i32)", "addf(f64, f64) -> (f64)"},
			absent:   []string{"takes_ref"}},
		{name: "no default entry", wasm: testmodule.Read(t, "no_entry.wasm"), code: wasmwiz.EINVALID,
			contains: []string{"none of _start, main, run", "neg(f64) -> (f64), square(i32) -> (i32)"}},
		{name: "reactor without a function", wasm: testmodule.Read(t, "reactor.wasm"), code: wasmwiz.EINVALID,
			contains: []string{"no _start", "answer() -> (i32)", "greet() -> ()"}, absent: []string{"_initialize"}},
		{name: "too few params", wasm: testmodule.Read(t, "add.wasm"), code: wasmwiz.EINVALID,
			req:      func(r *wasmwiz.RunRequest) { r.Function, r.Params = "add", []string{"1"} },
			contains: []string{"add has signature (i32, i32) -> (i32)", "takes 2 params, got 1"}},
		{name: "param not a number", wasm: testmodule.Read(t, "add.wasm"), code: wasmwiz.EINVALID,
			req:      func(r *wasmwiz.RunRequest) { r.Function, r.Params = "add", []string{"1", "two"} },
			contains: []string{"(i32, i32) -> (i32)", "param 2", `"two" is not a valid i32`}},
		{name: "param out of range", wasm: testmodule.Read(t, "add.wasm"), code: wasmwiz.EINVALID,
			req:      func(r *wasmwiz.RunRequest) { r.Function, r.Params = "add", []string{"1", "4294967296"} },
			contains: []string{"not a valid i32"}},
		{name: "float for an integer", wasm: testmodule.Read(t, "add.wasm"), code: wasmwiz.EINVALID,
			req:      func(r *wasmwiz.RunRequest) { r.Function, r.Params = "add64", []string{"1.5", "1"} },
			contains: []string{"not a valid i64"}},
		{name: "non-numeric signature", wasm: testmodule.Read(t, "add.wasm"), code: wasmwiz.EINVALID,
			req:      func(r *wasmwiz.RunRequest) { r.Function = "takes_ref" },
			contains: []string{"(externref) -> ()", "non-numeric"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := &wasmwiz.RunRequest{Wasm: tt.wasm, Limits: testmodule.Limits()}
			if tt.req != nil {
				tt.req(req)
			}
			res, err := e.Run(context.Background(), req)
			if err == nil {
				t.Fatalf("Run succeeded with status %s, want %s", res.Status, tt.code)
			}
			if code := wasmwiz.ErrorCode(err); code != tt.code {
				t.Fatalf("code %s, want %s (%v)", code, tt.code, err)
			}
			msg := wasmwiz.ErrorMessage(err)
			for _, s := range tt.contains {
				if !strings.Contains(msg, s) {
					t.Errorf("message %q\nwant it to contain %q", msg, s)
				}
			}
			for _, s := range tt.absent {
				if strings.Contains(msg, s) {
					t.Errorf("message %q\nwant it not to contain %q", msg, s)
				}
			}
			if !tt.runOnly && req.Function == "" && tt.code == wasmwiz.EINVALID && !strings.Contains(tt.name, "entry") && !strings.Contains(tt.name, "reactor") {
				// Inspect refuses the same modules with the same message.
				_, ierr := e.Inspect(context.Background(), req.Wasm, req.Limits)
				if wasmwiz.ErrorMessage(ierr) != msg {
					t.Errorf("Inspect: %v, want the message of Run", ierr)
				}
			}
		})
	}
}

func TestInspect(t *testing.T) {
	t.Parallel()
	e := sharedEngine(t)
	tests := []struct {
		name    string
		file    string
		wasi    bool
		entry   string
		imports []string // module.name signature
		exports []string // name kind signature
		memMin  int64    // -1: no memory
	}{
		{name: "plain functions", file: "add.wasm", entry: "",
			exports: []string{"add func (i32, i32) -> (i32)", "add64 func (i64, i64) -> (i64)", "addf func (f64, f64) -> (f64)",
				"halve func (f32) -> (f32)", "pair func () -> (i32, i64)", "takes_ref func (externref) -> ()"},
			memMin: -1},
		{name: "plain main", file: "plain_main.wasm", entry: "main",
			exports: []string{"run func () -> (i32)", "main func () -> (i32)"}, memMin: -1},
		{name: "reactor", file: "reactor.wasm", wasi: true, entry: "",
			imports: []string{"wasi_snapshot_preview1.fd_write (i32, i32, i32, i32) -> (i32)"},
			exports: []string{"memory memory", "_initialize func () -> ()", "answer func () -> (i32)", "greet func () -> ()"},
			memMin:  1},
		{name: "legacy WASI", file: "unstable.wasm", wasi: true, entry: "_start",
			imports: []string{"wasi_unstable.fd_write (i32, i32, i32, i32) -> (i32)", "wasi_unstable.proc_exit (i32) -> ()"},
			exports: []string{"memory memory", "_start func () -> ()"}, memMin: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wasm := testmodule.Read(t, tt.file)
			in, err := e.Inspect(context.Background(), wasm, testmodule.Limits())
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			if in.WASI != tt.wasi || in.Entry != tt.entry || in.SizeBytes != int64(len(wasm)) || len(in.SHA256) != 64 {
				t.Errorf("wasi %v entry %q size %d sha %q; want wasi %v entry %q size %d", in.WASI, in.Entry, in.SizeBytes, in.SHA256, tt.wasi, tt.entry, len(wasm))
			}
			var imports, exports []string
			for _, im := range in.Imports {
				imports = append(imports, im.Module+"."+im.Name+" "+im.Signature.String())
			}
			for _, ex := range in.Exports {
				s := ex.Name + " " + ex.Kind
				if ex.Signature != nil {
					s += " " + ex.Signature.String()
				}
				exports = append(exports, s)
			}
			if strings.Join(imports, "; ") != strings.Join(tt.imports, "; ") {
				t.Errorf("imports\n%v\nwant\n%v", imports, tt.imports)
			}
			if strings.Join(exports, "; ") != strings.Join(tt.exports, "; ") {
				t.Errorf("exports\n%v\nwant\n%v", exports, tt.exports)
			}
			switch {
			case tt.memMin < 0 && in.Memory != nil:
				t.Errorf("memory %+v, want none", in.Memory)
			case tt.memMin >= 0 && (in.Memory == nil || int64(in.Memory.MinPages) != tt.memMin):
				t.Errorf("memory %+v, want min %d", in.Memory, tt.memMin)
			}
		})
	}
}

// TestInspectManyExports: 100,000 exports of one function of 50 params (a
// 730 KB module, which listed in full is a 35 MB inspection) list a bounded
// prefix and count the rest; every export can still be called by name, and
// an unknown name's error lists a bounded part of what can be called.
func TestInspectManyExports(t *testing.T) {
	t.Parallel()
	e := sharedEngine(t)
	const n, params = 100_000, 50
	wasm := hostiletest.ManyExports(n, params)
	in, err := e.Inspect(context.Background(), wasm, testmodule.Limits())
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	b, _ := json.Marshal(in)
	if len(b) > 1<<20 || len(in.Exports) > 1000 || len(in.Exports) == 0 {
		t.Fatalf("inspection of %d bytes lists %d exports; want at most 1 MiB and 1000 exports", len(b), len(in.Exports))
	}
	if got := len(in.Exports) + in.ExportsOmitted; got != n || in.Exports[0].Name != "f0" {
		t.Fatalf("listed %d (first %q) + omitted %d = %d exports; want %d from f0", len(in.Exports), in.Exports[0].Name, in.ExportsOmitted, got, n)
	}
	ps := make([]string, params)
	for i := range ps {
		ps[i] = "1"
	}
	req := &wasmwiz.RunRequest{Wasm: wasm, Function: fmt.Sprintf("f%d", n-1), Params: ps, Limits: testmodule.Limits()}
	res, err := e.Run(context.Background(), req)
	if err != nil || res.Status != wasmwiz.StatusOK || len(res.Results) != 1 || res.Results[0].Bits != params {
		t.Fatalf("calling the last export: %+v, %v; want ok with %d", res, err, params)
	}
	req.Function = "absent"
	_, err = e.Run(context.Background(), req)
	msg := wasmwiz.ErrorMessage(err)
	if wasmwiz.ErrorCode(err) != wasmwiz.EINVALID || len(msg) > 8<<10 || !strings.Contains(msg, "more") {
		t.Fatalf("unknown function: %s error of %d bytes (%.200q); want EINVALID within 8 KiB saying how many more", wasmwiz.ErrorCode(err), len(msg), msg)
	}
}

func TestInspectCopiesAreIndependent(t *testing.T) {
	t.Parallel()
	e := sharedEngine(t)
	wasm := testmodule.Read(t, "add.wasm")
	a, err := e.Inspect(context.Background(), wasm, testmodule.Limits())
	if err != nil {
		t.Fatal(err)
	}
	a.Exports[0].Name = "changed"
	b, err := e.Inspect(context.Background(), wasm, testmodule.Limits())
	if err != nil {
		t.Fatal(err)
	}
	if b.Exports[0].Name != "add" {
		t.Fatalf("a caller's change to an inspection leaked into the cache: %q", b.Exports[0].Name)
	}
}

func TestRunReportsCallerSHA256(t *testing.T) {
	t.Parallel()
	e := sharedEngine(t)
	// A caller-supplied sha256 is trusted for the cache key (it comes from
	// our own store), and reported back as given.
	wasm := testmodule.Read(t, "hello.wasm")
	res, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, SHA256: strings.Repeat("AB", 32), Limits: testmodule.Limits()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Module.SHA256 != strings.Repeat("ab", 32) || !bytes.Equal(res.Stdout, []byte("Hello, World!\n")) {
		t.Fatalf("module %+v stdout %q", res.Module, res.Stdout)
	}
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
