//go:build linux || darwin || freebsd

package engine

import "syscall"

// smallMemoryBytes is the size up to which a linear memory lives in a Go
// slice: creating and dropping a slice is much cheaper than mapping and
// unmapping (munmap was most of a tiny run's cost), and the copy when a
// memory outgrows it is at most this much, once.
const smallMemoryBytes = 1 << 20

// hybridMemory is a Go slice while small, then a reservation of the
// memory's whole limit made without committing it (MAP_NORESERVE): the
// kernel backs a page only when the guest touches it, so the address stops
// moving, growth never copies again, and the process holds no more than the
// pages the guest used.
type hybridMemory struct {
	limit uint64
	small sliceMemory
	big   []byte // the whole reservation, once mapped
}

func newLinearMemory(limit uint64) linearMemory {
	return &hybridMemory{limit: limit, small: sliceMemory{limit: min(limit, smallMemoryBytes)}}
}

func (m *hybridMemory) grow(size uint64) []byte {
	if size > m.limit {
		return nil
	}
	if m.big == nil {
		if size <= smallMemoryBytes {
			return m.small.grow(size)
		}
		b, err := syscall.Mmap(-1, 0, int(m.limit), syscall.PROT_READ|syscall.PROT_WRITE,
			syscall.MAP_PRIVATE|syscall.MAP_ANON|mapNoReserve)
		if err != nil {
			return nil // address space exhausted: the growth fails in the guest
		}
		copy(b, m.small.buf)
		m.small.free()
		m.big = b
	}
	return m.big[:size:size]
}

func (m *hybridMemory) free() {
	m.small.free()
	if m.big != nil {
		_ = syscall.Munmap(m.big)
		m.big = nil
	}
}
