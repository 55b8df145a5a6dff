package worker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestOutputFrameRoundTrip: what writeOutput writes, readFrame and
// decodeOutput give back, small (copied behind the header) and large
// (written after it) alike; an empty write sends nothing.
func TestOutputFrameRoundTrip(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("0123456789abcdef"), refBytes/16+3)
	tests := []struct {
		name string
		fd   byte
		p    []byte
	}{
		{"stdout line", fdStdout, []byte("started\n")},
		{"stderr binary", fdStderr, []byte{0, 0xff, 0, 0, 0, 5, 'O'}},
		{"one byte", fdStdout, []byte("x")},
		{"large", fdStderr, big},
		{"just under the copy size", fdStdout, big[:refBytes-1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			// A dirty scratch buffer must not leak into the frame.
			scratch := []byte("stale bytes of an earlier frame")
			if _, err := writeOutput(&buf, scratch, tt.fd, tt.p); err != nil {
				t.Fatal(err)
			}
			r := bufio.NewReader(&buf)
			k, body, err := readFrame(r)
			if err != nil || k != msgOutput {
				t.Fatalf("readFrame = %q, %v", k, err)
			}
			fd, p, err := decodeOutput(body)
			if err != nil || fd != tt.fd || !bytes.Equal(p, tt.p) {
				t.Fatalf("decodeOutput = %d, %d bytes, %v; want %d, %d bytes", fd, len(p), err, tt.fd, len(tt.p))
			}
			if _, err := r.ReadByte(); err == nil {
				t.Error("bytes after the frame")
			}
		})
	}
	t.Run("empty write sends nothing", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		if _, err := writeOutput(&buf, nil, fdStdout, nil); err != nil || buf.Len() != 0 {
			t.Fatalf("wrote %d bytes, %v", buf.Len(), err)
		}
	})
}

// TestOutputFrameMalformed: an output body without a known stream is an
// error.
func TestOutputFrameMalformed(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		body []byte
	}{
		{"empty", nil},
		{"stream 0", []byte{0, 'x'}},
		{"stream 3", []byte{3, 'x'}},
		{"text", []byte("hello")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, _, err := decodeOutput(tt.body); err == nil {
				t.Fatal("decoded")
			}
			if err := newRunOutput(0).add(tt.body); err == nil {
				t.Fatal("collected")
			}
		})
	}
}

// TestRunOutputCaps: the parent collects each stream separately, both
// bounded together by the run's cap the way the engine bounds them (keep
// what fits, mark the stream that passed it truncated, keep nothing after).
func TestRunOutputCaps(t *testing.T) {
	t.Parallel()
	type frame struct {
		fd byte
		s  string
	}
	tests := []struct {
		name           string
		limit          int64
		frames         []frame
		stdout, stderr string
		outT, errT     bool
	}{
		{"no cap", 0, []frame{{fdStdout, "abc"}, {fdStdout, "def"}, {fdStderr, "x"}}, "abcdef", "x", false, false},
		{"under the cap", 13, []frame{{fdStdout, "abc"}, {fdStderr, "0123456789"}}, "abc", "0123456789", false, false},
		{"exactly the cap is not truncated", 6, []frame{{fdStdout, "abc"}, {fdStdout, "def"}}, "abcdef", "", false, false},
		{"passing the cap keeps what fits", 5, []frame{{fdStdout, "abc"}, {fdStdout, "def"}}, "abcde", "", true, false},
		{"nothing after truncation", 4, []frame{{fdStdout, "abcdef"}, {fdStdout, "g"}}, "abcd", "", true, false},
		{"one cap for both streams", 5, []frame{{fdStderr, "123"}, {fdStdout, "abcd"}, {fdStderr, "4"}}, "ab", "123", true, false},
		{"nothing after either is truncated", 3, []frame{{fdStderr, "1234"}, {fdStdout, "ab"}}, "", "123", false, true},
		{"a full stream then one byte more", 2, []frame{{fdStdout, "ab"}, {fdStdout, "c"}}, "ab", "", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := newRunOutput(tt.limit)
			for _, f := range tt.frames {
				if err := o.add(append([]byte{f.fd}, f.s...)); err != nil {
					t.Fatal(err)
				}
			}
			var res wasmwiz.Result
			o.fill(&res)
			if string(res.Stdout) != tt.stdout || string(res.Stderr) != tt.stderr ||
				res.StdoutTruncated != tt.outT || res.StderrTruncated != tt.errT {
				t.Fatalf("stdout %q (truncated %v), stderr %q (truncated %v); want %q (%v), %q (%v)",
					res.Stdout, res.StdoutTruncated, res.Stderr, res.StderrTruncated, tt.stdout, tt.outT, tt.stderr, tt.errT)
			}
		})
	}
	t.Run("the worker's flags stay", func(t *testing.T) {
		t.Parallel()
		res := wasmwiz.Result{StdoutTruncated: true}
		newRunOutput(10).fill(&res)
		if !res.StdoutTruncated || res.StderrTruncated {
			t.Fatalf("flags %v %v, want true false", res.StdoutTruncated, res.StderrTruncated)
		}
	})
}

