//go:build linux || darwin || freebsd

package engine

import "syscall"

// mmapMemory reserves the memory's whole limit at once, without committing
// it (MAP_NORESERVE): the kernel backs a page only when the guest touches it,
// so the address never moves, growth never copies, and the process holds no
// more than the pages the guest used.
type mmapMemory struct {
	buf []byte // the whole reservation
}

func newLinearMemory(limit uint64) linearMemory {
	if limit == 0 {
		return &sliceMemory{limit: 0}
	}
	b, err := syscall.Mmap(-1, 0, int(limit), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|mapNoReserve)
	if err != nil {
		// Address space is exhausted: fall back to a slice, still capped.
		return &sliceMemory{limit: limit}
	}
	return &mmapMemory{buf: b}
}

func (m *mmapMemory) grow(size uint64) []byte {
	if m.buf == nil || size > uint64(len(m.buf)) {
		return nil
	}
	return m.buf[:size:size]
}

func (m *mmapMemory) free() {
	if m.buf != nil {
		_ = syscall.Munmap(m.buf)
		m.buf = nil
	}
}
