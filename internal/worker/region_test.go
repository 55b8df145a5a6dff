package worker

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestOutputRegionRoundTrip: what the worker writes to its region reads
// back as the same writes, in order and by stream; a write that does not fit
// is refused, and so is every later write of the run (they go out as
// frames, after what the region holds); a new run starts empty.
func TestOutputRegionRoundTrip(t *testing.T) {
	t.Parallel()
	r := &outputRegion{mem: make([]byte, outputRegionBytes)}
	w := regionWriter{r: r}
	w.start(1, true)
	if !w.write(fdStdout, []byte("one\n")) || !w.write(fdStderr, []byte("warn\n")) || !w.write(fdStdout, []byte("two\n")) {
		t.Fatal("small writes did not fit the region")
	}
	if w.write(fdStdout, make([]byte, outputRegionBytes)) {
		t.Fatal("a write larger than the region was stored")
	}
	if w.write(fdStdout, []byte("three\n")) {
		t.Fatal("a write after one that did not fit was stored: it would come before that one")
	}
	out := newRunOutput(0)
	if err := readRegion(r, r.written(), out); err != nil {
		t.Fatal(err)
	}
	if string(out.stdout.b) != "one\ntwo\n" || string(out.stderr.b) != "warn\n" {
		t.Fatalf("read back stdout %q stderr %q", out.stdout.b, out.stderr.b)
	}

	w.start(2, true)
	if r.written() != 0 || r.run() != 2 {
		t.Fatalf("a new run starts with %d bytes written, marked as run %d", r.written(), r.run())
	}
	w.start(3, false) // followed live: frames only
	if w.write(fdStdout, []byte("x")) {
		t.Fatal("a run followed live wrote to the region")
	}
	if (&regionWriter{}).write(fdStdout, []byte("x")) {
		t.Fatal("a worker without a region wrote to one")
	}
}

// TestOutputRegionMalformed: the pool reads a region it cannot trust (a
// worker that misbehaves) within its bounds, and fails for anything but
// whole output frames.
func TestOutputRegionMalformed(t *testing.T) {
	t.Parallel()
	frame := func(kind, fd byte, p string) []byte {
		b := []byte{0, 0, 0, byte(len(p) + 2), kind, fd}
		return append(b, p...)
	}
	tests := []struct {
		name string
		body []byte
		n    uint64 // 0: len(body)
	}{
		{"length past the region", nil, outputRegionBytes},
		{"cut header", []byte{0, 0, 0}, 0},
		{"frame longer than what was written", frame(msgOutput, fdStdout, "hello")[:8], 0},
		{"frame of another kind", frame(msgResult, fdStdout, "hello"), 0},
		{"bad stream", frame(msgOutput, 7, "hello"), 0},
		{"frame too short for a stream", []byte{0, 0, 0, 1, msgOutput, fdStdout}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &outputRegion{mem: make([]byte, outputRegionBytes)}
			copy(r.mem[regionHeader:], tt.body)
			n := tt.n
			if n == 0 {
				n = uint64(len(tt.body))
			}
			if err := readRegion(r, n, newRunOutput(0)); err == nil {
				t.Fatal("read without an error")
			}
		})
	}
}

