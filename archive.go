package wasmwiz

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"path"
)

// ReadArchive unpacks a tar, gzip-compressed tar or zip archive, told apart
// by their first bytes, into the entries of a run's files. It reads within
// l as it goes, so that no archive makes it hold more than l.MaxFiles
// entries and l.MaxFilesInBytes of content whatever it declares: a
// compressed bomb or a zip whose central directory lists millions of
// entries ends at the limit (ETOOLARGE). Entries it skips count too, so
// that none costs work unbounded: an archive holds at most l.MaxFiles + 16
// entries, and a tar unpacks to at most l.MaxFilesInBytes and 16 KiB of
// headers an entry (ETOOLARGE past either). Each entry is checked as
// RunFiles.Check does; device files, FIFOs and sockets, links leaving the
// tree, absolute paths and ".." are EINVALID naming the entry. A tar hard
// link becomes a copy of the file it names, which must come before it.
// An entry naming the top directory itself ("./") and a tar's global
// header are skipped.
func ReadArchive(data []byte, l Limits) ([]FileEntry, error) {
	a := &archiveReader{limits: l, files: map[string]int{}}
	switch {
	case bytes.HasPrefix(data, []byte("PK\x03\x04")) || bytes.HasPrefix(data, []byte("PK\x05\x06")):
		return a.readZip(data)
	case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, WrapError(EINVALID, err, "the archive is not a valid gzip stream")
		}
		return a.readTar(zr)
	case len(data) == 0:
		return nil, Errorf(EINVALID, "the archive is empty")
	}
	return a.readTar(bytes.NewReader(data))
}

// skippedArchiveHeaders is what an archive may hold past l.MaxFiles in
// entries ReadArchive skips (the top directory, a tar's global headers).
const skippedArchiveHeaders = 16

// maxArchiveHeaders bounds the headers of an archive, skipped or not.
func maxArchiveHeaders(l Limits) int64 {
	return max(l.MaxFiles, 0) + skippedArchiveHeaders
}

// tarHeaderBytes is what a tar entry may take besides its content: its
// header, a PAX or GNU header before it for a long name and link target
// (4 KiB each), and the padding of each.
const tarHeaderBytes = 16 * KiB

// maxTarBytes bounds a tar's bytes once unpacked: the content l allows,
// tarHeaderBytes an entry and the end of the archive. It is what bounds the
// headers archive/tar reads on its own within one entry (PAX and GNU
// headers, any number in a row).
func maxTarBytes(l Limits) int64 {
	return max(l.MaxFilesInBytes, 0) + maxArchiveHeaders(l)*tarHeaderBytes + 10*KiB
}

type archiveReader struct {
	limits  Limits
	entries []FileEntry
	files   map[string]int // regular files by path: index in entries, for hard links
	bytes   int64
	headers int64 // a tar's headers so far
}

func (a *archiveReader) tooMany() error {
	return Errorf(ETOOLARGE, "the archive holds more than %d entries (the limit of the tier)", a.limits.MaxFiles)
}

// add appends an entry after checking its path and the running limits.
func (a *archiveReader) add(e FileEntry) error {
	if e.Kind == FileDir {
		if p := path.Clean(e.Path); p == "." || p == "" {
			return nil
		}
	}
	p, err := CleanFilePath(e.Path)
	if err != nil {
		return err
	}
	e.Path = p
	if e.Kind == FileSymlink {
		if err := checkLinkTarget(p, e.Target); err != nil {
			return err
		}
	}
	if int64(len(a.entries)) >= a.limits.MaxFiles {
		return a.tooMany()
	}
	if e.Kind == FileRegular {
		a.files[p] = len(a.entries)
	}
	a.entries = append(a.entries, e)
	return nil
}

// readData reads an entry's content within what the limit leaves.
func (a *archiveReader) readData(name string, declared int64, r io.Reader) ([]byte, error) {
	room := a.limits.MaxFilesInBytes - a.bytes
	if declared > room {
		return nil, Errorf(ETOOLARGE, "the archive's files are over the %s limit of files sent into a run (at %q)",
			FormatSize(a.limits.MaxFilesInBytes), truncateName(name))
	}
	buf := make([]byte, 0, max(min(declared, room), 0))
	b := bytes.NewBuffer(buf)
	n, err := b.ReadFrom(io.LimitReader(r, room+1))
	if err != nil {
		return nil, WrapError(EINVALID, err, "the archive's entry %q cannot be read: %v", truncateName(name), err)
	}
	if n > room {
		return nil, Errorf(ETOOLARGE, "the archive's files are over the %s limit of files sent into a run (at %q)",
			FormatSize(a.limits.MaxFilesInBytes), truncateName(name))
	}
	a.bytes += n
	return b.Bytes(), nil
}

