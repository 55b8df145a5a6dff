package wasifs

import (
	"encoding/binary"
	"io"
	"math"
	"time"

	"golang.org/x/sys/unix"
)

var le = binary.LittleEndian

func fileID(fd int) (rootID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return rootID{}, err
	}
	return rootID{uint64(st.Dev), uint64(st.Ino)}, nil
}

// filetypeOf maps a stat mode to a WASI file type.
func filetypeOf(mode uint32) uint8 {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return filetypeRegularFile
	case unix.S_IFDIR:
		return filetypeDirectory
	case unix.S_IFLNK:
		return filetypeSymbolicLink
	case unix.S_IFCHR:
		return filetypeCharacterDevice
	case unix.S_IFBLK:
		return filetypeBlockDevice
	case unix.S_IFSOCK:
		return filetypeSocketStream
	}
	return filetypeUnknown
}

// putFilestat writes a filestat.
func putFilestat(b []byte, st *unix.Stat_t) {
	le.PutUint64(b[0:], uint64(st.Dev))
	le.PutUint64(b[8:], uint64(st.Ino))
	clear(b[16:24])
	b[16] = filetypeOf(uint32(st.Mode))
	le.PutUint64(b[24:], uint64(st.Nlink))
	le.PutUint64(b[32:], uint64(st.Size))
	le.PutUint64(b[40:], uint64(st.Atim.Nano()))
	le.PutUint64(b[48:], uint64(st.Mtim.Nano()))
	le.PutUint64(b[56:], uint64(st.Ctim.Nano()))
}

func (e *entry) filetype() uint8 {
	switch e.kind {
	case kindFile:
		return filetypeRegularFile
	case kindDir:
		return filetypeDirectory
	}
	// stdin, stdout and stderr are streams in memory: neither a terminal
	// (a character device without seek rights would be one to wasi-libc's
	// isatty) nor a file.
	return filetypeUnknown
}

func (t *Table) fdFdstatGet(fd uint32, b []byte) Errno {
	e, errno := t.get(fd)
	if errno != 0 {
		return errno
	}
	clear(b)
	b[0] = e.filetype()
	le.PutUint16(b[2:], e.fdflags)
	le.PutUint64(b[8:], e.base)
	le.PutUint64(b[16:], e.inh)
	return errnoSuccess
}

func (t *Table) fdFdstatSetFlags(fd uint32, flags uint16) Errno {
	e, errno := t.getRights(fd, rightFdFdstatSetFlags)
	if errno != 0 {
		return errno
	}
	const syncs = fdflagDsync | fdflagRsync | fdflagSync
	if flags&^(fdflagAppend|fdflagDsync|fdflagNonblock|fdflagRsync|fdflagSync) != 0 {
		return errnoInval
	}
	if flags&syncs != e.fdflags&syncs {
		return errnoNotsup // Linux cannot change them on an open file
	}
	if e.kind == kindFile {
		fl, err := unix.FcntlInt(uintptr(e.fd), unix.F_GETFL, 0)
		if err != nil {
			return errnoOf(err)
		}
		fl &^= unix.O_APPEND
		if flags&fdflagAppend != 0 {
			fl |= unix.O_APPEND
		}
		if _, err := unix.FcntlInt(uintptr(e.fd), unix.F_SETFL, fl); err != nil {
			return errnoOf(err)
		}
	}
	e.fdflags = flags
	return errnoSuccess
}

func (t *Table) fdFdstatSetRights(fd uint32, base, inh uint64) Errno {
	e, errno := t.get(fd)
	if errno != 0 {
		return errno
	}
	if base&^e.base != 0 || inh&^e.inh != 0 {
		return errnoNotcapable // rights can only be dropped
	}
	e.base, e.inh = base, inh
	return errnoSuccess
}