// TestPoolOutputThroughRegion: through a real worker, output that fits the
// region, output past it (the rest in frames, in order), output past the
// run's cap, and a run followed live (frames only, each piece to OnOutput)
// all come back exactly as the guest wrote them; echo_chunks.wasm copies its
// stdin in writes of 100 bytes, so order shows.
func TestPoolOutputThroughRegion(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("the output region needs memfd (Linux); elsewhere output travels in frames, which the other tests cover")
	}
	pl := newTestPool(t, testOptions(t, 1, 0))
	echo := testmodule.Read(t, "echo_chunks.wasm")
	lines := func(n int) []byte {
		var b bytes.Buffer
		for i := range n {
			fmt.Fprintf(&b, "line %07d\n", i)
		}
		return b.Bytes()
	}
	tests := []struct {
		name   string
		stdin  []byte
		cap    int64
		live   bool
		status wasmwiz.Status
	}{
		{"fits the region", lines(100), 0, false, wasmwiz.StatusOK},
		{"past the region", lines(3 * outputRegionBytes / 13), 0, false, wasmwiz.StatusOK},
		{"past the cap", lines(3 * outputRegionBytes / 13), outputRegionBytes + 7, false, wasmwiz.StatusOutputLimit},
		{"followed live", lines(3 * outputRegionBytes / 13), 0, true, wasmwiz.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testmodule.Limits()
			if tt.cap > 0 {
				l.MaxOutputBytes = tt.cap
			}
			req := &wasmwiz.RunRequest{Wasm: echo, Stdin: tt.stdin, Limits: l}
			var mu sync.Mutex
			var live bytes.Buffer
			if tt.live {
				req.OnOutput = func(stderr bool, p []byte) {
					mu.Lock()
					defer mu.Unlock()
					if !stderr {
						live.Write(p)
					}
				}
			}
			frames := pl.outputFrames.Load()
			res, err := pl.Run(context.Background(), req)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			// Frames only past the region or for a live follower.
			if sent := pl.outputFrames.Load() - frames; (sent == 0) != (tt.name == "fits the region") {
				t.Errorf("%d output frames", sent)
			}
			want := tt.stdin
			if tt.cap > 0 {
				want = want[:tt.cap]
			}
			if res.Status != tt.status || !bytes.Equal(res.Stdout, want) || len(res.Stderr) != 0 {
				t.Fatalf("status %s, stdout %d bytes (equal to the %d expected: %v), stderr %q",
					res.Status, len(res.Stdout), len(want), bytes.Equal(res.Stdout, want), res.Stderr)
			}
			if tt.live && !bytes.Equal(live.Bytes(), want) {
				t.Fatalf("OnOutput got %d bytes, want the %d of stdout", live.Len(), len(want))
			}
		})
	}
}

// TestExchangeReadsOnlyItsRunsRegion: a run whose worker died or was killed
// before it took the run up finds the previous run's output in the region,
// marked with that run's number; it must not take it as its own (it would
// be another caller's). With its own number, what the region holds is the
// run's output, before the frames that followed it.
func TestExchangeReadsOnlyItsRunsRegion(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("the output region needs memfd (Linux)")
	}
	for _, tt := range []struct {
		name       string
		regionRun  uint64
		wantStdout string
	}{
		{"the previous run's", 6, "frame\n"},
		{"its own", 7, "region\nframe\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			region, f, err := newOutputRegion()
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			defer region.unmap()
			// The worker's side: a second, writable mapping of the same memfd.
			mem, err := unix.Mmap(int(f.Fd()), 0, outputRegionBytes, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Munmap(mem)
			w := regionWriter{r: &outputRegion{mem: mem}}
			w.start(tt.regionRun, true)
			w.write(fdStdout, []byte("region\n"))

			out := exchangeWithDeadWorker(t, region, 7, func(w *os.File) {
				writeOutput(w, nil, fdStdout, []byte("frame\n"))
			})
			if string(out.stdout.b) != tt.wantStdout {
				t.Fatalf("stdout %q, want %q", out.stdout.b, tt.wantStdout)
			}
		})
	}
}

// TestRegionReadAfterUnmap: a worker that died just after a run acquired it
// is closed (stdout, the region unmapped) before that run reads its region;
// the read finds nothing instead of touching unmapped memory.
func TestRegionReadAfterUnmap(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("the output region needs memfd (Linux)")
	}
	region, f, err := newOutputRegion()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	p := &proc{stdin: w, stdout: r, region: region}
	p.close() // no request holds stdout: closed and unmapped now
	out := newRunOutput(0)
	if err := p.regionOutput(0, out); err != nil || len(out.stdout.b) != 0 {
		t.Fatalf("regionOutput after unmap: %v, %q", err, out.stdout.b)
	}
	p.closeStdout() // a second close does nothing (no second unmap)
}
