package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/hostiletest"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// bigModule returns a valid plain module of n functions of k no-op
// instructions each, exporting the first as _start: large enough that
// compiling it takes far longer than running it.
func bigModule(n, k int) []byte {
	code := make([]byte, 0, 3*k+1)
	for range k {
		code = append(code, hostiletest.OpI32Const, 1, hostiletest.OpDrop)
	}
	m := &hostiletest.Module{
		Types:   [][]byte{hostiletest.FuncType(nil, nil)},
		Exports: [][]byte{hostiletest.Export("_start", 0, 0)},
	}
	body := hostiletest.Body(nil, append(code, hostiletest.OpEnd))
	for range n {
		m.Funcs = append(m.Funcs, 0)
		m.Code = append(m.Code, body)
	}
	return m.Bytes()
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
	short := testmodule.Limits()
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

	res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: testmodule.Limits()})
	if err != nil || res.Status != wasmwiz.StatusOK {
		t.Fatalf("with a generous wall time: %v %+v", err, res)
	}
	if res.CompileDuration < short.Timeout || res.CompileCached {
		t.Errorf("compile %v (cached %v): want the compile reported", res.CompileDuration, res.CompileCached)
	}
	first := res.CompileDuration
	res, err = pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: wasm, Limits: testmodule.Limits()})
	if err != nil || res.Status != wasmwiz.StatusOK || res.CompileDuration >= first || !res.CompileCached {
		t.Fatalf("held: %v, compile %v (first %v), cached %v", err, res.CompileDuration, first, res.CompileCached)
	}
}