func (t *Table) fdFilestatGet(fd uint32, b []byte) Errno {
	e, errno := t.getRights(fd, rightFdFilestatGet)
	if errno != 0 {
		return errno
	}
	if e.f == nil {
		clear(b)
		le.PutUint64(b[24:], 1) // nlink
		return errnoSuccess
	}
	var st unix.Stat_t
	if err := unix.Fstat(e.fd, &st); err != nil {
		return errnoOf(err)
	}
	putFilestat(b, &st)
	return errnoSuccess
}

// size returns the size of the file open as e.
func (e *entry) size() (int64, Errno) {
	var st unix.Stat_t
	if err := unix.Fstat(e.fd, &st); err != nil {
		return 0, errnoOf(err)
	}
	return st.Size, errnoSuccess
}

// grow counts, against the write budget, what making the file at least end
// bytes long adds.
func (t *Table) grow(e *entry, end int64) Errno {
	if t.cfg.MaxWriteBytes <= 0 {
		return errnoSuccess
	}
	size, errno := e.size()
	if errno != 0 {
		return errno
	}
	return t.charge(end - size)
}

func (t *Table) fdFilestatSetSize(fd uint32, size uint64) Errno {
	e, errno := t.getRights(fd, rightFdFilestatSetSize)
	if errno != 0 {
		return errno
	}
	if e.kind != kindFile {
		return errnoInval
	}
	if size > math.MaxInt64 {
		return errnoFbig
	}
	if errno := t.grow(e, int64(size)); errno != 0 {
		return errno
	}
	return errnoOf(retryEINTR(func() error { return unix.Ftruncate(e.fd, int64(size)) }))
}

// timespecs turns fd_filestat_set_times' arguments into utimensat's.
func timespecs(atim, mtim uint64, flags uint16) (*[2]unix.Timespec, Errno) {
	if flags&^(fstAtim|fstAtimNow|fstMtim|fstMtimNow) != 0 ||
		flags&(fstAtim|fstAtimNow) == fstAtim|fstAtimNow || flags&(fstMtim|fstMtimNow) == fstMtim|fstMtimNow {
		return nil, errnoInval
	}
	pick := func(v uint64, set, now uint16) unix.Timespec {
		switch {
		case flags&set != 0:
			return unix.NsecToTimespec(int64(min(v, math.MaxInt64)))
		case flags&now != 0:
			return unix.Timespec{Nsec: utimeNow}
		}
		return unix.Timespec{Nsec: utimeOmit}
	}
	return &[2]unix.Timespec{pick(atim, fstAtim, fstAtimNow), pick(mtim, fstMtim, fstMtimNow)}, errnoSuccess
}

func (t *Table) fdFilestatSetTimes(fd uint32, atim, mtim uint64, flags uint16) Errno {
	e, errno := t.getRights(fd, rightFdFilestatSetTimes)
	if errno != 0 {
		return errno
	}
	ts, errno := timespecs(atim, mtim, flags)
	if errno != 0 {
		return errno
	}
	if e.f == nil {
		return errnoSuccess // stdio: nothing to stamp
	}
	return errnoOf(futimens(e.fd, ts))
}

func (t *Table) fdAllocate(fd uint32, off, n uint64) Errno {
	e, errno := t.getRights(fd, rightFdAllocate)
	if errno != 0 {
		return errno
	}
	if e.kind != kindFile {
		return errnoBadf
	}
	if n == 0 || off > math.MaxInt64 || n > math.MaxInt64-off {
		return errnoInval
	}
	if errno := t.grow(e, int64(off+n)); errno != 0 {
		return errno
	}
	err := fallocate(e.fd, int64(off), int64(n))
	if err == unix.EOPNOTSUPP {
		// A file system without fallocate: extend the file instead, which
		// is what a guest can see of an allocation.
		size, errno := e.size()
		if errno != 0 {
			return errno
		}
		if int64(off+n) > size {
			err = retryEINTR(func() error { return unix.Ftruncate(e.fd, int64(off+n)) })
		} else {
			err = nil
		}
	}
	return errnoOf(err)
}

