package engine

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz"
)

// TestTrapMessageIsBounded: a trap's message names the functions on the
// wasm stack as the module's name section says, at any length; the message
// is cut at maxTrapBytes, so that a run's answer stays bounded.
func TestTrapMessageIsBounded(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Options{})
	name := strings.Repeat("n", 256<<10)
	res, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: trapWithName(name), Limits: limits()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != wasmwiz.StatusTrap || !strings.Contains(res.Trap, "unreachable") {
		t.Fatalf("status %s, trap %.200q", res.Status, res.Trap)
	}
	if len(res.Trap) > maxTrapBytes+64 || !strings.Contains(res.Trap, "(cut at") {
		t.Fatalf("trap message of %d bytes, want it cut near %d", len(res.Trap), maxTrapBytes)
	}
}

// trapWithName is a plain module whose _start, named name in the name
// section, traps at once.
func trapWithName(name string) []byte {
	uleb := func(b *bytes.Buffer, v int) {
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
		uleb(out, len(body))
		out.Write(body)
	}
	var out bytes.Buffer
	out.WriteString("\x00asm\x01\x00\x00\x00")
	section(&out, 1, []byte{1, 0x60, 0, 0})                                   // type () -> ()
	section(&out, 3, []byte{1, 0})                                            // one function of type 0
	section(&out, 7, append([]byte{1, 6}, append([]byte("_start"), 0, 0)...)) // export "_start" func 0
	section(&out, 10, []byte{1, 3, 0, 0x00, 0x0b})                            // body: unreachable
	var names, sub bytes.Buffer
	uleb(&sub, 1) // one name
	uleb(&sub, 0) // function 0
	uleb(&sub, len(name))
	sub.WriteString(name)
	uleb(&names, 4)
	names.WriteString("name")
	names.WriteByte(1) // function names
	uleb(&names, sub.Len())
	names.Write(sub.Bytes())
	section(&out, 0, names.Bytes())
	return out.Bytes()
}
