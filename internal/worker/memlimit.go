package worker

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime/metrics"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wasmwiz/wasmwiz"
)

// The worker bounds its own memory, so that whatever a guest or a compile
// makes it allocate, the kernel refuses past a bound derived from the run's
// cap: the engine counts linear memory, tables, globals and segments
// against the cap (internal/engine, account.go), but not wazero's call
// stack or the function references ref.func allocates at run time, and a
// compile's memory grows with the module's shape (a 1 MB br_table took
// 2.3 GB to compile). Before each phase of a request the worker sets its
// data (private writable mappings, VmData: the Go heap and the guest's
// linear memory) may grow by the phase's budget; past it the worker dies
// saying "out of memory", and the pool answers memory_limit (run) or
// refuses the module (compile). After the request the bound goes. The
// bound is kept by a watchdog and, behind it, the kernel (RLIMIT_DATA; not
// RLIMIT_AS: the Go runtime reserves about a GiB of address space it never
// uses, which RLIMIT_AS counts and RLIMIT_DATA does not).
//
// The Go heap never unmaps: a worker that once held a big compile keeps the
// mappings, and a later phase could reuse them past its budget. So after a
// request a worker whose data outgrew its allowance (what it held at start
// plus its caches) asks the pool to retire it (a "retire" frame), and every
// phase starts from a worker within its allowance.

// Budgets of a request's phases beyond what the worker holds when it starts.
const (
	// processHeadroom covers the Go runtime around a phase: heap arenas are
	// mapped in 4 MiB steps, the collector runs behind the allocator, and
	// goroutine stacks and the engine's buffers live on the heap too.
	processHeadroom = 64 * wasmwiz.MiB
	// compileBytesPerModuleByte bounds a compile's memory by the module's
	// size: wazero v1.12.0 peaked at 16-20 bytes a module byte compiling Go
	// programs of 2.7, 4.9 and 49 MB (docs/PERFORMANCE.md).
	compileBytesPerModuleByte = 24
)

// runDataBudget is what a run may add to the worker's data: its memory
// cap, its output buffers and stdin, and the headroom.
func runDataBudget(l wasmwiz.Limits, stdin int) int64 {
	capBytes := l.MaxMemoryBytes
	if capBytes <= 0 {
		capBytes = 4 * wasmwiz.GiB
	}
	return raceOverhead * (capBytes + 2*max(l.MaxOutputBytes, 0) + int64(stdin) + processHeadroom)
}

// compileDataBudget is what compiling a module of n bytes may add to the
// worker's data: the larger of the caller's memory cap and a multiple of
// the module's size, and the headroom.
func compileDataBudget(l wasmwiz.Limits, n int) int64 {
	return raceOverhead * (max(l.MaxMemoryBytes, compileBytesPerModuleByte*int64(n)) + processHeadroom)
}

// selfStatm is this worker's /proc/PID/statm as the pool handed it over
// (handoff.go): its Landlock domain keeps it from opening /proc.
var selfStatm *os.File

// dataBytes returns the process's private writable mappings (VmData), or
// 0 when they cannot be read.
func dataBytes() int64 {
	var b []byte
	var err error
	if selfStatm != nil {
		buf := make([]byte, 128)
		var n int
		n, err = selfStatm.ReadAt(buf, 0)
		if err == io.EOF {
			err = nil
		}
		b = buf[:n]
	} else {
		b, err = os.ReadFile("/proc/self/statm")
	}
	if err != nil {
		return 0
	}
	n, _ := statmBytes(b, 5)
	return n
}

// statmBytes returns field i of a /proc/*/statm text (size resident shared
// text lib data dt, in pages) in bytes; false when it has no such field or
// the field is not a number.
func statmBytes(statm []byte, i int) (int64, bool) {
	f := bytes.Fields(statm)
	if len(f) <= i {
		return 0, false
	}
	pages, err := strconv.ParseInt(string(f[i]), 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * int64(os.Getpagesize()), true
}

// goMappedBytes is all the memory the Go runtime has mapped read-write,
// released pages included: VmData but for the binary's own data and the
// engine's linear memories (mapped during a run only). It costs a
// microsecond where reading /proc costs tens on a loaded machine.
func goMappedBytes() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}

