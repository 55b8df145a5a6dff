package engine

import (
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
	limit uint64 // bytes; growth past it fails

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
	if size > c.peak {
		c.peak = size
	}
	c.mu.Unlock()
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
type sliceMemory struct {
	buf   []byte
	limit uint64
}

func (m *sliceMemory) grow(size uint64) []byte {
	if m.buf == nil {
		m.buf = []byte{} // non-nil: nil tells wazero the growth failed
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	newCap := uint64(cap(m.buf)) * 2
	if newCap < size {
		newCap = size
	}
	if newCap > m.limit {
		newCap = m.limit
	}
	nb := make([]byte, size, newCap)
	copy(nb, m.buf)
	m.buf = nb
	return nb
}

func (m *sliceMemory) free() { m.buf = nil }
