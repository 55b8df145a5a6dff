package worker

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// The protocol between the pool (parent) and a worker process (child) runs
// over the child's stdin (parent → child) and stdout (child → parent). Every
// message is one frame: a 4-byte big-endian length n, then n bytes: a kind
// byte and the body. Bodies are a small binary encoding (uvarints, varints and
// length-prefixed byte strings), written and read by enc and dec below.
//
// A conversation:
//
//	parent: config            child: hello (after the engine started)
//	parent: run | inspect     child: [need-module] | [started] [stats] {output} [retire] result | inspection | error
//
// The child answers one request at a time; the parent never sends a second
// request before the first is answered. "need-module" asks the parent to send
// the request again with the module's bytes, which the child did not hold.
// During a run, "output" frames carry the guest's stdout and stderr as the
// guest writes them (one frame per write the engine passes on), so that the
// parent keeps what a guest printed even when it has to kill the worker; the
// result frame carries the truncation flags but not the output itself.
const (
	msgConfig     byte = 'C' // parent → child: childConfig
	msgHello      byte = 'H' // child → parent: pid, after the engine started
	msgRun        byte = 'R' // parent → child: runMsg
	msgInspect    byte = 'I' // parent → child: inspectMsg
	msgNeedModule byte = 'N' // child → parent: empty; resend with the module bytes
	msgStarted    byte = 'S' // child → parent: ModuleInfo, before the first run of a module in this worker
	msgResult     byte = 'D' // child → parent: wasmwiz.Result
	msgInspection byte = 'X' // child → parent: wasmwiz.Inspection as JSON
	msgError      byte = 'E' // child → parent: error code and message
	msgStats      byte = 'T' // child → parent: wasmwiz.CacheStats, before an answer, when they changed
	msgOutput     byte = 'O' // child → parent: a stream byte (fdStdout, fdStderr), then the bytes the guest wrote
	msgRetire     byte = 'Q' // child → parent: empty, before an answer; replace this worker after it
)

// The stream byte of an output frame.
const (
	fdStdout byte = 1
	fdStderr byte = 2
)

// protocolVersion changes with any change of a message's encoding. Both
// sides check it at the handshake, so that a worker started from a binary
// replaced under a running server fails to start with a clear message
// instead of misreading frames.
//
// Version 2: guest output travels in output frames during the run; the
// result frame no longer carries it. Version 3: the retire frame. Version
// 4: results carry the compile's duration. Version 5: the disk cache's bound
// in the config, its evictions in the stats. Version 6: a run carries its
// mounts (the directory of its files). Version 7: a final answer (result,
// inspection, error) ends with the worker's CPU time so far (cutCPU).
// Version 8: a run says whether it is followed live; output may travel
// through the worker's output region (region.go). Version 9: run and
// inspect requests end with their owner (encodeOwner). Version 10: the
// output region's header holds the run's memory peak.
const protocolVersion = 10

// maxFrameBytes bounds one frame in either direction: the largest module and
// stdin of any tier plus two output caps fit well below it. A larger length
// means a broken stream, never a legitimate message.
const maxFrameBytes = 1 << 30

// maxAnswerFrameBytes bounds every frame a worker sends but output frames:
// its answers (result, inspection, error) and the small frames around them.
// An inspection lists a bounded part of a module (internal/engine), a trap
// and an error message are cut (encodeError), so a larger frame is a broken
// or hostile worker, refused from its header before serve allocates it.
const maxAnswerFrameBytes = 4 << 20

// maxErrorBytes bounds the message of an error frame.
const maxErrorBytes = 64 << 10

// frameLimit is the largest length (kind byte and body) of a frame of kind.
// Requests to a worker carry modules and stdin; an output frame carries one
// write of the guest, within maxOutput when positive (stream byte and
// bytes); every other frame is a worker's answer.
func frameLimit(kind byte, maxOutput int64) int64 {
	switch kind {
	case msgConfig, msgRun, msgInspect:
		return maxFrameBytes
	case msgOutput:
		if maxOutput > 0 {
			return min(maxOutput+2, maxFrameBytes)
		}
		return maxFrameBytes
	}
	return maxAnswerFrameBytes
}

// errFrameTooLarge reports a frame length over its kind's frameLimit.
var errFrameTooLarge = errors.New("worker protocol: frame too large")

