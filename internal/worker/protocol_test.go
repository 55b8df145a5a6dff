package worker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/hostiletest"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

func TestProtocolRoundTrip(t *testing.T) {
	t.Parallel()
	t.Run("run request", func(t *testing.T) {
		req := &wasmwiz.RunRequest{
			Wasm: []byte("\x00asm\x01\x00\x00\x00"), SHA256: "ab12", Name: "m.wasm",
			Args: []string{"a", "", "c d"}, Env: map[string]string{"K": "V", "EMPTY": ""},
			Stdin: []byte{0, 1, 2, 255}, Function: "f", Params: []string{"1", "-2.5", "nan"},
			Limits: wasmwiz.Limits{Timeout: 1500 * time.Millisecond, MaxMemoryBytes: 1 << 30, MaxOutputBytes: 5, MaxModuleBytes: 6, MaxStdinBytes: 7},
			Mounts: []wasmwiz.Mount{{HostDir: "/tmp/w1/run-1", GuestDir: "/work"}, {HostDir: "/d", GuestDir: ".", ReadOnly: true}},
		}
		for _, withWasm := range []bool{true, false} {
			e := newFrame(0)
			encodeRun(e, req.SHA256, req, withWasm)
			got, hasWasm := roundTrip(t, msgRun, e, decodeRun)
			if hasWasm != withWasm {
				t.Fatalf("hasWasm = %v, want %v", hasWasm, withWasm)
			}
			want := *req
			if !withWasm {
				want.Wasm = nil
			}
			if !reflect.DeepEqual(got, &want) {
				t.Errorf("withWasm %v: got %+v, want %+v", withWasm, got, &want)
			}
		}
	})
	t.Run("large byte strings", func(t *testing.T) {
		// Over refBytes, modules, stdin and output travel as separate
		// segments of the frame; the reader sees one frame all the same.
		big := func(n int, seed byte) []byte {
			b := make([]byte, n)
			for i := range b {
				b[i] = seed + byte(i*7)
			}
			return b
		}
		req := &wasmwiz.RunRequest{Wasm: big(3*refBytes+1, 1), SHA256: "ff", Stdin: big(refBytes, 2), Args: []string{"x"}}
		e := newFrame(0)
		encodeRun(e, req.SHA256, req, true)
		got, _ := roundTrip(t, msgRun, e, decodeRun)
		if !bytes.Equal(got.Wasm, req.Wasm) || !bytes.Equal(got.Stdin, req.Stdin) || got.SHA256 != "ff" || len(got.Args) != 1 {
			t.Errorf("large run request did not survive the round trip")
		}
	})
	t.Run("result", func(t *testing.T) {
		// Output crosses in output frames; the result keeps only the flags.
		res := &wasmwiz.Result{
			Status: wasmwiz.StatusExit, ExitCode: -3, StdoutTruncated: true,
			Trap: "wasm stack", Duration: 1234567,
			Results:         []wasmwiz.Value{{Type: "i32", Bits: 8}, {Type: "f64", Bits: 1 << 63}},
			MemoryPeakBytes: 65536, CompileCached: true, CPUTime: 42 * time.Millisecond,
			Module: wasmwiz.ModuleInfo{SHA256: "cd", SizeBytes: 99, WASI: true, Entry: "_start"},
		}
		e := newFrame(0)
		encodeResult(e, res)
		got, _ := roundTrip(t, msgResult, e, func(d *dec) (*wasmwiz.Result, bool) { return decodeResult(d), false })
		if !reflect.DeepEqual(got, res) {
			t.Errorf("got %+v, want %+v", got, res)
		}
	})
	t.Run("error", func(t *testing.T) {
		e := newFrame(0)
		encodeError(e, wasmwiz.WrapError(wasmwiz.ETOOLARGE, errors.New("secret detail"), "too big"))
		got, _ := roundTrip(t, msgError, e, func(d *dec) (error, bool) { return decodeError(d), false })
		if wasmwiz.ErrorCode(got) != wasmwiz.ETOOLARGE || wasmwiz.ErrorMessage(got) != "too big" {
			t.Errorf("got %v, want ETOOLARGE too big", got)
		}
		if bytes.Contains([]byte(got.Error()), []byte("secret")) {
			t.Errorf("the wrapped cause crossed the pipe: %v", got)
		}
	})
}

// roundTrip writes e as a frame, reads it back and decodes it.
func roundTrip[T any](t *testing.T, kind byte, e *enc, decode func(*dec) (T, bool)) (T, bool) {
	t.Helper()
	var buf bytes.Buffer
	if err := writeFrame(&buf, kind, e); err != nil {
		t.Fatal(err)
	}
	k, body, err := readFrame(bufio.NewReader(&buf))
	if err != nil || k != kind {
		t.Fatalf("readFrame = %q, %v", k, err)
	}
	d := &dec{b: body}
	v, b := decode(d)
	if err := d.done(); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return v, b
}

