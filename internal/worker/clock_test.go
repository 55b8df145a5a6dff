package worker

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// bigModule returns a valid plain module of n functions of k no-op
// instructions each, exporting the first as _start: large enough that
// compiling it takes far longer than running it.
func bigModule(n, k int) []byte {
	uleb := func(b *bytes.Buffer, v uint64) {
		for {
			c := byte(v & 0x7f)
			v >>= 7
			if v != 0 {
				c |= 0x80
			}
			b.WriteByte(c)
			if v == 0 {
				return
			}
		}
	}
	section := func(out *bytes.Buffer, id byte, body []byte) {
		out.WriteByte(id)
		uleb(out, uint64(len(body)))
		out.Write(body)
	}
	var out bytes.Buffer
	out.WriteString("\x00asm\x01\x00\x00\x00")
	section(&out, 1, []byte{1, 0x60, 0, 0}) // one type: () -> ()
	var funcs bytes.Buffer
	uleb(&funcs, uint64(n))
	for range n {
		funcs.WriteByte(0)
	}
	section(&out, 3, funcs.Bytes())
	section(&out, 7, []byte{1, 6, '_', 's', 't', 'a', 'r', 't', 0, 0}) // export func 0
	var body bytes.Buffer
	body.WriteByte(0) // no locals
	for range k {
		body.Write([]byte{0x41, 0x01, 0x1a}) // i32.const 1; drop
	}
	body.WriteByte(0x0b) // end
	var code bytes.Buffer
	uleb(&code, uint64(n))
	for range n {
		uleb(&code, uint64(body.Len()))
		code.Write(body.Bytes())
	}
	section(&out, 10, code.Bytes())
	return out.Bytes()
}

// TestCompileTimeIsNotTheGuests: compiling a module the worker does not hold
// yet is the server's work. A module whose compile takes longer than its
// run's wall time, but whose guest returns at once, finishes ok, as it does
// in the in-process engine, whose deadline also starts after the compile.
func TestCompileTimeIsNotTheGuests(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, testOptions(t, 1, 0))
	wasm := bigModule(4000, 400) // ~4.8 MB of code
	l := limits()
	l.Timeout = 10 * time.Millisecond
	for i := range 2 { // a compile, then a held module
		res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: l})
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if res.Status != wasmwiz.StatusOK {
			t.Fatalf("run %d: status %s (%s) after %v, want ok: the compile counted against the guest", i, res.Status, res.Trap, res.Duration)
		}
	}
}
