package wasmwiz

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"io/fs"
	"strings"
	"testing"
	"time"
)

func TestCleanFilePath(t *testing.T) {
	t.Parallel()
	good := map[string]string{
		"a": "a", "data/in.csv": "data/in.csv", "./a/./b": "a/b", "a//b/": "a/b", "a b/ü": "a b/ü", "..a/b..": "..a/b..",
	}
	for in, want := range good {
		if got, err := CleanFilePath(in); err != nil || got != want {
			t.Errorf("CleanFilePath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := map[string]string{
		"":                                     "is empty",
		"/etc/passwd":                          "is absolute",
		"../x":                                 `".."`,
		"a/../../x":                            `".."`,
		"a/..":                                 `".."`,
		"a\x00b":                               "NUL",
		`a\..\x`:                               "backslash",
		".":                                    "the mount itself",
		"./":                                   "the mount itself",
		strings.Repeat("a", 256):               "longer than 255",
		strings.Repeat("a/", 2049):             "longer than 4096",
		"x/" + strings.Repeat("b", 300) + "/y": "longer than 255",
	}
	for in, want := range bad {
		_, err := CleanFilePath(in)
		if ErrorCode(err) != EINVALID || !strings.Contains(ErrorMessage(err), want) {
			t.Errorf("CleanFilePath(%q) = %v, want EINVALID saying %q", in, err, want)
		}
	}
}

func fileLimits() Limits {
	return Limits{MaxFilesInBytes: 1000, MaxFiles: 10}
}

func TestRunFilesCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		files   RunFiles
		code    string
		message string
	}{
		{"ok", RunFiles{Entries: []FileEntry{{Path: "./a/b.txt", Data: []byte("x")}, {Path: "a", Kind: FileDir}, {Path: "l", Kind: FileSymlink, Target: "a/b.txt"}},
			Mount: "/work/", Outputs: []string{"out/*.png", "report.txt", "out/"}}, "", ""},
		{"absolute", RunFiles{Entries: []FileEntry{{Path: "/etc/passwd"}}}, EINVALID, `"/etc/passwd" is absolute`},
		{"dot dot", RunFiles{Entries: []FileEntry{{Path: "a/../../x"}}}, EINVALID, `"a/../../x" has a ".."`},
		{"link to /etc", RunFiles{Entries: []FileEntry{{Path: "l", Kind: FileSymlink, Target: "/etc"}}}, EINVALID, `link "l" points to the absolute path "/etc"`},
		{"link out", RunFiles{Entries: []FileEntry{{Path: "a/l", Kind: FileSymlink, Target: "../../secret"}}}, EINVALID, `link "a/l" points to "../../secret", outside the mount`},
		{"link up but in", RunFiles{Entries: []FileEntry{{Path: "a/l", Kind: FileSymlink, Target: "../b"}}}, "", ""},
		{"device", RunFiles{Entries: []FileEntry{{Path: "d", Kind: "device"}}}, EINVALID, `"d" is a device`},
		{"twice", RunFiles{Entries: []FileEntry{{Path: "a"}, {Path: "./a"}}}, EINVALID, `"a" is given twice`},
		{"file and directory", RunFiles{Entries: []FileEntry{{Path: "a"}, {Path: "a/b"}}}, EINVALID, `"a" is a file and also the directory of "a/b"`},
		{"directory then file", RunFiles{Entries: []FileEntry{{Path: "a/b"}, {Path: "a"}}}, EINVALID, `"a" is a file and also the directory of another entry`},
		{"bytes", RunFiles{Entries: []FileEntry{{Path: "a", Data: make([]byte, 600)}, {Path: "b", Data: make([]byte, 401)}}}, ETOOLARGE, `over the 1000B limit`},
		{"count, directories implied", RunFiles{Entries: []FileEntry{{Path: "a/b/c/d/e/f/g/h/i/j/k"}}}, ETOOLARGE, "more than 10 files"},
		{"relative mount", RunFiles{Mount: "work"}, EINVALID, "must be an absolute path"},
		{"output out", RunFiles{Outputs: []string{"../x"}}, EINVALID, `output pattern "../x"`},
		{"output absolute", RunFiles{Outputs: []string{"/etc/*"}}, EINVALID, `output pattern "/etc/*"`},
		{"output malformed", RunFiles{Outputs: []string{"a["}}, EINVALID, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.files.Check(fileLimits())
			if ErrorCode(err) != tt.code && !(tt.code == "" && err == nil) || !strings.Contains(ErrorMessage(err), tt.message) {
				t.Fatalf("Check = %v, want %s %q", err, tt.code, tt.message)
			}
		})
	}
	ok := tests[0].files
	if err := ok.Check(fileLimits()); err != nil {
		t.Fatal(err)
	}
	if ok.Mount != "/work" || ok.Entries[0].Path != "a/b.txt" || ok.Outputs[2] != "out/" {
		t.Fatalf("not cleaned: %+v", ok)
	}
}