// writeFrame writes one frame of kind with the body e holds. e must come
// from newFrame, whose first 5 bytes are left for the header.
func writeFrame(w io.Writer, kind byte, e *enc) error {
	_, err := writeFrameAfter(w, nil, kind, e)
	return err
}

// writeFrameAfter writes the whole frames in pre (sealed, see sealFrame),
// then one frame of kind with the body e holds: in a single write when the
// frame is small, so that the reader wakes once for all of them. It
// returns how many bytes it wrote.
func writeFrameAfter(w io.Writer, pre []byte, kind byte, e *enc) (written int, err error) {
	if err := sealFrame(kind, e); err != nil {
		return 0, err
	}
	write := func(b []byte) error {
		n, err := w.Write(b)
		written += n
		return err
	}
	if len(pre) > 0 {
		if len(e.segs) == 0 && len(e.b) <= refBytes {
			return written, write(append(pre, e.b...))
		}
		if err := write(pre); err != nil {
			return written, err
		}
	}
	for _, seg := range e.segs {
		if err := write(seg); err != nil {
			return written, err
		}
	}
	if len(e.b) == 0 {
		return written, nil // a body that ends in a referenced segment
	}
	return written, write(e.b)
}

// sealFrame writes the header of a frame of kind into the room newFrame
// left for it.
func sealFrame(kind byte, e *enc) error {
	n := e.n + len(e.b) - 4
	if int64(n) > frameLimit(kind, 0) {
		return errFrameTooLarge
	}
	first := e.b
	if len(e.segs) > 0 {
		first = e.segs[0]
	}
	binary.BigEndian.PutUint32(first[:4], uint32(n))
	first[4] = kind
	return nil
}

// newFrame returns an encoder whose buffer reserves room for the header.
func newFrame(sizeHint int) *enc {
	b := make([]byte, 5, 5+sizeHint)
	return &enc{b: b}
}

// readFrame reads one frame and returns its kind and body.
func readFrame(r *bufio.Reader) (byte, []byte, error) {
	k, body, _, err := readFrameAligned(r, 0)
	return k, body, err
}

// readFrameAligned is readFrame that also says whether r is still at a frame
// boundary: true unless a failure cut a frame short (a read deadline in
// the middle of one, say), after which the stream cannot be read on.
// Every frame is bounded by its kind's frameLimit before its bytes are
// allocated; maxOutput, when positive, bounds an output frame's bytes: the
// engine never passes on more than a run's cap at once, so a larger output
// frame is a broken (or hostile) worker.
func readFrameAligned(r *bufio.Reader, maxOutput int64) (kind byte, body []byte, aligned bool, err error) {
	// Peek, not a read into a local array (which would escape to the heap
	// once per frame): a header cut short stays unread, so r is still at
	// the frame's start.
	hdr, err := r.Peek(5)
	if err != nil {
		if err == io.EOF && len(hdr) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, true, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	kind = hdr[4]
	if n == 0 || int64(n) > frameLimit(kind, maxOutput) {
		return 0, nil, false, errFrameTooLarge
	}
	_, _ = r.Discard(5)
	body = make([]byte, n-1)
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, false, err
	}
	return kind, body, true, nil
}

// enc appends values to a frame body. Large byte strings (modules, stdin,
// output) are not copied: the frame becomes a list of segments, written one
// after the other, which spares the parent a second copy of a 100 MiB module.
type enc struct {
	b    []byte   // the segment being appended to
	segs [][]byte // earlier segments, written before b
	n    int      // their total length
}

// refBytes is the size from which bytes are referenced instead of copied:
// below it, one more write costs more than the copy.
const refBytes = 64 << 10

func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) string(s string)  { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) bytes(p []byte) {
	e.uvarint(uint64(len(p)))
	if len(p) < refBytes {
		e.b = append(e.b, p...)
		return
	}
	e.segs = append(e.segs, e.b, p)
	e.n += len(e.b) + len(p)
	e.b = make([]byte, 0, 64)
}
func (e *enc) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}
func (e *enc) strings(ss []string) {
	e.uvarint(uint64(len(ss)))
	for _, s := range ss {
		e.string(s)
	}
}

// dec reads values from a frame body. The first error sticks; reads after it
// return zero values, so a message is decoded straight through and checked once.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("worker protocol: bad %s", what)
	}
}

func (d *dec) uvarint() uint64 { return number(d, binary.Uvarint, "uvarint") }