// TestProtocolMalformed: broken frames and bodies are errors, never panics
// or huge allocations.
func TestProtocolMalformed(t *testing.T) {
	t.Parallel()
	frames := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short header", []byte{0, 0}},
		{"zero length", []byte{0, 0, 0, 0, 'R'}},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff, 'R'}},
		{"truncated body", []byte{0, 0, 0, 9, 'R', 1, 2}},
	}
	for _, tt := range frames {
		t.Run("frame "+tt.name, func(t *testing.T) {
			if _, _, err := readFrame(bufio.NewReader(bytes.NewReader(tt.in))); err == nil {
				t.Fatal("readFrame accepted a broken frame")
			}
		})
	}
	// Every prefix of a valid body, and a body with a lying length, must
	// fail to decode.
	e := newFrame(0)
	encodeRun(e, "sha", &wasmwiz.RunRequest{Wasm: []byte("wasm"), Args: []string{"x"}, Env: map[string]string{"a": "b"}, Params: []string{"1"}}, true)
	body := e.b[5:]
	for n := range len(body) {
		d := &dec{b: body[:n]}
		decodeRun(d)
		if d.done() == nil {
			t.Errorf("a run body cut to %d of %d bytes decoded", n, len(body))
		}
	}
	d := &dec{b: []byte{0xff, 0xff, 0xff, 0xff, 0x0f}}
	if d.strings(); d.done() == nil {
		t.Error("a list longer than its body decoded")
	}
	r := &enc{}
	encodeResult(r, &wasmwiz.Result{Status: wasmwiz.StatusOK, StderrTruncated: true})
	for n := range len(r.b) {
		d := &dec{b: r.b[:n]}
		decodeResult(d)
		if d.done() == nil {
			t.Errorf("a result cut to %d of %d bytes decoded", n, len(r.b))
		}
	}
}

func FuzzDecodeRun(f *testing.F) {
	e := newFrame(0)
	encodeRun(e, "sha", &wasmwiz.RunRequest{Wasm: []byte("w"), Env: map[string]string{"a": "b"}}, true)
	f.Add(e.b[5:])
	f.Add([]byte{fdStdout, 'h', 'i', '\n'})
	f.Add([]byte{fdStderr})
	f.Fuzz(func(t *testing.T, b []byte) {
		d := &dec{b: b}
		decodeRun(d)
		_ = d.done()
		d = &dec{b: b}
		decodeResult(d)
		_ = d.done()
		// An output body from a broken or hostile worker: never more than
		// the cap is kept, and a truncated stream holds exactly the cap.
		const limit = 16
		o := newRunOutput(limit)
		for range 3 {
			if o.add(b) != nil {
				return
			}
		}
		for _, st := range []outStream{o.stdout, o.stderr} {
			if len(st.b) > limit || (st.truncated && len(st.b) != limit) {
				t.Fatalf("a stream holds %d bytes (truncated %v) under a cap of %d", len(st.b), st.truncated, limit)
			}
		}
	})
}

func TestLRU(t *testing.T) {
	t.Parallel()
	c := newLRU(10)
	c.add("a", 4, 1)
	c.add("b", 4, 2)
	c.add("a", 4, 1) // a is now the most recent
	c.add("c", 4, 3) // evicts b
	if c.has("b") || !c.has("a") || !c.has("c") {
		t.Errorf("after adding c: a %v b %v c %v, want a and c", c.has("a"), c.has("b"), c.has("c"))
	}
	c.add("huge", 100, 4) // over the budget alone: kept, all others evicted
	if c.len() != 1 || !c.has("huge") {
		t.Errorf("after adding huge: %d keys, want only huge", c.len())
	}
	if v, ok := c.get("huge"); !ok || v != 4 {
		t.Errorf("get(huge) = %v, %v", v, ok)
	}
}

// TestServeRefusesOtherProtocolVersion: a worker from another build answers
// a config of another protocol version with an error frame and stops.
func TestServeRefusesOtherProtocolVersion(t *testing.T) {
	t.Parallel()
	var in, out bytes.Buffer
	e := newFrame(0)
	e.uvarint(protocolVersion + 1)
	e.string("")
	if err := writeFrame(&in, msgConfig, e); err != nil {
		t.Fatal(err)
	}
	started := false
	err := Serve(context.Background(), &in, &out, ServeOptions{NewEngine: func(context.Context, EngineSettings) (GuestEngine, error) {
		started = true
		return nil, errors.New("not reached")
	}})
	if err == nil || !strings.Contains(err.Error(), "version") {
		t.Fatalf("Serve = %v, want a version error", err)
	}
	if started {
		t.Error("the engine started despite the version mismatch")
	}
	k, body, err := readFrame(bufio.NewReader(&out))
	if err != nil || k != msgError {
		t.Fatalf("answer = %q, %v; want an error frame", k, err)
	}
	if got := decodeError(&dec{b: body}); !strings.Contains(wasmwiz.ErrorMessage(got), "version") {
		t.Errorf("error frame = %v, want it to name the version", got)
	}
}

// writesCounter counts the writes it is given.
type writesCounter struct {
	bytes.Buffer
	writes int
}