func (a *archiveReader) readTar(r io.Reader) ([]FileEntry, error) {
	bound := &boundedReader{r: r, left: maxTarBytes(a.limits)}
	tr := tar.NewReader(bound)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return a.entries, nil
		}
		if bound.passed {
			return nil, a.tarTooLarge()
		}
		if err != nil {
			if errors.Is(err, tar.ErrInsecurePath) && h != nil {
				// Go refuses some names itself; ours say why.
				if _, cerr := CleanFilePath(h.Name); cerr != nil {
					return nil, cerr
				}
			}
			return nil, WrapError(EINVALID, err, "the archive is not a valid tar, tar.gz or zip: %v", err)
		}
		if a.headers++; a.headers > maxArchiveHeaders(a.limits) {
			return nil, a.tooMany()
		}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeGNUSparse: // (Go reads the old regular type, "\x00", as TypeReg)
			data, err := a.readData(h.Name, h.Size, tr)
			if bound.passed {
				return nil, a.tarTooLarge()
			}
			if err != nil {
				return nil, err
			}
			err = a.add(FileEntry{Path: h.Name, Kind: FileRegular, Data: data})
			if err != nil {
				return nil, err
			}
		case tar.TypeDir:
			if err := a.add(FileEntry{Path: h.Name, Kind: FileDir}); err != nil {
				return nil, err
			}
		case tar.TypeSymlink:
			if err := a.add(FileEntry{Path: h.Name, Kind: FileSymlink, Target: h.Linkname}); err != nil {
				return nil, err
			}
		case tar.TypeLink:
			target, err := CleanFilePath(h.Linkname)
			if err != nil {
				return nil, Errorf(EINVALID, "hard link %q: %s", truncateName(h.Name), ErrorMessage(err))
			}
			i, ok := a.files[target]
			if !ok {
				return nil, Errorf(EINVALID, "hard link %q names %q, which is not a file before it in the archive", truncateName(h.Name), truncateName(h.Linkname))
			}
			data := a.entries[i].Data
			if a.bytes+int64(len(data)) > a.limits.MaxFilesInBytes {
				return nil, Errorf(ETOOLARGE, "the archive's files are over the %s limit of files sent into a run (at %q)",
					FormatSize(a.limits.MaxFilesInBytes), truncateName(h.Name))
			}
			a.bytes += int64(len(data))
			if err := a.add(FileEntry{Path: h.Name, Kind: FileRegular, Data: data}); err != nil {
				return nil, err
			}
		case tar.TypeXGlobalHeader:
		case tar.TypeChar, tar.TypeBlock:
			return nil, Errorf(EINVALID, "the archive's entry %q is a device file: only files, directories and links go into a run", truncateName(h.Name))
		case tar.TypeFifo:
			return nil, Errorf(EINVALID, "the archive's entry %q is a FIFO: only files, directories and links go into a run", truncateName(h.Name))
		default:
			return nil, Errorf(EINVALID, "the archive's entry %q is of tar type %q: only files, directories and links go into a run", truncateName(h.Name), h.Typeflag)
		}
	}
}

func (a *archiveReader) tarTooLarge() error {
	return Errorf(ETOOLARGE, "the archive is over %s unpacked: the %s limit of files sent into a run, and %s of headers an entry",
		FormatSize(maxTarBytes(a.limits)), FormatSize(a.limits.MaxFilesInBytes), FormatSize(tarHeaderBytes))
}

