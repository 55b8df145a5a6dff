package engine

import (
	"math/bits"
	"sync"

	"github.com/tetratelabs/wazero/experimental"
)

// memoryCap caps the linear memory of one run and records its peak. wazero
// asks it for every memory the instance creates (through
// experimental.WithMemoryAllocator on the instantiation context), so one
// shared runtime serves runs with different caps: growth past the cap makes
// Reallocate return nil, which wazero turns into memory.grow returning -1
// inside the guest.
type memoryCap struct {
	limit  uint64      // bytes; growth past it fails
	onPeak func(int64) // RunRequest.OnMemory; may be nil

	mu      sync.Mutex
	peak    uint64
	refused bool // a growth was refused by the cap
	mems    []linearMemory
}

// Allocate implements experimental.MemoryAllocator.
func (c *memoryCap) Allocate(_, max uint64) experimental.LinearMemory {
	limit := c.limit
	if max < limit {
		limit = max
	}
	m := &cappedMemory{owner: c, limit: limit}
	m.mem = newLinearMemory(limit)
	c.mu.Lock()
	c.mems = append(c.mems, m.mem)
	c.mu.Unlock()
	return m
}

func (c *memoryCap) stats() (peak uint64, refused bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peak, c.refused
}

// release frees every memory of the run. It is called after the instance is
// closed and the guest has returned, never while guest code may still touch
// the memory, so Free (which wazero calls on close) only marks.
func (c *memoryCap) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.mems {
		m.free()
	}
	c.mems = nil
}

type cappedMemory struct {
	owner *memoryCap
	limit uint64 // the smaller of the run's cap and the memory's own maximum
	mem   linearMemory
}

// Reallocate implements experimental.LinearMemory.
func (m *cappedMemory) Reallocate(size uint64) []byte {
	c := m.owner
	if size > m.limit {
		c.mu.Lock()
		if size > c.limit {
			c.refused = true
		}
		c.mu.Unlock()
		return nil
	}
	b := m.mem.grow(size)
	if b == nil {
		c.mu.Lock()
		c.refused = true
		c.mu.Unlock()
		return nil
	}
	c.mu.Lock()
	peaked := size > c.peak
	if peaked {
		c.peak = size
	}
	c.mu.Unlock()
	if peaked && c.onPeak != nil {
		c.onPeak(int64(size))
	}
	return b
}

// Free implements experimental.LinearMemory; see memoryCap.release.
func (m *cappedMemory) Free() {}

// linearMemory is the backing store of one linear memory: a reservation of
// its whole limit whose pages the kernel provides only when touched (mmap),
// or a Go slice where mmap is not available.
type linearMemory interface {
	grow(size uint64) []byte // nil when the memory cannot be provided
	free()
}

// sliceMemory grows a Go slice; used where mmap is not available, and for
// memories whose limit is too small to be worth a mapping.
//
// Its buffers of the pooled sizes come from, and go back to, smallBuffers:
// a warm run of a small guest then reuses the previous run's memory instead
// of allocating a new one that the collector must reclaim (in a worker, the
// allocation and the collections it caused were a third of a warm run's
// own cost; docs/PERFORMANCE.md). Invariant: every byte of buf past len is
// zero (a linear memory never shrinks, so the guest cannot have written
// there), and a buffer is cleared up to its len before it is pooled, so a
// pooled buffer is all zero, as a new memory must be.
type sliceMemory struct {
	buf   []byte
	limit uint64
}

// Pooled buffer sizes: 64 KiB (one page) doubling up to smallMemoryBytes.
const (
	minPooledBytes = 64 << 10
	pooledClasses  = 5 // 64, 128, 256, 512 KiB and 1 MiB
)

var smallBuffers [pooledClasses]sync.Pool

// pooledClass returns the pool of buffers with capacity n, or -1 when n is
// not a pooled size.
func pooledClass(n uint64) int {
	for i, c := 0, uint64(minPooledBytes); i < pooledClasses; i, c = i+1, c*2 {
		if n == c {
			return i
		}
	}
	return -1
}

// newBuffer returns a zeroed buffer of length size and capacity capBytes.
func newBuffer(size, capBytes uint64) []byte {
	if i := pooledClass(capBytes); i >= 0 {
		if p, ok := smallBuffers[i].Get().(*[]byte); ok {
			return (*p)[:size]
		}
	}
	return make([]byte, size, capBytes)
}

// putBuffer clears what was used of b and pools it when its size is pooled.
// The caller must not use b afterwards.
func putBuffer(b []byte) {
	i := pooledClass(uint64(cap(b)))
	if i < 0 {
		return
	}
	clear(b)
	p := new([]byte)
	*p = b[:0]
	smallBuffers[i].Put(p)
}

func (m *sliceMemory) grow(size uint64) []byte {
	if m.buf == nil && size == 0 {
		m.buf = []byte{} // non-nil: nil tells wazero the growth failed
	}
	if m.buf != nil && size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	newCap := max(uint64(cap(m.buf))*2, size)
	if newCap <= smallMemoryBytes {
		// A pooled size, so that the next run can have it.
		newCap = max(uint64(1)<<bits.Len64(newCap-1), minPooledBytes)
	}
	newCap = min(newCap, m.limit)
	nb := newBuffer(size, newCap)
	copy(nb, m.buf)
	if m.buf != nil {
		putBuffer(m.buf)
	}
	m.buf = nb
	return nb
}

func (m *sliceMemory) free() {
	if m.buf != nil {
		putBuffer(m.buf)
	}
	m.buf = nil
}
