package wasifs

import (
	"io"

	"golang.org/x/sys/unix"
)

// dirent is one entry of a directory listing.
type dirent struct {
	name string
	ino  uint64
	typ  uint8
}

// listing reads the whole directory open as d: ".", "..", then its entries
// in the order the file system gives them. The ".." of a mount's top is the
// top itself, so nothing of the host above it shows.
func (t *Table) listing(d *entry) ([]dirent, Errno) {
	if _, err := d.f.Seek(0, io.SeekStart); err != nil {
		return nil, errnoOf(err)
	}
	names, err := d.f.ReadDir(-1)
	if err != nil {
		return nil, errnoOf(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		return nil, errnoOf(err)
	}
	self := rootID{uint64(st.Dev), uint64(st.Ino)}
	up := self
	if !t.isMountTop(self) {
		if err := unix.Fstatat(d.fd, "..", &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
			up = rootID{uint64(st.Dev), uint64(st.Ino)}
		}
	}
	out := make([]dirent, 0, len(names)+2)
	out = append(out, dirent{".", self.ino, filetypeDirectory}, dirent{"..", up.ino, filetypeDirectory})
	for _, de := range names {
		var ino uint64
		typ := filetypeUnknown
		if err := unix.Fstatat(d.fd, de.Name(), &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
			ino, typ = uint64(st.Ino), filetypeOf(uint32(st.Mode))
		}
		out = append(out, dirent{de.Name(), ino, typ})
	}
	return out, errnoSuccess
}

func (t *Table) isMountTop(id rootID) bool {
	for _, r := range t.roots {
		if r == id {
			return true
		}
	}
	return false
}

// fdReaddir fills b with entries from cookie on: each a 24-byte header
// (next cookie, inode, name length, type) and the name. The last entry is
// cut at the end of b, which tells the guest to read on from its cookie.
func (t *Table) fdReaddir(fd uint32, b []byte, cookie uint64) (int, Errno) {
	d, errno := t.getRights(fd, rightFdReaddir)
	if errno != 0 {
		return 0, errno
	}
	if d.kind != kindDir {
		return 0, errnoNotdir
	}
	if cookie == 0 || d.dirents == nil {
		if d.dirents, errno = t.listing(d); errno != 0 {
			return 0, errno
		}
	}
	n := 0
	for i := cookie; i < uint64(len(d.dirents)) && n < len(b); i++ {
		de := d.dirents[i]
		var hdr [sizeDirent]byte
		le.PutUint64(hdr[0:], i+1)
		le.PutUint64(hdr[8:], de.ino)
		le.PutUint32(hdr[16:], uint32(len(de.name)))
		hdr[20] = de.typ
		n += copy(b[n:], hdr[:])
		n += copy(b[n:], de.name)
	}
	return n, errnoSuccess
}
