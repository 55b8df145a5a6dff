package worker

import (
	"os"

	"golang.org/x/sys/unix"
)

// outputRegionFD is the descriptor a worker inherits its output region as
// (after the handoff socket, 3).
const outputRegionFD = 4

// newOutputRegion makes a worker's output region: a memfd of
// outputRegionBytes mapped here read only, and the file for the child's
// cmd.ExtraFiles (to close once the child has started).
func newOutputRegion() (*outputRegion, *os.File, error) {
	fd, err := unix.MemfdCreate("wasmwiz-output", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, nil, err
	}
	f := os.NewFile(uintptr(fd), "output-region")
	if err := unix.Ftruncate(fd, outputRegionBytes); err != nil {
		f.Close()
		return nil, nil, err
	}
	mem, err := unix.Mmap(fd, 0, outputRegionBytes, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return &outputRegion{mem: mem}, f, nil
}

// receiveOutputRegion maps the output region the pool passed as
// outputRegionFD, or returns nil when there is none (a worker not started
// by a pool, or a descriptor that is not a memfd of the region's size).
func receiveOutputRegion() *outputRegion {
	var st unix.Stat_t
	if unix.Fstat(outputRegionFD, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != outputRegionBytes {
		return nil
	}
	if _, err := unix.FcntlInt(outputRegionFD, unix.F_GET_SEALS, 0); err != nil {
		return nil // not a memfd: not ours to close either
	}
	defer unix.Close(outputRegionFD) // the mapping stays
	mem, err := unix.Mmap(outputRegionFD, 0, outputRegionBytes, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil
	}
	return &outputRegion{mem: mem}
}

// unmap releases the pool's mapping; nothing may read r after.
func (r *outputRegion) unmap() { _ = unix.Munmap(r.mem) }