func (a *archiveReader) readZip(data []byte) ([]FileEntry, error) {
	// archive/zip reads the whole central directory before anything can be
	// counted, and a small archive can list millions of entries: count them
	// first.
	n, err := zipEntryCount(data)
	if err != nil {
		return nil, err
	}
	if n > maxArchiveHeaders(a.limits) {
		return nil, a.tooMany()
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return nil, WrapError(EINVALID, err, "the archive is not a valid zip: %v", err)
	}
	for _, f := range zr.File {
		mode := f.Mode()
		switch {
		case mode.IsDir():
			err = a.add(FileEntry{Path: f.Name, Kind: FileDir})
		case mode&fs.ModeSymlink != 0:
			var target []byte
			if target, err = a.readZipFile(f, maxFilePath); err == nil {
				err = a.add(FileEntry{Path: f.Name, Kind: FileSymlink, Target: string(target)})
			}
		case mode.IsRegular():
			var content []byte
			if content, err = a.readZipFile(f, -1); err == nil {
				err = a.add(FileEntry{Path: f.Name, Kind: FileRegular, Data: content})
			}
		default:
			err = Errorf(EINVALID, "the archive's entry %q is a %s: only files, directories and links go into a run", truncateName(f.Name), fileModeName(mode))
		}
		if err != nil {
			return nil, err
		}
	}
	return a.entries, nil
}

// readZipFile reads an entry's content; limit >= 0 reads a link target
// (not counted as the files' bytes).
func (a *archiveReader) readZipFile(f *zip.File, limit int64) ([]byte, error) {
	if _, err := CleanFilePath(f.Name); err != nil {
		return nil, err
	}
	rc, err := f.Open()
	if err != nil {
		return nil, WrapError(EINVALID, err, "the archive's entry %q cannot be read: %v", truncateName(f.Name), err)
	}
	defer rc.Close()
	if limit >= 0 {
		b, err := io.ReadAll(io.LimitReader(rc, limit+1))
		if err != nil || int64(len(b)) > limit {
			return nil, Errorf(EINVALID, "the archive's link %q has a target longer than 4096 bytes, or one that cannot be read", truncateName(f.Name))
		}
		return b, nil
	}
	return a.readData(f.Name, int64(min(f.UncompressedSize64, 1<<62)), rc)
}

// boundedReader reads r until left bytes are read, and says whether a read
// wanted more.
type boundedReader struct {
	r      io.Reader
	left   int64
	passed bool
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		b.passed = true
		return 0, io.ErrUnexpectedEOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func fileModeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeDevice != 0:
		return "device file"
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "special file"
}

// zipEntryCount counts the headers of a zip's central directory, stopping
// at the first that is not one, without holding them. It returns EINVALID
// for a zip whose end records it cannot read.
func zipEntryCount(data []byte) (int64, error) {
	le := binary.LittleEndian
	bad := func(why string) (int64, error) {
		return 0, Errorf(EINVALID, "the archive is not a valid zip: %s", why)
	}
	// End of central directory: 22 bytes and a comment of up to 64 KiB.
	end := -1
	for i := len(data) - 22; i >= 0 && i >= len(data)-22-0xffff; i-- {
		if le.Uint32(data[i:]) == 0x06054b50 {
			end = i
			break
		}
	}
	if end < 0 {
		return bad("no end of central directory")
	}
	size, offset := uint64(le.Uint32(data[end+12:])), uint64(le.Uint32(data[end+16:]))
	if size == 0xffffffff || offset == 0xffffffff || le.Uint16(data[end+10:]) == 0xffff {
		// Zip64: a locator before the end record points at the zip64 end.
		loc := end - 20
		if loc < 0 || le.Uint32(data[loc:]) != 0x07064b50 {
			return bad("no zip64 end locator")
		}
		at := le.Uint64(data[loc+8:])
		if len(data) < 56 || at > uint64(len(data))-56 || le.Uint32(data[at:]) != 0x06064b50 {
			return bad("no zip64 end record")
		}
		size, offset = le.Uint64(data[at+40:]), le.Uint64(data[at+48:])
	}
	if offset > uint64(len(data)) || size > uint64(len(data))-offset {
		return bad("the central directory lies outside the archive")
	}
	dir := data[offset : offset+size]
	var n int64
	for len(dir) >= 46 && le.Uint32(dir) == 0x02014b50 {
		next := 46 + int(le.Uint16(dir[28:])) + int(le.Uint16(dir[30:])) + int(le.Uint16(dir[32:]))
		if next > len(dir) {
			break
		}
		dir = dir[next:]
		n++
	}
	return n, nil
}