func (d *dec) varint() int64 { return number(d, binary.Varint, "varint") }

// number reads one number with read (binary.Uvarint or binary.Varint), what
// it is called when it is bad.
func number[T uint64 | int64](d *dec, read func([]byte) (T, int), what string) T {
	if d.err != nil {
		return 0
	}
	v, n := read(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads the length of something whose every item takes at least one
// byte of what is left: a longer one is a bad what, and counts 0 (as does
// any length after a failure).
func (d *dec) count(what string) uint64 {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail(what)
		return 0
	}
	return n
}

func (d *dec) bytes() []byte {
	n := d.count("length")
	if n == 0 {
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *dec) string() string { return string(d.bytes()) }

func (d *dec) bool() bool {
	if d.err != nil {
		return false
	}
	if len(d.b) == 0 || d.b[0] > 1 {
		d.fail("bool")
		return false
	}
	v := d.b[0] == 1
	d.b = d.b[1:]
	return v
}

func (d *dec) strings() []string {
	n := d.count("list length") // every string takes at least one byte
	if n == 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = d.string()
	}
	return ss
}

// done reports the sticky error, or trailing bytes as an error.
func (d *dec) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	return d.err
}

// childConfig is what a worker needs to start its engine.
type childConfig struct {
	LimitsSchema     string // wasmwiz.LimitsSchema of the pool; the worker's must match
	CacheDir         string
	CacheMaxBytes    int64 // bound of CacheDir's files; 0 none
	MemoryCacheBytes int64
	ModuleCacheBytes int64 // module bytes kept per worker, by size (LRU)
	MemoryOverhead   int64 // added to a run's memory cap for the Go memory limit
	LogLevel         int64 // slog.Level
}

func (c *childConfig) encode(e *enc) {
	e.uvarint(protocolVersion)
	e.string(c.LimitsSchema)
	e.string(c.CacheDir)
	e.varint(c.CacheMaxBytes)
	e.varint(c.MemoryCacheBytes)
	e.varint(c.ModuleCacheBytes)
	e.varint(c.MemoryOverhead)
	e.varint(c.LogLevel)
}

func (c *childConfig) decode(d *dec) {
	if v := d.uvarint(); d.err == nil && v != protocolVersion {
		d.err = fmt.Errorf("worker protocol: the pool speaks version %d, this worker %d (was the binary replaced? restart the server)", v, protocolVersion)
		return
	}
	c.LimitsSchema = d.string()
	if d.err == nil && c.LimitsSchema != wasmwiz.LimitsSchema() {
		d.err = fmt.Errorf("worker protocol: the pool's run limits are %q, this worker's %q (was the binary replaced? restart the server)", c.LimitsSchema, wasmwiz.LimitsSchema())
		return
	}
	c.CacheDir = d.string()
	c.CacheMaxBytes = d.varint()
	c.MemoryCacheBytes = d.varint()
	c.ModuleCacheBytes = d.varint()
	c.MemoryOverhead = d.varint()
	c.LogLevel = d.varint()
}

// encodeLimits writes every field of l (wasmwiz.Limits.Values), so that a
// new limit crosses to the worker without a change here; the handshake
// checks that both sides have the same fields (wasmwiz.LimitsSchema).
func encodeLimits(e *enc, l wasmwiz.Limits) {
	vals := l.Values()
	e.uvarint(uint64(len(vals)))
	for _, v := range vals {
		e.varint(v)
	}
}

func decodeLimits(d *dec) wasmwiz.Limits {
	var l wasmwiz.Limits
	n := d.count("limits length")
	vals := make([]int64, n)
	for i := range vals {
		vals[i] = d.varint()
	}
	if d.err == nil && l.SetValues(vals) != nil {
		d.fail("limits count")
	}
	return l
}

// encodeRun writes a run request. withWasm false leaves the module out: the
// child is believed to hold it under req.SHA256.
func encodeRun(e *enc, sha string, req *wasmwiz.RunRequest, withWasm bool) {
	e.string(sha)
	e.bool(withWasm)
	if withWasm {
		e.bytes(req.Wasm)
	}
	e.string(req.Name)
	e.strings(req.Args)
	keys := make([]string, 0, len(req.Env))
	for k := range req.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	e.uvarint(uint64(len(keys)))
	for _, k := range keys {
		e.string(k)
		e.string(req.Env[k])
	}
	e.bytes(req.Stdin)
	e.string(req.Function)
	e.strings(req.Params)
	encodeLimits(e, req.Limits)
	e.uvarint(uint64(len(req.Mounts)))
	for _, m := range req.Mounts {
		e.string(m.HostDir)
		e.string(m.GuestDir)
		e.bool(m.ReadOnly)
	}
}