// TestDrainOutput: after a kill, the whole output frames left in the pipe
// are collected, up to EOF or the first frame that is not output or not
// whole.
func TestDrainOutput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		write  func(w *os.File)
		stdout string
	}{
		{"frames then EOF", func(w *os.File) {
			writeOutput(w, nil, fdStdout, []byte("one\n"))
			writeOutput(w, nil, fdStdout, []byte("two\n"))
		}, "one\ntwo\n"},
		{"a cut frame is dropped", func(w *os.File) {
			writeOutput(w, nil, fdStdout, []byte("whole\n"))
			w.Write([]byte{0, 0, 0, 20, msgOutput, fdStdout, 'c', 'u', 't'})
		}, "whole\n"},
		{"another kind ends the drain", func(w *os.File) {
			writeOutput(w, nil, fdStdout, []byte("before\n"))
			writeFrame(w, msgNeedModule, newFrame(0))
			writeOutput(w, nil, fdStdout, []byte("after\n"))
		}, "before\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			tt.write(w)
			w.Close()
			o := newRunOutput(0)
			drainOutput(&proc{stdout: r, r: bufio.NewReader(r)}, o, func() error { return nil })
			if string(o.stdout.b) != tt.stdout {
				t.Fatalf("stdout %q, want %q", o.stdout.b, tt.stdout)
			}
		})
	}
}

// TestPoolKeepsOutputOfKilledGuest: a guest that prints and then never
// returns is killed at its deadline, and its result still carries what it
// printed, on both streams.
func TestPoolKeepsOutputOfKilledGuest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		wasm           []byte
		stdout, stderr string
	}{
		{"print then loop", testmodule.Read(t, "print_then_loop.wasm"), "started\n", "warming up\n"},
		{"print then loop-free recursion", testmodule.Read(t, "print_then_recurse.wasm"), "started\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pl := newTestPool(t, testOptions(t, 1, 0))
			compileFirst(t, pl, tt.wasm)
			l := testmodule.Limits()
			l.Timeout = 300 * time.Millisecond
			res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: tt.wasm, Limits: l})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Status != wasmwiz.StatusTimeout {
				t.Fatalf("status = %s, want timeout", res.Status)
			}
			if string(res.Stdout) != tt.stdout || string(res.Stderr) != tt.stderr || res.StdoutTruncated || res.StderrTruncated {
				t.Errorf("stdout %q stderr %q (truncated %v %v), want %q %q", res.Stdout, res.Stderr,
					res.StdoutTruncated, res.StderrTruncated, tt.stdout, tt.stderr)
			}
			if s := pl.Stats(); s.Timeouts != 1 || s.Kills != 1 {
				t.Errorf("stats = %+v, want one timeout and one kill", s)
			}
			// The next run on the replacement worker starts with empty streams.
			wantHello(t, pl, "afterwards")
		})
	}
}