func (t *Table) fdAdvise(fd uint32, off, n uint64, advice uint32) Errno {
	e, errno := t.getRights(fd, rightFdAdvise)
	if errno != 0 {
		return errno
	}
	if advice > 5 { // normal, sequential, random, willneed, dontneed, noreuse
		return errnoInval
	}
	if e.kind != kindFile {
		return errnoBadf
	}
	if off > math.MaxInt64 || n > math.MaxInt64 {
		return errnoInval
	}
	// WASI's advice numbers are POSIX's, in the same order.
	return errnoOf(fadvise(e.fd, int64(off), int64(n), int(advice)))
}

func (t *Table) fdSync(fd uint32, data bool) Errno {
	right := rightFdSync
	if data {
		right = rightFdDatasync
	}
	e, errno := t.getRights(fd, right)
	if errno != 0 {
		return errno
	}
	if e.f == nil {
		return errnoSuccess
	}
	if data {
		return errnoOf(fdatasync(e.fd))
	}
	return errnoOf(retryEINTR(func() error { return unix.Fsync(e.fd) }))
}

func (t *Table) fdClose(fd uint32) Errno {
	e, errno := t.get(fd)
	if errno != 0 {
		return errno
	}
	t.entries[fd] = nil
	t.open--
	return errnoOf(e.close())
}

func (t *Table) fdRenumber(from, to uint32) Errno {
	e, errno := t.get(from)
	if errno != 0 {
		return errno
	}
	old, errno := t.get(to)
	if errno != 0 {
		return errno
	}
	if from == to {
		return errnoSuccess
	}
	t.entries[to] = e
	t.entries[from] = nil
	t.open--
	_ = old.close()
	return errnoSuccess
}

// preopen returns the guest path of fd, a preopened directory.
func (t *Table) preopen(fd uint32) (string, Errno) {
	e, errno := t.get(fd)
	if errno != 0 {
		return "", errno
	}
	if e.preopen == "" {
		return "", errnoBadf
	}
	return e.preopen, errnoSuccess
}

func (t *Table) fdPrestatGet(fd uint32, b []byte) Errno {
	p, errno := t.preopen(fd)
	if errno != 0 {
		return errno
	}
	clear(b)
	le.PutUint32(b[4:], uint32(len(p)))
	return errnoSuccess
}

func (t *Table) fdPrestatDirName(fd uint32, b []byte) Errno {
	p, errno := t.preopen(fd)
	if errno != 0 {
		return errno
	}
	if len(b) < len(p) {
		return errnoNametoolong
	}
	copy(b, p)
	return errnoSuccess
}

func (t *Table) fdSeek(fd uint32, off int64, whence uint32) (uint64, Errno) {
	need := rightFdSeek
	if off == 0 && whence == whenceCur {
		need = rightFdTell
	}
	e, errno := t.getRights(fd, need)
	if errno != 0 {
		return 0, errno
	}
	if whence > whenceEnd {
		return 0, errnoInval
	}
	switch e.kind {
	case kindFile:
	case kindDir:
		return 0, errnoIsdir
	default:
		return 0, errnoSpipe
	}
	pos, err := unix.Seek(e.fd, off, int(whence))
	if err != nil {
		return 0, errnoOf(err)
	}
	return uint64(pos), errnoSuccess
}

// ioEntry returns fd for fd_read or fd_write (right) when it is a file, or
// a stream of kind stream that the call does not ask to seek in
// (positional: fd_pread, fd_pwrite).
func (t *Table) ioEntry(fd uint32, right uint64, positional bool, stream kind) (*entry, Errno) {
	if positional {
		right |= rightFdSeek
	}
	e, errno := t.getRights(fd, right)
	if errno != 0 {
		return nil, errno
	}
	switch e.kind {
	case kindFile:
	case stream:
		if positional {
			return nil, errnoSpipe
		}
	case kindDir:
		return nil, errnoIsdir
	default:
		return nil, errnoBadf
	}
	return e, errnoSuccess
}