func (w *writesCounter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

// TestWriteFrameAfter: the frames that precede an answer go out with a
// small answer in one write, and with a large one (in segments) before it;
// either way the reader gets every frame whole and in order.
func TestWriteFrameAfter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		body       []byte
		wantWrites int
	}{
		{"small answer", []byte("result"), 1},
		{"large answer", bytes.Repeat([]byte{'x'}, 3*refBytes), 3}, // pre, the copied header, the referenced body
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pre []byte
			for _, k := range []byte{msgRetire, msgStats} {
				f := newFrame(8)
				f.string(string(k))
				if err := sealFrame(k, f); err != nil {
					t.Fatal(err)
				}
				pre = append(pre, f.b...)
			}
			e := newFrame(len(tc.body))
			e.bytes(tc.body)
			var w writesCounter
			if _, err := writeFrameAfter(&w, pre, msgResult, e); err != nil {
				t.Fatal(err)
			}
			if w.writes != tc.wantWrites {
				t.Errorf("%d writes, want %d", w.writes, tc.wantWrites)
			}
			r := bufio.NewReader(&w.Buffer)
			for _, k := range []byte{msgRetire, msgStats} {
				kind, body, err := readFrame(r)
				if err != nil || kind != k {
					t.Fatalf("frame %q, %v; want %q", kind, err, k)
				}
				if d := (&dec{b: body}); d.string() != string(k) || d.done() != nil {
					t.Fatalf("frame %q: body %q", k, body)
				}
			}
			kind, body, err := readFrame(r)
			if err != nil || kind != msgResult {
				t.Fatalf("answer %q, %v", kind, err)
			}
			if d := (&dec{b: body}); !bytes.Equal(d.bytes(), tc.body) || d.done() != nil {
				t.Fatal("answer's body changed")
			}
			if _, _, err := readFrame(r); err == nil {
				t.Fatal("a frame more than was written")
			}
		})
	}
}

// TestAnswerFrameBound: a worker's answers (result, inspection, error, and
// the frames around them) are refused from a header past
// maxAnswerFrameBytes, before serve allocates the body; requests to a
// worker, which carry modules, keep the large bound.
func TestAnswerFrameBound(t *testing.T) {
	t.Parallel()
	const huge = 64 << 20
	for _, kind := range []byte{msgInspection, msgResult, msgError, msgStats, msgStarted, msgHello, msgNeedModule, msgRetire, 'z'} {
		var hdr [5]byte
		binary.BigEndian.PutUint32(hdr[:4], huge)
		hdr[4] = kind
		if _, _, _, err := readFrameAligned(bufio.NewReader(bytes.NewReader(hdr[:])), 0); !errors.Is(err, errFrameTooLarge) {
			t.Errorf("a %q frame of %d bytes: %v; want %v", kind, huge, err, errFrameTooLarge)
		}
	}
	for _, kind := range []byte{msgRun, msgInspect} {
		var hdr [5]byte
		binary.BigEndian.PutUint32(hdr[:4], huge)
		hdr[4] = kind
		if _, _, _, err := readFrameAligned(bufio.NewReader(bytes.NewReader(hdr[:])), 0); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("a %q request of %d bytes: %v; want it read (and cut short)", kind, huge, err)
		}
	}
	// An error message is cut, so that the error frame fits.
	e := newFrame(0)
	encodeError(e, wasmwiz.Errorf(wasmwiz.EINVALID, "%s", strings.Repeat("x", 10<<20)))
	if len(e.b) > maxAnswerFrameBytes || sealFrame(msgError, e) != nil {
		t.Fatalf("an error of 10 MiB makes a frame of %d bytes", len(e.b))
	}
}

// TestPoolManyExports: a module of 100,000 exports of a 50-param function
// (35 MB of inspection listed in full, 25 MB of "callable exports" error)
// is inspected, run by name and refused by an unknown name through the
// worker protocol, with bounded answers.
func TestPoolManyExports(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, testOptions(t, 1, 0))
	const n, params = 100_000, 50
	wasm := hostiletest.ManyExports(n, params)
	in, err := pl.Inspect(context.Background(), wasm, testmodule.Limits())
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if b, _ := json.Marshal(in); len(b) > 1<<20 || len(in.Exports)+in.ExportsOmitted != n {
		t.Fatalf("inspection of %d bytes, %d exports listed and %d omitted; want at most 1 MiB and %d in all", len(b), len(in.Exports), in.ExportsOmitted, n)
	}
	ps := make([]string, params)
	for i := range ps {
		ps[i] = "7"
	}
	req := &wasmwiz.RunRequest{Wasm: wasm, Function: "f99999", Params: ps, Limits: testmodule.Limits()}
	res, err := pl.Run(context.Background(), req)
	if err != nil || res.Status != wasmwiz.StatusOK || len(res.Results) != 1 || res.Results[0].Bits != params {
		t.Fatalf("Run f99999: %+v, %v; want ok with %d", res, err, params)
	}
	req.Function = "absent"
	_, err = pl.Run(context.Background(), req)
	if msg := wasmwiz.ErrorMessage(err); wasmwiz.ErrorCode(err) != wasmwiz.EINVALID || len(msg) > 8<<10 {
		t.Fatalf("Run absent: %s error of %d bytes; want EINVALID within 8 KiB", wasmwiz.ErrorCode(err), len(msg))
	}
}
