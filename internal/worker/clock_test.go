package worker

import (
	"bytes"
	"context"
	"strings"
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

// TestWallTimeCoversTheCompile: a run's wall time covers compiling its
// module. A module whose compile takes longer than the wall time is refused
// (ETOOLARGE) with its worker killed, not answered "ok" after the compile,
// and the refusal is remembered: the same request again costs no worker.
// With room, the result reports the compile apart from the guest's
// duration, and the worker then holds the module compiled.
func TestWallTimeCoversTheCompile(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, testOptions(t, 1, 0))
	wasm := bigModule(4000, 400) // ~4.8 MB of code, about a second to compile here
	short := limits()
	short.Timeout = 10 * time.Millisecond
	_, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: short})
	if wasmwiz.ErrorCode(err) != wasmwiz.ETOOLARGE || !strings.Contains(wasmwiz.ErrorMessage(err), "did not compile within 10ms") {
		t.Fatalf("a compile past the wall time: %v, want ETOOLARGE", err)
	}
	before := pl.Stats()
	if before.Kills != 1 || before.Timeouts != 0 {
		t.Errorf("stats %+v: want the compiling worker killed, and no guest timeout", before)
	}
	_, err = pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: short})
	if wasmwiz.ErrorCode(err) != wasmwiz.ETOOLARGE {
		t.Fatalf("the same again: %v, want ETOOLARGE", err)
	}
	if after := pl.Stats(); after.Runs != before.Runs || after.Kills != before.Kills {
		t.Errorf("the remembered refusal reached a worker: stats %+v, then %+v", before, after)
	}

	res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: limits()})
	if err != nil || res.Status != wasmwiz.StatusOK {
		t.Fatalf("with a generous wall time: %v %+v", err, res)
	}
	if res.CompileDuration < short.Timeout || res.CompileCached {
		t.Errorf("compile %v (cached %v): want the compile reported", res.CompileDuration, res.CompileCached)
	}
	first := res.CompileDuration
	res, err = pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: limits()})
	if err != nil || res.Status != wasmwiz.StatusOK || res.CompileDuration >= first || !res.CompileCached {
		t.Fatalf("held: %v, compile %v (first %v), cached %v", err, res.CompileDuration, first, res.CompileCached)
	}
}