// TestPoolKilledGuestReportsItsMemory: a guest that grew its memory and
// then never returns is killed at its deadline, and its result still says
// how much memory it reached (the worker stores each new peak in its output
// region), whether or not someone follows its output live.
func TestPoolKilledGuestReportsItsMemory(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, testOptions(t, 1, 0))
	wasm := testmodule.Read(t, "grow_then_loop.wasm")
	compileFirst(t, pl, wasm)
	for _, live := range []bool{false, true} {
		req := &wasmwiz.RunRequest{Wasm: wasm, Limits: testmodule.Limits()}
		req.Limits.Timeout = 300 * time.Millisecond
		if live {
			req.OnOutput = func(bool, []byte) {}
		}
		res, err := pl.Run(context.Background(), req)
		if err != nil || res.Status != wasmwiz.StatusTimeout {
			t.Fatalf("followed live %v: %v %+v, want a timeout", live, err, res)
		}
		if want := int64(160 * 65536); res.MemoryPeakBytes != want {
			t.Errorf("followed live %v: memory_peak_bytes %d, want %d (160 pages)", live, res.MemoryPeakBytes, want)
		}
	}
	// The next run reports its own peak, not the killed one's.
	res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, "hello.wasm"), Limits: testmodule.Limits()})
	if err != nil || res.Status != wasmwiz.StatusOK || res.MemoryPeakBytes <= 0 || res.MemoryPeakBytes >= 160*65536 {
		t.Errorf("hello afterwards: %v %+v, want ok with its own few pages", err, res)
	}
}

// TestPoolOutputLimit: a guest flooding a stream through the pool ends with
// output_limit and exactly the cap of output, as in-process.
func TestPoolOutputLimit(t *testing.T) {
	t.Parallel()
	pl := newTestPool(t, testOptions(t, 2, 0))
	tests := []struct {
		name   string
		module string
		cap    int64
		line   string
		stderr bool
	}{
		{"stdout, cap a multiple of the line", "flood.wasm", 800, "flood!!\n", false},
		{"stdout, cap inside a line", "flood.wasm", 1003, "flood!!\n", false},
		{"stdout, cap over the copy size", "flood.wasm", refBytes + 5, "flood!!\n", false},
		{"stderr", "flood_stderr.wasm", 101, "oops!!!\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := testmodule.Limits()
			l.MaxOutputBytes = tt.cap
			res, err := pl.Run(context.Background(), &wasmwiz.RunRequest{Wasm: testmodule.Read(t, tt.module), Limits: l})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Status != wasmwiz.StatusOutputLimit {
				t.Fatalf("status = %s, want output_limit", res.Status)
			}
			flooded, other := res.Stdout, res.Stderr
			truncated, otherTruncated := res.StdoutTruncated, res.StderrTruncated
			if tt.stderr {
				flooded, other = res.Stderr, res.Stdout
				truncated, otherTruncated = res.StderrTruncated, res.StdoutTruncated
			}
			want := strings.Repeat(tt.line, int(tt.cap)/len(tt.line)+1)[:tt.cap]
			if string(flooded) != want || !truncated {
				t.Errorf("flooded stream: %d bytes (truncated %v), want exactly the %d-byte cap of %q lines",
					len(flooded), truncated, tt.cap, tt.line)
			}
			if len(other) != 0 || otherTruncated {
				t.Errorf("other stream %q (truncated %v), want empty", other, otherTruncated)
			}
		})
	}
}

// TestExchangeDrainsOutputAfterDeadline: output frames the worker wrote
// but the pool had not read when the deadline passed are still collected
// (the pool reads the pipe up to the killed worker's EOF). Here the deadline
// has passed before the exchange begins, so every frame can only come
// through that drain.
func TestExchangeDrainsOutputAfterDeadline(t *testing.T) {
	t.Parallel()
	out := exchangeWithDeadWorker(t, nil, 1, func(w *os.File) {
		writeOutput(w, nil, fdStdout, []byte("last words\n"))
		writeOutput(w, nil, fdStderr, []byte("and a warning\n"))
	})
	var res wasmwiz.Result
	out.fill(&res)
	if string(res.Stdout) != "last words\n" || string(res.Stderr) != "and a warning\n" {
		t.Fatalf("stdout %q stderr %q, want the frames left in the pipe", res.Stdout, res.Stderr)
	}
}