// archive builds test archives.
type archiveEntry struct {
	name     string
	typ      byte // tar type; zip: '0' file, '5' dir, '2' symlink, '6' fifo
	data     string
	linkname string
}

func tarOf(t testing.TB, entries ...archiveEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.data)), Linkname: e.linkname, ModTime: time.Unix(0, 0)}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gzipOf(t testing.TB, data []byte) []byte {
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

func zipOf(t testing.TB, entries ...archiveEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		switch e.typ {
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
		if _, err := w.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestReadArchive(t *testing.T) {
	t.Parallel()
	good := []archiveEntry{
		{name: "./", typ: tar.TypeDir},
		{name: "data/", typ: tar.TypeDir},
		{name: "data/in.csv", typ: tar.TypeReg, data: "a,b\n"},
		{name: "link", typ: tar.TypeSymlink, linkname: "data/in.csv"},
	}
	zipGood := []archiveEntry{{name: "data/", typ: '5'}, {name: "data/in.csv", data: "a,b\n"}, {name: "link", typ: '2', data: "data/in.csv"}}
	for name, data := range map[string][]byte{
		"tar": tarOf(t, good...), "tar.gz": gzipOf(t, tarOf(t, good...)), "zip": zipOf(t, zipGood...),
	} {
		entries, err := ReadArchive(data, fileLimits())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.Path+":"+string(e.Kind)+":"+string(e.Data)+e.Target)
		}
		if want := "data:dir: data/in.csv:file:a,b\n link:symlink:data/in.csv"; strings.Join(got, " ") != want {
			t.Errorf("%s: entries %q, want %q", name, strings.Join(got, " "), want)
		}
	}
	// A hard link is a copy of the file before it.
	entries, err := ReadArchive(tarOf(t, archiveEntry{name: "a", typ: tar.TypeReg, data: "xy"}, archiveEntry{name: "b", typ: tar.TypeLink, linkname: "./a"}), fileLimits())
	if err != nil || len(entries) != 2 || string(entries[1].Data) != "xy" || entries[1].Kind != FileRegular {
		t.Fatalf("hard link: %+v %v", entries, err)
	}
}

func TestReadArchiveRefusals(t *testing.T) {
	t.Parallel()
	many := make([]archiveEntry, 11)
	for i := range many {
		many[i] = archiveEntry{name: strings.Repeat("f", i+1), typ: tar.TypeReg}
	}
	zipMany := make([]archiveEntry, 11)
	for i := range zipMany {
		zipMany[i] = archiveEntry{name: strings.Repeat("f", i+1)}
	}
	tests := []struct {
		name    string
		data    []byte
		code    string
		message string
	}{
		{"dot dot", tarOf(t, archiveEntry{name: "../evil", typ: tar.TypeReg}), EINVALID, `"../evil" has a ".."`},
		{"nested dot dot", tarOf(t, archiveEntry{name: "a/../../evil", typ: tar.TypeReg}), EINVALID, `"a/../../evil"`},
		{"absolute", tarOf(t, archiveEntry{name: "/etc/cron.d/x", typ: tar.TypeReg}), EINVALID, `"/etc/cron.d/x" is absolute`},
		{"link to /etc", tarOf(t, archiveEntry{name: "etc", typ: tar.TypeSymlink, linkname: "/etc"}), EINVALID, `link "etc" points to the absolute path "/etc"`},
		{"link out", tarOf(t, archiveEntry{name: "up", typ: tar.TypeSymlink, linkname: "../../.."}), EINVALID, `link "up" points to "../../..", outside`},
		{"hard link out", tarOf(t, archiveEntry{name: "pw", typ: tar.TypeLink, linkname: "/etc/passwd"}), EINVALID, `hard link "pw"`},
		{"hard link to nothing", tarOf(t, archiveEntry{name: "pw", typ: tar.TypeLink, linkname: "shadow"}), EINVALID, `not a file before it`},
		{"device", tarOf(t, archiveEntry{name: "null", typ: tar.TypeChar}), EINVALID, `"null" is a device file`},
		{"block device", tarOf(t, archiveEntry{name: "sda", typ: tar.TypeBlock}), EINVALID, `"sda" is a device file`},
		{"fifo", tarOf(t, archiveEntry{name: "p", typ: tar.TypeFifo}), EINVALID, `"p" is a FIFO`},
		{"too many", tarOf(t, many...), ETOOLARGE, "more than 10 entries"},
		{"too many zip", zipOf(t, zipMany...), ETOOLARGE, "more than 10 entries"},
		{"too big", tarOf(t, archiveEntry{name: "big", typ: tar.TypeReg, data: strings.Repeat("x", 1001)}), ETOOLARGE, `over the 1000B limit`},
		{"gzip bomb", gzipOf(t, tarOf(t, archiveEntry{name: "zeros", typ: tar.TypeReg, data: strings.Repeat("\x00", 1<<20)})), ETOOLARGE, "over the 1000B limit"},
		{"zip bomb", zipOf(t, archiveEntry{name: "zeros", data: strings.Repeat("\x00", 1<<20)}), ETOOLARGE, "over the 1000B limit"},
		{"zip dot dot", zipOf(t, archiveEntry{name: "../evil", data: "x"}), EINVALID, `"../evil" has a ".."`},
		{"zip backslash", zipOf(t, archiveEntry{name: `..\evil`, data: "x"}), EINVALID, "backslash"},
		{"zip link out", zipOf(t, archiveEntry{name: "l", typ: '2', data: "/etc/passwd"}), EINVALID, `link "l" points to the absolute path`},
		{"zip fifo", zipOf(t, archiveEntry{name: "p", typ: '6'}), EINVALID, `"p" is a FIFO`},
		{"not an archive", []byte("hello, this is text"), EINVALID, "not a valid tar"},
		{"broken gzip", []byte{0x1f, 0x8b, 1, 2, 3}, EINVALID, "gzip"},
		{"broken zip", []byte("PK\x03\x04garbage"), EINVALID, "not a valid zip"},
		{"empty", nil, EINVALID, "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ReadArchive(tt.data, fileLimits())
			if ErrorCode(err) != tt.code || !strings.Contains(ErrorMessage(err), tt.message) {
				t.Fatalf("ReadArchive = %v, want %s saying %q", err, tt.code, tt.message)
			}
		})
	}
}

