package engine

import (
	"context"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/hostiletest"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestTrapMessageIsBounded: a trap's message names the functions on the
// wasm stack as the module's name section says, at any length; the message
// is cut at maxTrapBytes, so that a run's answer stays bounded.
func TestTrapMessageIsBounded(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Options{})
	name := strings.Repeat("n", 256<<10)
	res, err := e.Run(context.Background(), &wasmwiz.RunRequest{Wasm: trapWithName(name), Limits: testmodule.Limits()})
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
	m := &hostiletest.Module{
		Types:   [][]byte{hostiletest.FuncType(nil, nil)},
		Funcs:   []uint32{0},
		Exports: [][]byte{hostiletest.Export("_start", 0, 0)},
		Code:    [][]byte{hostiletest.Body(nil, []byte{hostiletest.OpUnreachable, hostiletest.OpEnd})},
	}
	// The name section: a custom section "name" whose subsection 1 (function
	// names) names function 0.
	funcNames := hostiletest.Name(hostiletest.ULEB(hostiletest.ULEB(nil, 1), 0), name)
	names := append(hostiletest.Name(nil, "name"), 1)
	names = append(hostiletest.ULEB(names, uint64(len(funcNames))), funcNames...)
	return append(hostiletest.ULEB(append(m.Bytes(), 0), uint64(len(names))), names...)
}