// The kernel's refusal is a blunt end: the Go runtime is not written to
// survive a failed mapping, and besides "fatal error: out of memory" it was
// seen to die of a segmentation fault in the collector, which says nothing
// about memory. So the line a phase may not cross is kept by a watchdog:
// while the phase runs it reads the process's data every memoryPoll and,
// past the phase's line, ends the process with a message the pool reads as
// out of memory. The kernel's limit sits hardLimitMargin above the line, for
// what the watchdog cannot see coming in time: one allocation larger than
// the margin would have to happen between two polls, and the largest a
// guest can cause is wazero's call stack doubling to about 100 MB.
const (
	memoryPoll      = 5 * time.Millisecond
	hardLimitMargin = 128 * wasmwiz.MiB
)

// dataLimit sets and restores the worker's RLIMIT_DATA and watches the
// process's data during a phase.
type dataLimit struct {
	saved  unix.Rlimit
	ok     bool  // the limit could be read and VmData too: the worker bounds itself
	offset int64 // VmData less the Go runtime's mappings, at start
	// allowance is the data a worker may hold between requests: what it
	// held at start plus its caches' budgets. Past it, it asks to retire.
	allowance int64

	mu     sync.Mutex
	line   int64       // the phase's line; 0 between phases
	phases uint64      // counts phases, so that a check of an ended phase does nothing
	timer  *time.Timer // the watchdog: a timer, so that a phase starts no goroutine
}

// newDataLimit reads the process's limit and data once; caches is what the
// worker's caches may add.
func newDataLimit(caches int64) *dataLimit {
	d := &dataLimit{}
	data := dataBytes()
	d.ok = data > 0 && unix.Getrlimit(unix.RLIMIT_DATA, &d.saved) == nil
	d.offset = data - goMappedBytes()
	d.allowance = data + caches
	return d
}

// phase draws the line at what the process holds now plus budget, watches
// it until restore, and sets the kernel's limit hardLimitMargin above it
// (never above the hard limit).
func (d *dataLimit) phase(budget int64) {
	if !d.ok {
		return
	}
	// Between requests the engine maps nothing of its own, so the Go
	// runtime's count stands for VmData: reading /proc would cost a warm run
	// most of its time.
	line := d.now() + budget
	limit := uint64(line + raceOverhead*hardLimitMargin)
	if limit > d.saved.Max {
		limit = d.saved.Max
	}
	if unix.Setrlimit(unix.RLIMIT_DATA, &unix.Rlimit{Cur: limit, Max: d.saved.Max}) != nil {
		return
	}
	d.mu.Lock()
	d.line = line
	d.phases++
	if d.timer == nil {
		d.timer = time.AfterFunc(memoryPoll, d.check)
	} else {
		d.timer.Reset(memoryPoll)
	}
	d.mu.Unlock()
}

// check is the watchdog's tick: it ends the process when its data passes
// the phase's line, and otherwise looks again in memoryPoll while the
// phase lasts. (A goroutine and a ticker per phase cost a warm run more
// than its guest: starting a goroutine wakes another thread.)
func (d *dataLimit) check() {
	d.mu.Lock()
	line, phase := d.line, d.phases
	d.mu.Unlock()
	if line == 0 {
		return
	}
	n := dataBytes()
	d.mu.Lock() // a phase that ended meanwhile is not ended, nor watched again
	defer d.mu.Unlock()
	if d.phases != phase || d.line == 0 {
		return
	}
	if n > line {
		fmt.Fprintf(os.Stderr, "fatal error: out of memory: the worker holds %s of data, past the %s this request may use\n",
			wasmwiz.FormatSize(n), wasmwiz.FormatSize(line))
		os.Exit(2)
	}
	d.timer.Reset(memoryPoll)
}

// restore stops the watchdog and puts back the limit the process started
// with.
func (d *dataLimit) restore() {
	d.mu.Lock()
	watched := d.line != 0
	d.line = 0
	if d.timer != nil {
		d.timer.Stop()
	}
	d.mu.Unlock()
	if watched {
		_ = unix.Setrlimit(unix.RLIMIT_DATA, &d.saved)
	}
}

// now estimates VmData from the Go runtime's count: right between requests,
// when the engine maps nothing of its own.
func (d *dataLimit) now() int64 { return goMappedBytes() + d.offset }

// outgrown reports whether the worker holds more than its allowance.
func (d *dataLimit) outgrown() bool { return d.ok && d.now() > d.allowance }
