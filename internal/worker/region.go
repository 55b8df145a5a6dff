package worker

import (
	"encoding/binary"
	"errors"
	"sync/atomic"
	"unsafe"
)

// A run's output reaches the pool through memory the worker shares with it
// (an output region), when the platform has one and nobody follows the run
// live: the worker appends each write of the guest there, in the layout of
// output frames, and stores the length it has written after each one, so
// that the pool reads all of it after the answer, or after it killed the
// worker at the deadline, or after the worker died, with no frame and no
// wake-up per write. A write that no longer fits, and every later write of
// that run, goes out as an output frame as before; the pool reads the region
// before the first such frame, so the order holds. A run someone follows
// live (RunRequest.OnOutput) gets frames only. docs/PERFORMANCE.md, "Full
// batches of usage records; what a crossing costs at the least", measured
// the frame per write at ~17 % of a warm hello-world run through a worker.

// errRegion is a region that does not hold whole output frames.
var errRegion = errors.New("worker protocol: the output region is not whole output frames")

// outputRegionBytes is the size of a worker's output region: its 24-byte
// header (the length of frames written after it, the run they are of, and
// that run's peak of linear memory, RunRequest.OnMemory, so that a run
// killed at its deadline still reports it) and the output frames. The run is the pool's number for the request
// (runSeq), so that a run killed before its worker took it up does not read
// the previous run's output as its own.
const outputRegionBytes = 64 << 10

// regionHeader is the size of the region's header.
const regionHeader = 24

// outputRegion is one worker's region, mapped by the pool (read only) and
// by the worker (read and write).
type outputRegion struct {
	mem []byte // outputRegionBytes, page aligned
}

// written returns the length of output frames the worker has stored.
func (r *outputRegion) written() uint64 {
	return atomic.LoadUint64((*uint64)(unsafe.Pointer(&r.mem[0])))
}

// setWritten stores the length of output frames written (the worker only).
func (r *outputRegion) setWritten(n uint64) {
	atomic.StoreUint64((*uint64)(unsafe.Pointer(&r.mem[0])), n)
}

// run returns the number of the run whose output the region holds.
func (r *outputRegion) run() uint64 {
	return atomic.LoadUint64((*uint64)(unsafe.Pointer(&r.mem[8])))
}

// setRun starts the region over for run seq (the worker only): the length
// and the peak first, so that whoever sees seq sees the region empty or
// filled by it.
func (r *outputRegion) setRun(seq uint64) {
	r.setWritten(0)
	r.setPeak(0)
	atomic.StoreUint64((*uint64)(unsafe.Pointer(&r.mem[8])), seq)
}

// peak returns the linear memory the region's run reached, in bytes.
func (r *outputRegion) peak() int64 {
	return int64(atomic.LoadUint64((*uint64)(unsafe.Pointer(&r.mem[16]))))
}

// setPeak stores the linear memory the run reached (the worker only).
func (r *outputRegion) setPeak(n int64) {
	atomic.StoreUint64((*uint64)(unsafe.Pointer(&r.mem[16])), uint64(max(n, 0)))
}

// regionWriter is the worker's side of one run's output in its region.
type regionWriter struct {
	r   *outputRegion // nil: frames only
	off int           // the next frame's offset in r.mem
	on  bool          // this run writes to the region (no frame sent yet)
}

// start begins run seq: on says whether its output may go to the region
// (its memory peak goes there either way).
func (w *regionWriter) start(seq uint64, on bool) {
	w.on = on && w.r != nil
	w.off = regionHeader
	if w.r != nil {
		w.r.setRun(seq)
	}
}

// write stores p as an output frame of stream fd and reports whether it
// did; once a write does not fit, this run's writes go out as frames.
func (w *regionWriter) write(fd byte, p []byte) bool {
	if !w.on {
		return false
	}
	n := outputHeaderBytes + len(p)
	if n > len(w.r.mem)-w.off {
		w.on = false
		return false
	}
	// Appends within the region's capacity: in place.
	_ = append(appendOutputHeader(w.r.mem[w.off:w.off], fd, len(p)), p...)
	w.off += n
	w.r.setWritten(uint64(w.off - regionHeader))
	return true
}

// readRegion adds the output frames of r's first n bytes to out, and fails
// for a region that is not whole frames of output (a worker that
// misbehaves). n is bounded by the region, whatever the worker stored.
func readRegion(r *outputRegion, n uint64, out *runOutput) error {
	if n > uint64(len(r.mem)-regionHeader) {
		return errRegion
	}
	// One copy: the region is the worker's to reuse in its next run, and
	// runOutput keeps what it is given.
	b := append([]byte(nil), r.mem[regionHeader:regionHeader+int(n)]...)
	for len(b) > 0 {
		if len(b) < outputHeaderBytes {
			return errRegion
		}
		size := int(binary.BigEndian.Uint32(b[:4]))
		if size < 2 || size > len(b)-4 || b[4] != msgOutput {
			return errRegion
		}
		if err := out.add(b[5 : 4+size : 4+size]); err != nil {
			return err
		}
		b = b[4+size:]
	}
	return nil
}