func (t *Table) fdRead(fd uint32, bufs [][]byte, off int64, positional bool) (int, Errno) {
	e, errno := t.ioEntry(fd, rightFdRead, positional, kindStdin)
	if errno != 0 {
		return 0, errno
	}
	return transfer(bufs, func(b []byte, done int) (int, error) {
		switch {
		case e.kind == kindStdin:
			m, _ := e.r.Read(b) // a bytes.Reader fails only at its end: a short read
			return m, nil
		case positional:
			return unix.Pread(e.fd, b, off+int64(done))
		}
		return unix.Read(e.fd, b)
	})
}

func (t *Table) fdWrite(fd uint32, bufs [][]byte, off int64, positional bool) (int, Errno) {
	e, errno := t.ioEntry(fd, rightFdWrite, positional, kindWriter)
	if errno != 0 {
		return 0, errno
	}
	if e.kind == kindWriter {
		// Whatever the writer's error (output past its cap), the guest sees EIO.
		return transfer(bufs, func(b []byte, _ int) (int, error) {
			m, err := e.w.Write(b)
			if err != nil {
				err = unix.EIO
			}
			return m, err
		})
	}
	total := int64(0)
	for _, b := range bufs {
		total += int64(len(b))
	}
	if total == 0 {
		return 0, errnoSuccess
	}
	// The write budget: how far past the file's end this write reaches.
	var size int64
	if t.cfg.MaxWriteBytes > 0 {
		size, errno = e.size()
		if errno != 0 {
			return 0, errno
		}
		start := off
		switch {
		case e.fdflags&fdflagAppend != 0:
			start = size // Linux appends, also for pwrite
		case !positional:
			pos, err := unix.Seek(e.fd, 0, io.SeekCurrent)
			if err != nil {
				return 0, errnoOf(err)
			}
			start = pos
		}
		if growth := start + total - size; growth > t.room() {
			// Write what fits, as a full disk would; nothing fits: ENOSPC.
			fits := total - (growth - t.room())
			if fits <= 0 {
				return 0, errnoNospc
			}
			bufs = cut(bufs, fits)
		}
	}
	n, errno := transfer(bufs, func(b []byte, done int) (int, error) {
		if positional {
			return unix.Pwrite(e.fd, b, off+int64(done))
		}
		return unix.Write(e.fd, b)
	})
	t.chargeGrowth(e, size)
	return n, errno
}

// transfer moves bufs in order through one call of rw each (a read or a
// write; done is what the calls before moved), until a call moves less than
// its buffer. An error after some bytes ends the count there, as a short
// transfer; an error before any is the result. A failed call's count (-1
// from the unix package) is never added.
func transfer(bufs [][]byte, rw func(b []byte, done int) (int, error)) (int, Errno) {
	n := 0
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		var m int
		err := retryEINTR(func() (err error) {
			m, err = rw(b, n)
			return err
		})
		if m > 0 {
			n += m
		}
		if err != nil {
			if n > 0 {
				break
			}
			return 0, errnoOf(err)
		}
		if m < len(b) {
			break
		}
	}
	return n, errnoSuccess
}

// chargeGrowth counts what the file grew past before.
func (t *Table) chargeGrowth(e *entry, before int64) {
	if t.cfg.MaxWriteBytes <= 0 {
		return
	}
	if after, errno := e.size(); errno == 0 && after > before {
		t.written += after - before
	}
}

// cut returns bufs shortened to n bytes in all.
func cut(bufs [][]byte, n int64) [][]byte {
	out := bufs[:0:0]
	for _, b := range bufs {
		if n <= 0 {
			break
		}
		if int64(len(b)) > n {
			b = b[:n]
		}
		out = append(out, b)
		n -= int64(len(b))
	}
	return out
}

// now is the clock of poll_oneoff's absolute realtime subscriptions.
var now = time.Now
