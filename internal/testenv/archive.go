package testenv

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"io/fs"
	"testing"
	"time"
)

// ArchiveEntry is one entry of a test archive (Tar, Zip).
type ArchiveEntry struct {
	Name string
	// Type is the entry's kind: for Tar a tar.Type* flag (only
	// tar.TypeReg carries Data); for Zip '5' a directory, '2' a symlink
	// whose target is Data, '6' a FIFO, anything else a file.
	Type     byte
	Data     string
	Linkname string // Tar: a link's target
}

// Tar returns a tar archive of entries, each of mode 0644 and time 0.
func Tar(t testing.TB, entries ...ArchiveEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Typeflag: e.Type, Mode: 0o644, Linkname: e.Linkname, ModTime: time.Unix(0, 0)}
		if e.Type == tar.TypeReg {
			h.Size = int64(len(e.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.Data[:h.Size])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// Zip returns a zip archive of entries, deflated.
func Zip(t testing.TB, entries ...ArchiveEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.Name, Method: zip.Deflate}
		switch e.Type {
		case '5':
			h.SetMode(fs.ModeDir | 0o755)
		case '2':
			h.SetMode(fs.ModeSymlink | 0o777)
		case '6':
			h.SetMode(fs.ModeNamedPipe | 0o644)
		default:
			h.SetMode(0o644)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(e.Data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// Gzip returns data gzipped.
func Gzip(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