// encodeRunOutput ends a run request with how its output travels
// (region.go): the pool's number for the run, and whether the run is
// followed live (output frames only).
func encodeRunOutput(e *enc, seq uint64, live bool) {
	e.uvarint(seq)
	e.bool(live)
}

func decodeRunOutput(d *dec) (seq uint64, live bool) {
	return d.uvarint(), d.bool()
}

// decodeRun reads a run request; hasWasm says whether the module came along.
func decodeRun(d *dec) (req *wasmwiz.RunRequest, hasWasm bool) {
	req = &wasmwiz.RunRequest{}
	req.SHA256 = d.string()
	hasWasm = d.bool()
	if hasWasm {
		req.Wasm = d.bytes()
	}
	req.Name = d.string()
	req.Args = d.strings()
	n := d.count("env length")
	if n > 0 {
		req.Env = make(map[string]string, n)
		for range n {
			k := d.string()
			req.Env[k] = d.string()
		}
	}
	req.Stdin = d.bytes()
	req.Function = d.string()
	req.Params = d.strings()
	req.Limits = decodeLimits(d)
	n = d.count("mounts length") // every mount takes at least three bytes
	for range n {
		req.Mounts = append(req.Mounts, wasmwiz.Mount{HostDir: d.string(), GuestDir: d.string(), ReadOnly: d.bool()})
	}
	return req, hasWasm
}

// encodeOwner ends a run or inspect request with whose work it is
// (wasmwiz.OwnerFromContext): the worker's engine shares its compile caches
// among owners by it.
func encodeOwner(e *enc, owner string) { e.string(owner) }

func decodeOwner(d *dec) string { return d.string() }

func encodeInspect(e *enc, sha string, wasm []byte, limits wasmwiz.Limits, withWasm bool) {
	e.string(sha)
	e.bool(withWasm)
	if withWasm {
		e.bytes(wasm)
	}
	encodeLimits(e, limits)
}

func decodeInspect(d *dec) (sha string, wasm []byte, hasWasm bool, limits wasmwiz.Limits) {
	sha = d.string()
	hasWasm = d.bool()
	if hasWasm {
		wasm = d.bytes()
	}
	limits = decodeLimits(d)
	return sha, wasm, hasWasm, limits
}

func encodeModuleInfo(e *enc, m wasmwiz.ModuleInfo) {
	e.string(m.SHA256)
	e.varint(m.SizeBytes)
	e.bool(m.WASI)
	e.string(m.Entry)
}

func decodeModuleInfo(d *dec) wasmwiz.ModuleInfo {
	return wasmwiz.ModuleInfo{SHA256: d.string(), SizeBytes: d.varint(), WASI: d.bool(), Entry: d.string()}
}

// encodeResult writes a run's outcome without its output, which crossed in
// output frames before it (writeOutput); the truncation flags come along.
func encodeResult(e *enc, r *wasmwiz.Result) {
	e.string(string(r.Status))
	e.varint(int64(r.ExitCode))
	e.bool(r.StdoutTruncated)
	e.bool(r.StderrTruncated)
	e.string(r.Trap)
	e.uvarint(uint64(len(r.Results)))
	for _, v := range r.Results {
		e.string(v.Type)
		e.uvarint(v.Bits)
	}
	e.varint(int64(r.Duration))
	e.varint(r.MemoryPeakBytes)
	encodeModuleInfo(e, r.Module)
	e.bool(r.CompileCached)
	e.varint(int64(r.CompileDuration))
	e.varint(int64(r.CPUTime))
}

func decodeResult(d *dec) *wasmwiz.Result {
	r := &wasmwiz.Result{}
	r.Status = wasmwiz.Status(d.string())
	r.ExitCode = int(d.varint())
	r.StdoutTruncated = d.bool()
	r.StderrTruncated = d.bool()
	r.Trap = d.string()
	n := d.count("results length")
	if n > 0 {
		r.Results = make([]wasmwiz.Value, n)
		for i := range r.Results {
			r.Results[i] = wasmwiz.Value{Type: d.string(), Bits: d.uvarint()}
		}
	}
	r.Duration = time.Duration(d.varint())
	r.MemoryPeakBytes = d.varint()
	r.Module = decodeModuleInfo(d)
	r.CompileCached = d.bool()
	r.CompileDuration = time.Duration(d.varint())
	r.CPUTime = time.Duration(d.varint())
	return r
}