// exchangeWithDeadWorker runs an exchange of run seq whose deadline has
// passed before it begins, with a worker that has died meanwhile: it wrote
// what frames writes to its stdout (then EOF), and region (nil: none) is its
// output region. It fails t unless the exchange ends at the deadline, and
// returns the run's output.
func exchangeWithDeadWorker(t *testing.T, region *outputRegion, seq uint64, frames func(w *os.File)) *runOutput {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer inR.Close()
	defer inW.Close()
	defer outR.Close()
	frames(outW)
	outW.Close() // the worker is dead: EOF after its frames
	exited := make(chan struct{})
	close(exited)
	// The worker's process, as the pool sees it: not known dead yet (the
	// exchange would not send to a dead one); a sleep in a group of its
	// own stands in for it, for the kill the deadline brings.
	stand := exec.Command("sleep", "60")
	stand.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := stand.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stand.Process.Kill(); _ = stand.Wait() }()
	p := &proc{pid: stand.Process.Pid, stdin: inW, stdout: outR, r: bufio.NewReader(outR), tail: &tailBuffer{max: 64},
		exited: exited, mods: newLRU(1 << 20), region: region}
	pl := &Pool{log: slog.New(slog.DiscardHandler), closing: make(chan struct{})}
	out := newRunOutput(0)
	req := &wasmwiz.RunRequest{Wasm: []byte("\x00asm"), Limits: testmodule.Limits()}
	encode := func(e *enc, wasm []byte) {
		encodeRun(e, "sha", req, wasm != nil)
		encodeRunOutput(e, seq, false)
	}
	_, _, healthy, err := pl.exchange(context.Background(), p, &request{kind: msgRun, sha: "sha", wasm: req.Wasm, hint: 64,
		deadline: time.Now().Add(-time.Second), encode: encode, out: out, seq: seq})
	if !errors.Is(err, os.ErrDeadlineExceeded) || healthy {
		t.Fatalf("exchange = healthy %v, %v; want a deadline", healthy, err)
	}
	return out
}

// TestOutputFrameBound: with a cap, an output frame longer than the cap is
// refused from its header, before its bytes are allocated; one of exactly
// the cap, and other kinds of any size, pass.
func TestOutputFrameBound(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		kind  byte
		bytes int
		cap   int64
		ok    bool
	}{
		{"exactly the cap", msgOutput, 100, 100, true},
		{"one over the cap", msgOutput, 101, 100, false},
		{"no cap", msgOutput, 5000, 0, true},
		{"another kind", msgStats, 5000, 100, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			if tt.kind == msgOutput {
				writeOutput(&buf, nil, fdStdout, make([]byte, tt.bytes))
			} else {
				e := newFrame(tt.bytes)
				e.b = append(e.b, make([]byte, tt.bytes)...)
				writeFrame(&buf, tt.kind, e)
			}
			k, _, _, err := readFrameAligned(bufio.NewReader(&buf), tt.cap)
			if (err == nil) != tt.ok || (err == nil && k != tt.kind) {
				t.Fatalf("readFrameAligned = %q, %v; want ok %v", k, err, tt.ok)
			}
		})
	}
}

// TestRunOutputOnOutput: the run request's OnOutput gets each kept piece
// once, in order, and nothing past the cap (stdout and stderr together).
func TestRunOutputOnOutput(t *testing.T) {
	t.Parallel()
	var got []string
	o := newRunOutput(8)
	o.onOutput = func(stderr bool, p []byte) {
		tag := "1:"
		if stderr {
			tag = "2:"
		}
		got = append(got, tag+string(p))
	}
	frame := func(fd byte, s string) []byte { return append([]byte{fd}, s...) }
	for _, b := range [][]byte{frame(fdStdout, "hello "), frame(fdStderr, "warn"), frame(fdStdout, "world"), frame(fdStdout, "more")} {
		if err := o.add(b); err != nil {
			t.Fatal(err)
		}
	}
	if want := "[1:hello  2:wa]"; fmt.Sprint(got) != want {
		t.Fatalf("OnOutput got %v, want %s", got, want)
	}
}
