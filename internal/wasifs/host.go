package wasifs

import (
	"context"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

type tableKey struct{}

// WithTable returns ctx carrying t, for the guest call whose descriptors t
// holds.
func WithTable(ctx context.Context, t *Table) context.Context {
	return context.WithValue(ctx, tableKey{}, t)
}

func tableFrom(ctx context.Context) *Table {
	t, _ := ctx.Value(tableKey{}).(*Table)
	return t
}

// Names lists the functions Export defines, all of them replacing
// wazero's of the same name.
var Names = []string{
	"fd_advise", "fd_allocate", "fd_close", "fd_datasync", "fd_fdstat_get", "fd_fdstat_set_flags",
	"fd_fdstat_set_rights", "fd_filestat_get", "fd_filestat_set_size", "fd_filestat_set_times",
	"fd_pread", "fd_prestat_get", "fd_prestat_dir_name", "fd_pwrite", "fd_read", "fd_readdir",
	"fd_renumber", "fd_seek", "fd_sync", "fd_tell", "fd_write",
	"path_create_directory", "path_filestat_get", "path_filestat_set_times", "path_link", "path_open",
	"path_readlink", "path_remove_directory", "path_rename", "path_symlink", "path_unlink_file",
	"poll_oneoff", "sock_accept", "sock_recv", "sock_send", "sock_shutdown",
}

// call is the body of a host function: the table of the run, the guest's
// memory (nil when it has none) and the parameters; it returns the errno.
type call func(ctx context.Context, t *Table, m *mem, p []uint64) Errno

// Export defines the descriptor functions of wasi_snapshot_preview1 on b
// (see Names), or with unstable those of the legacy wasi_unstable, which
// differ in fd_seek's whence numbers, the filestat layout (a 32-bit nlink)
// and poll_oneoff's clock subscription (an extra identifier). Define them
// after wazero's own, which they replace. Each finds its Table in the
// context of the guest call (WithTable); without one, only stdin, stdout
// and stderr are open, and empty.
func Export(b wazero.HostModuleBuilder, unstable bool) {
	filestatSize := uint64(sizeFilestat)
	if unstable {
		filestatSize = sizeFilestatUnstable
	}
	// filestat has get fill a preview1 filestat and stores it at b in the
	// layout of the module being defined.
	filestat := func(b []byte, get func(st []byte) Errno) Errno {
		var st [sizeFilestat]byte
		if errno := get(st[:]); errno != 0 {
			return errno
		}
		if !unstable {
			copy(b, st[:])
			return errnoSuccess
		}
		// dev, ino, filetype; nlink as u32 at 20; size and times from 24.
		copy(b[:20], st[:20])
		clear(b[17:20])
		le.PutUint32(b[20:], uint32(le.Uint64(st[24:])))
		copy(b[24:], st[32:])
		return errnoSuccess
	}
	def := func(name, sig string, params []string, f call) {
		types := make([]api.ValueType, len(sig))
		for i, c := range sig {
			types[i] = api.ValueTypeI32
			if c == 'I' {
				types[i] = api.ValueTypeI64
			}
		}
		b.NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
				t := tableFrom(ctx)
				if t == nil {
					t = closedTable
				}
				// An i32 arrives in the low half of its slot; the high half
				// is not defined.
				for i, typ := range types {
					if typ == api.ValueTypeI32 {
						stack[i] = uint64(uint32(stack[i]))
					}
				}
				stack[0] = uint64(f(ctx, t, &mem{m: mod.Memory()}, stack))
			}), types, []api.ValueType{api.ValueTypeI32}).
			WithParameterNames(params...).
			Export(name)
	}

	def("fd_advise", "iIIi", []string{"fd", "offset", "len", "advice"}, func(_ context.Context, t *Table, _ *mem, p []uint64) Errno {
		return t.fdAdvise(u32(p[0]), p[1], p[2], u32(p[3]))
	})
	def("fd_allocate", "iII", []string{"fd", "offset", "len"}, func(_ context.Context, t *Table, _ *mem, p []uint64) Errno {
		return t.fdAllocate(u32(p[0]), p[1], p[2])
	})
	def("fd_close", "i", []string{"fd"}, func(_ context.Context, t *Table, _ *mem, p []uint64) Errno {
		return t.fdClose(u32(p[0]))
	})
	def("fd_datasync", "i", []string{"fd"}, func(_ context.Context, t *Table, _ *mem, p []uint64) Errno {
		return t.fdSync(u32(p[0]), true)
	})
	def("fd_sync", "i", []string{"fd"}, func(_ context.Context, t *Table, _ *mem, p []uint64) Errno {
		return t.fdSync(u32(p[0]), false)
	})
	def("fd_fdstat_get", "ii", []string{"fd", "result.stat"}, func(_ context.Context, t *Table, m *mem, p []uint64) Errno {
		b := m.slice(p[1], sizeFdstat)
		if m.fault {
			return errnoFault
		}
		return t.fdFdstatGet(u32(p[0]), b)
	})
	def("fd_fdstat_set_flags", "ii", []string{"fd", "flags"}, func(_ context.Context, t *Table, _ *mem, p []uint64) Errno {
		if p[1] > 0xffff {
			return errnoInval
		}
		return t.fdFdstatSetFlags(u32(p[0]), uint16(p[1]))
	})
	def("fd_fdstat_set_rights", "iII", []string{"fd", "fs_rights_base", "fs_rights_inheriting"}, func(_ context.Context, t *Table, _ *mem, p []uint64) Errno {
		return t.fdFdstatSetRights(u32(p[0]), p[1], p[2])
	})
	def("fd_filestat_get", "ii", []string{"fd", "result.buf"}, func(_ context.Context, t *Table, m *mem, p []uint64) Errno {
		b := m.slice(p[1], filestatSize)
		if m.fault {
			return errnoFault
		}
		return filestat(b, func(st []byte) Errno { return t.fdFilestatGet(u32(p[0]), st) })
	})
	def("fd_filestat_set_size", "iI", []string{"fd", "size"}, func(_ context.Context, t *Table, _ *mem, p []uint64) Errno {
		return t.fdFilestatSetSize(u32(p[0]), p[1])
	})
	def("fd_filestat_set_times", "iIIi", []string{"fd", "atim", "mtim", "fst_flags"}, func(_ context.Context, t *Table, _ *mem, p []uint64) Errno {
		if p[3] > 0xffff {
			return errnoInval
		}
		return t.fdFilestatSetTimes(u32(p[0]), p[1], p[2], uint16(p[3]))
	})
	def("fd_pread", "iiiIi", []string{"fd", "iovs", "iovs_len", "offset", "result.nread"}, func(_ context.Context, t *Table, m *mem, p []uint64) Errno {
		return ioCall(m, p[1], p[2], p[4], func(bufs [][]byte) (int, Errno) {
			if int64(p[3]) < 0 {
				return 0, errnoInval
			}
			return t.fdRead(u32(p[0]), bufs, int64(p[3]), true)
		})
	})
	def("fd_pwrite", "iiiIi", []string{"fd", "iovs", "iovs_len", "offset", "result.nwritten"}, func(_ context.Context, t *Table, m *mem, p []uint64) Errno {
		return ioCall(m, p[1], p[2], p[4], func(bufs [][]byte) (int, Errno) {
			if int64(p[3]) < 0 {
				return 0, errnoInval
			}
			return t.fdWrite(u32(p[0]), bufs, int64(p[3]), true)
		})
	})
	def("fd_read", "iiii", []string{"fd", "iovs", "iovs_len", "result.nread"}, func(_ context.Context, t *Table, m *mem, p []uint64) Errno {
		return ioCall(m, p[1], p[2], p[3], func(bufs [][]byte) (int, Errno) {
			return t.fdRead(u32(p[0]), bufs, 0, false)
		})
	})
	def("fd_write", "iiii", []string{"fd", "iovs", "iovs_len", "result.nwritten"}, func(_ context.Context, t *Table, m *mem, p []uint64) Errno {
		return ioCall(m, p[1], p[2], p[3], func(bufs [][]byte) (int, Errno) {
			return t.fdWrite(u32(p[0]), bufs, 0, false)
		})
	})
	def("fd_prestat_get", "ii", []string{"fd", "result.prestat"}, func(_ context.Context, t *Table, m *mem, p []uint64) Errno {
		b := m.slice(p[1], sizePrestat)
		if m.fault {
			return errnoFault
		}
		return t.fdPrestatGet(u32(p[0]), b)
	})
	def("fd_prestat_dir_name", "iii", []string{"fd", "path", "path_len"}, func(_ context.Context, t *Table, m *mem, p []uint64) Errno {
		b := m.slice(p[1], p[2])
		if m.fault {
			return errnoFault
		}
		return t.fdPrestatDirName(u32(p[0]), b)
	})
	def("fd_readdir", "iiiIi", []string{"fd", "buf", "buf_len", "cookie", "result.bufused"}, func(_ context.Context, t *Table, m *mem, p []uint64) Errno {
		b, res := m.slice(p[1], p[2]), m.slice(p[4], 4)
		if m.fault {
			return errnoFault
		}
		n, errno := t.fdReaddir(u32(p[0]), b, p[3])
		return putUint32(res, uint32(n), errno)
	})
	def("fd_renumber", "ii", []string{"fd", "to"}, func(_ context.Context, t *Table, _ *mem, p []uint64) Errno {
		return t.fdRenumber(u32(p[0]), u32(p[1]))
	})
	def("fd_seek", "iIii", []string{"fd", "offset", "whence", "result.newoffset"}, func(_ context.Context, t *Table, m *mem, p []uint64) Errno {
		res := m.slice(p[3], 8)
		if m.fault {
			return errnoFault
		}
		whence := u32(p[2])
		if unstable { // cur, end, set
			switch whence {
			case 0:
				whence = whenceCur
			case 1:
				whence = whenceEnd
			case 2:
				whence = whenceSet
			}
		}
		pos, errno := t.fdSeek(u32(p[0]), int64(p[1]), whence)
		return putUint64(res, pos, errno)
	})
	def("fd_tell", "ii", []string{"fd", "result.offset"}, func(_ context.Context, t *Table, m *mem, p []uint64) Errno {
		res := m.slice(p[1], 8)
		if m.fault {
			return errnoFault
		}
		pos, errno := t.fdSeek(u32(p[0]), 0, whenceCur)
		return putUint64(res, pos, errno)
	})

	def("path_create_directory", "iii", []string{"fd", "path", "path_len"}, func(_ context.Context, t *Table, m *mem, p []uint64) Errno {
		path := m.str(p[1], p[2])
		if m.fault {
			return errnoFault
		}
		return t.pathCreateDirectory(u32(p[0]), path)
	})
	def("path_filestat_get", "iiiii", []string{"fd", "flags", "path", "path_len", "result.buf"}, func(_ context.Context, t *Table, m *mem, p []uint64) Errno {
		path, b := m.str(p[2], p[3]), m.slice(p[4], filestatSize)
		if m.fault {
			return errnoFault
		}
		return filestat(b, func(st []byte) Errno { return t.pathFilestatGet(u32(p[0]), u32(p[1]), path, st) })
	})
	def("path_filestat_set_times", "iiiiIIi", []string{"fd", "flags", "path", "path_len", "atim", "mtim", "fst_flags"}, func(_ context.Context, t *Table, m *mem, p []uint64) Errno {
		path := m.str(p[2], p[3])
		if m.fault {
			return errnoFault
		}
		if p[6] > 0xffff {
			return errnoInval
		}
		return t.pathFilestatSetTimes(u32(p[0]), u32(p[1]), path, p[4], p[5], uint16(p[6]))
	})
	def("path_link", "iiiiiii", []string{"old_fd", "old_flags", "old_path", "old_path_len", "new_fd", "new_path", "new_path_len"}, func(_ context.Context, t *Table, m *mem, p []uint64) Errno {
		oldPath, newPath := m.str(p[2], p[3]), m.str(p[5], p[6])
		if m.fault {
			return errnoFault
		}
		return t.pathLink(u32(p[0]), u32(p[1]), oldPath, u32(p[4]), newPath)
	})
	def("path_open", "iiiiiIIii", []string{"fd", "dirflags", "path", "path_len", "oflags", "fs_rights_base", "fs_rights_inheriting", "fdflags", "result.opened_fd"}, func(_ context.Context, t *Table, m *mem, p []uint64) Errno {
		path, res := m.str(p[2], p[3]), m.slice(p[8], 4)
		if m.fault {
			return errnoFault
		}
		if p[4] > 0xffff || p[7] > 0xffff {
			return errnoInval
		}
		fd, errno := t.pathOpen(u32(p[0]), u32(p[1]), path, uint16(p[4]), p[5], p[6], uint16(p[7]))
		return putUint32(res, fd, errno)
	})
	def("path_readlink", "iiiiii", []string{"fd", "path", "path_len", "buf", "buf_len", "result.bufused"}, func(_ context.Context, t *Table, m *mem, p []uint64) Errno {
		path, b, res := m.str(p[1], p[2]), m.slice(p[3], p[4]), m.slice(p[5], 4)
		if m.fault {
			return errnoFault
		}
		n, errno := t.pathReadlink(u32(p[0]), path, b)
		return putUint32(res, uint32(n), errno)
	})
	def("path_remove_directory", "iii", []string{"fd", "path", "path_len"}, func(_ context.Context, t *Table, m *mem, p []uint64) Errno {
		path := m.str(p[1], p[2])
		if m.fault {
			return errnoFault
		}
		return t.pathRemoveDirectory(u32(p[0]), path)
	})
	def("path_rename", "iiiiii", []string{"fd", "old_path", "old_path_len", "new_fd", "new_path", "new_path_len"}, func(_ context.Context, t *Table, m *mem, p []uint64) Errno {
		oldPath, newPath := m.str(p[1], p[2]), m.str(p[4], p[5])
		if m.fault {
			return errnoFault
		}
		return t.pathRename(u32(p[0]), oldPath, u32(p[3]), newPath)
	})
	def("path_symlink", "iiiii", []string{"old_path", "old_path_len", "fd", "new_path", "new_path_len"}, func(_ context.Context, t *Table, m *mem, p []uint64) Errno {
		target, path := m.str(p[0], p[1]), m.str(p[3], p[4])
		if m.fault {
			return errnoFault
		}
		return t.pathSymlink(target, u32(p[2]), path)
	})
	def("path_unlink_file", "iii", []string{"fd", "path", "path_len"}, func(_ context.Context, t *Table, m *mem, p []uint64) Errno {
		path := m.str(p[1], p[2])
		if m.fault {
			return errnoFault
		}
		return t.pathUnlinkFile(u32(p[0]), path)
	})

	def("poll_oneoff", "iiii", []string{"in", "out", "nsubscriptions", "result.nevents"}, func(ctx context.Context, t *Table, m *mem, p []uint64) Errno {
		return t.pollOneoff(ctx, m.m, u32(p[0]), u32(p[1]), u32(p[2]), u32(p[3]), unstable)
	})

	// No sockets: an open descriptor is not one (ENOTSOCK, which wazero
	// gets wrong for stdio), any other is not open (EBADF).
	notSock := func(_ context.Context, t *Table, _ *mem, p []uint64) Errno {
		if _, errno := t.get(u32(p[0])); errno != 0 {
			return errno
		}
		return errnoNotsock
	}
	def("sock_accept", "iii", []string{"fd", "flags", "result.fd"}, notSock)
	def("sock_recv", "iiiiii", []string{"fd", "ri_data", "ri_data_len", "ri_flags", "result.ro_datalen", "result.ro_flags"}, notSock)
	def("sock_send", "iiiii", []string{"fd", "si_data", "si_data_len", "si_flags", "result.so_datalen"}, notSock)
	def("sock_shutdown", "ii", []string{"fd", "how"}, notSock)
}