// writeOutput writes one output frame: stream fd, then p as the rest of the
// body. A small p is copied behind the header into scratch (returned for
// reuse), so the frame is a single write; a large one is written after the
// header, not copied. An empty p writes nothing.
func writeOutput(w io.Writer, scratch []byte, fd byte, p []byte) ([]byte, error) {
	if len(p) == 0 {
		return scratch, nil
	}
	if len(p) > maxFrameBytes-2 {
		return scratch, errFrameTooLarge
	}
	hdr := appendOutputHeader(scratch[:0], fd, len(p))
	if len(p) < refBytes {
		hdr = append(hdr, p...)
		_, err := w.Write(hdr)
		return hdr, err
	}
	if _, err := w.Write(hdr); err != nil {
		return hdr, err
	}
	_, err := w.Write(p)
	return hdr, err
}

// outputHeaderBytes is the size of an output frame's header: its length,
// its kind and its stream.
const outputHeaderBytes = 6

// appendOutputHeader appends the header of an output frame of n bytes of
// stream fd: in the pipe (writeOutput) and in a worker's output region
// (region.go) alike.
func appendOutputHeader(b []byte, fd byte, n int) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(n+2))
	return append(b, msgOutput, fd)
}

// decodeOutput reads an output frame's body: its stream and the bytes,
// which alias body.
func decodeOutput(body []byte) (fd byte, p []byte, err error) {
	if len(body) == 0 || (body[0] != fdStdout && body[0] != fdStderr) {
		return 0, nil, errors.New("worker protocol: bad output stream")
	}
	return body[0], body[1:len(body):len(body)], nil
}

// encodeError writes err as a code and a caller-safe message. The wrapped
// cause stays in the child's log.
func encodeError(e *enc, err error) {
	e.string(wasmwiz.ErrorCode(err))
	msg := wasmwiz.ErrorMessage(err)
	if len(msg) > maxErrorBytes {
		msg = strings.ToValidUTF8(msg[:maxErrorBytes], "") + "… (cut)"
	}
	e.string(msg)
}

func decodeError(d *dec) error {
	code, msg := d.string(), d.string()
	if d.err != nil {
		return d.err
	}
	if code == "" {
		code = wasmwiz.EINTERNAL
	}
	return wasmwiz.Errorf(code, "%s", msg)
}

func encodeInspection(e *enc, in *wasmwiz.Inspection) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	e.bytes(b)
	return nil
}

func decodeInspection(d *dec) (*wasmwiz.Inspection, error) {
	b := d.bytes()
	if err := d.done(); err != nil {
		return nil, err
	}
	var in wasmwiz.Inspection
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("worker protocol: inspection: %w", err)
	}
	return &in, nil
}

func encodeCacheStats(e *enc, st wasmwiz.CacheStats) {
	e.uvarint(st.Hits)
	e.uvarint(st.Misses)
	e.uvarint(st.DiskHits)
	e.uvarint(math.Float64bits(st.CompileSeconds))
	e.varint(int64(st.Entries))
	e.varint(st.Bytes)
	e.uvarint(st.DiskEvictions)
}

func decodeCacheStats(d *dec) wasmwiz.CacheStats {
	return wasmwiz.CacheStats{
		Hits:           d.uvarint(),
		Misses:         d.uvarint(),
		DiskHits:       d.uvarint(),
		CompileSeconds: math.Float64frombits(d.uvarint()),
		Entries:        int(d.varint()),
		Bytes:          d.varint(),
		DiskEvictions:  d.uvarint(),
	}
}

// cutCPU removes the 8-byte trailer of a final answer, the worker's CPU time
// so far, from d and returns it.
func cutCPU(d *dec) (time.Duration, bool) {
	if len(d.b) < 8 {
		d.fail("CPU time trailer")
		return 0, false
	}
	n := len(d.b) - 8
	cpu := time.Duration(binary.LittleEndian.Uint64(d.b[n:]))
	d.b = d.b[:n]
	return cpu, true
}