// FuzzReadArchive: no input makes ReadArchive panic, hold more than its
// limits, or return entries that RunFiles.Check refuses.
func FuzzReadArchive(f *testing.F) {
	f.Add(tarOf(f, archiveEntry{name: "a/b", typ: tar.TypeReg, data: "x"}, archiveEntry{name: "l", typ: tar.TypeSymlink, linkname: "a/b"}))
	f.Add(gzipOf(f, tarOf(f, archiveEntry{name: "a", typ: tar.TypeReg, data: "hello"})))
	f.Add(zipOf(f, archiveEntry{name: "d/", typ: '5'}, archiveEntry{name: "d/f", data: "x"}, archiveEntry{name: "l", typ: '2', data: "d/f"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		l := Limits{MaxFilesInBytes: 4096, MaxFiles: 16}
		entries, err := ReadArchive(data, l)
		if err != nil {
			if c := ErrorCode(err); c != EINVALID && c != ETOOLARGE {
				t.Fatalf("error code %s: %v", c, err)
			}
			return
		}
		if int64(len(entries)) > l.MaxFiles {
			t.Fatalf("%d entries, over the limit", len(entries))
		}
		var n int64
		for _, e := range entries {
			n += int64(len(e.Data))
		}
		if n > l.MaxFilesInBytes {
			t.Fatalf("%d bytes, over the limit", n)
		}
		files := RunFiles{Entries: entries}
		if err := files.Check(Limits{MaxFilesInBytes: l.MaxFilesInBytes, MaxFiles: 1 << 20}); err != nil {
			// Entries may clash with each other (twice, file and directory),
			// which only Check sees; any other refusal is ReadArchive's miss.
			if msg := ErrorMessage(err); !strings.Contains(msg, "twice") && !strings.Contains(msg, "also the directory") {
				t.Fatalf("ReadArchive passed what Check refuses: %v", err)
			}
		}
	})
}
