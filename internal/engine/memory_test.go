package engine

import (
	"context"
	"strconv"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestMemoryStartsZeroed: small linear memories reuse the buffers of runs
// that ended (memory.go), so each run here first checks that every byte of
// its memory is zero and then fills it for the next: one run's data never
// reaches another's memory, through a reused buffer of the same size, one
// grown from a smaller (its old buffer pooled), or one left behind when a
// memory outgrew the pooled sizes.
func TestMemoryStartsZeroed(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Options{})
	wasm := testmodule.Read(t, "dirty_memory.wasm")
	for i, pages := range []int{1, 1, 2, 3, 2, 8, 16, 1, 17, 24, 16, 4, 2, 1} {
		res, err := e.Run(context.Background(), &wasmwiz.RunRequest{
			Wasm: wasm, Function: "main", Params: []string{strconv.Itoa(pages)}, Limits: testmodule.Limits(),
		})
		if err != nil {
			t.Fatalf("run %d (%d pages): %v", i, pages, err)
		}
		if res.Status != wasmwiz.StatusOK || len(res.Results) != 1 {
			t.Fatalf("run %d (%d pages): status %s, results %v, trap %q", i, pages, res.Status, res.Results, res.Trap)
		}
		if got := res.Results[0].String(); got != "0" {
			t.Fatalf("run %d (%d pages): its memory held another run's bytes", i, pages)
		}
		if want := uint64(pages) * 65536; uint64(res.MemoryPeakBytes) != want {
			t.Errorf("run %d: memory peak %d, want %d", i, res.MemoryPeakBytes, want)
		}
	}
}

// TestOnMemoryGetsEachPeak: RunRequest.OnMemory hears each new peak of the
// guest's linear memory as it grows, the last one the result's peak.
func TestOnMemoryGetsEachPeak(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Options{})
	var peaks []int64
	res, err := e.Run(context.Background(), &wasmwiz.RunRequest{
		Wasm: testmodule.Read(t, "dirty_memory.wasm"), Function: "main", Params: []string{"8"}, Limits: testmodule.Limits(),
		OnMemory: func(n int64) { peaks = append(peaks, n) },
	})
	if err != nil || res.Status != wasmwiz.StatusOK {
		t.Fatalf("run: %v %+v", err, res)
	}
	if len(peaks) != 2 || peaks[0] != 65536 || peaks[1] != 8*65536 || res.MemoryPeakBytes != peaks[1] {
		t.Errorf("OnMemory heard %v, result's peak %d; want 1 page, then 8", peaks, res.MemoryPeakBytes)
	}
}