// closedTable answers for a guest call without a Table: stdin, stdout and
// stderr, each empty, and nothing else.
var closedTable, _ = New(Config{})

func u32(v uint64) uint32 { return uint32(v) }

// mem reads and writes the guest's memory for one host call; every access
// is bounds-checked, and one outside memory sets fault, on which the call
// returns EFAULT before it acts.
type mem struct {
	m     api.Memory
	fault bool
}

// slice returns n bytes at off as a view of the guest's memory (nil on a
// fault).
func (m *mem) slice(off, n uint64) []byte {
	if m.m == nil || off > 0xffffffff || n > 0xffffffff {
		m.fault = true
		return nil
	}
	b, ok := m.m.Read(uint32(off), uint32(n))
	if !ok {
		m.fault = true
	}
	return b
}

// str returns n bytes at off as a string (a copy).
func (m *mem) str(off, n uint64) string {
	b := m.slice(off, n)
	if n > maxPath && !m.fault {
		// Longer than any path: still a valid range to refuse by errno, but
		// never copied in full.
		b = b[:maxPath+1]
	}
	return string(b)
}

// putUint32 stores v at res when errno is success, and returns errno.
func putUint32(res []byte, v uint32, errno Errno) Errno {
	if errno == 0 {
		le.PutUint32(res, v)
	}
	return errno
}

// putUint64 stores v at res when errno is success, and returns errno.
func putUint64(res []byte, v uint64, errno Errno) Errno {
	if errno == 0 {
		le.PutUint64(res, v)
	}
	return errno
}

// ioCall reads an iovec array (iovs, n), hands its buffers to f as views of
// the guest's memory, and stores f's count at result.
func ioCall(m *mem, iovs, n, result uint64, f func(bufs [][]byte) (int, Errno)) Errno {
	if n > 1024 { // IOV_MAX
		return errnoInval
	}
	vec, res := m.slice(iovs, n*sizeIovec), m.slice(result, 4)
	if m.fault {
		return errnoFault
	}
	bufs := make([][]byte, n)
	for i := range bufs {
		off, l := le.Uint32(vec[i*sizeIovec:]), le.Uint32(vec[i*sizeIovec+4:])
		if bufs[i] = m.slice(uint64(off), uint64(l)); m.fault {
			return errnoFault
		}
	}
	count, errno := f(bufs)
	return putUint32(res, uint32(count), errno)
}
