package wasmwiz

import (
	"archive/tar"
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

func TestCleanFilePath(t *testing.T) {
	t.Parallel()
	good := map[string]string{
		"a": "a", "data/in.csv": "data/in.csv", "./a/./b": "a/b", "a//b/": "a/b", "a b/ü": "a b/ü", "..a/b..": "..a/b..",
		strings.Repeat("d/", MaxFileDepth-1) + "f": strings.Repeat("d/", MaxFileDepth-1) + "f",
		strings.Repeat("d/./", MaxFileDepth):       strings.Repeat("d/", MaxFileDepth-1) + "d",
	}
	for in, want := range good {
		if got, err := CleanFilePath(in); err != nil || got != want {
			t.Errorf("CleanFilePath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := map[string]string{
		"":                                       "is empty",
		"/etc/passwd":                            "is absolute",
		"../x":                                   `".."`,
		"a/../../x":                              `".."`,
		"a/..":                                   `".."`,
		"a\x00b":                                 "NUL",
		`a\..\x`:                                 "backslash",
		".":                                      "the mount itself",
		"./":                                     "the mount itself",
		strings.Repeat("a", 256):                 "longer than 255",
		strings.Repeat("a/", 2049):               "longer than 4096",
		"x/" + strings.Repeat("b", 300) + "/y":   "longer than 255",
		strings.Repeat("d/", MaxFileDepth) + "f": "more than 64 levels deep",
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

func TestReadArchive(t *testing.T) {
	t.Parallel()
	good := []testenv.ArchiveEntry{
		{Name: "./", Type: tar.TypeDir},
		{Name: "data/", Type: tar.TypeDir},
		{Name: "data/in.csv", Type: tar.TypeReg, Data: "a,b\n"},
		{Name: "link", Type: tar.TypeSymlink, Linkname: "data/in.csv"},
	}
	zipGood := []testenv.ArchiveEntry{{Name: "data/", Type: '5'}, {Name: "data/in.csv", Data: "a,b\n"}, {Name: "link", Type: '2', Data: "data/in.csv"}}
	for name, data := range map[string][]byte{
		"tar": testenv.Tar(t, good...), "tar.gz": testenv.Gzip(t, testenv.Tar(t, good...)), "zip": testenv.Zip(t, zipGood...),
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
	// The top directory is skipped, beside as many entries as the limit.
	full, zipFull := []testenv.ArchiveEntry{{Name: "./", Type: tar.TypeDir}}, []testenv.ArchiveEntry{{Name: "./", Type: '5'}}
	for i := range fileLimits().MaxFiles {
		full = append(full, testenv.ArchiveEntry{Name: fmt.Sprint(i), Type: tar.TypeReg})
		zipFull = append(zipFull, testenv.ArchiveEntry{Name: fmt.Sprint(i)})
	}
	for name, data := range map[string][]byte{"tar": testenv.Tar(t, full...), "zip": testenv.Zip(t, zipFull...)} {
		if entries, err := ReadArchive(data, fileLimits()); err != nil || int64(len(entries)) != fileLimits().MaxFiles {
			t.Errorf("%s: the top directory and %d files: %d entries, %v", name, fileLimits().MaxFiles, len(entries), err)
		}
	}
	// A hard link is a copy of the file before it.
	entries, err := ReadArchive(testenv.Tar(t, testenv.ArchiveEntry{Name: "a", Type: tar.TypeReg, Data: "xy"}, testenv.ArchiveEntry{Name: "b", Type: tar.TypeLink, Linkname: "./a"}), fileLimits())
	if err != nil || len(entries) != 2 || string(entries[1].Data) != "xy" || entries[1].Kind != FileRegular {
		t.Fatalf("hard link: %+v %v", entries, err)
	}
}

func TestReadArchiveRefusals(t *testing.T) {
	t.Parallel()
	many := make([]testenv.ArchiveEntry, 11)
	for i := range many {
		many[i] = testenv.ArchiveEntry{Name: strings.Repeat("f", i+1), Type: tar.TypeReg}
	}
	zipMany := make([]testenv.ArchiveEntry, 11)
	for i := range zipMany {
		zipMany[i] = testenv.ArchiveEntry{Name: strings.Repeat("f", i+1)}
	}
	tops, zipTops := make([]testenv.ArchiveEntry, 10000), make([]testenv.ArchiveEntry, 27)
	for i := range tops {
		tops[i] = testenv.ArchiveEntry{Name: "./", Type: tar.TypeDir}
	}
	var globals bytes.Buffer
	tw := tar.NewWriter(&globals)
	for range 10000 {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "g"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range zipTops {
		zipTops[i] = testenv.ArchiveEntry{Name: "./", Type: '5'}
	}
	tests := []struct {
		name    string
		data    []byte
		code    string
		message string
	}{
		{"dot dot", testenv.Tar(t, testenv.ArchiveEntry{Name: "../evil", Type: tar.TypeReg}), EINVALID, `"../evil" has a ".."`},
		{"nested dot dot", testenv.Tar(t, testenv.ArchiveEntry{Name: "a/../../evil", Type: tar.TypeReg}), EINVALID, `"a/../../evil"`},
		{"absolute", testenv.Tar(t, testenv.ArchiveEntry{Name: "/etc/cron.d/x", Type: tar.TypeReg}), EINVALID, `"/etc/cron.d/x" is absolute`},
		{"link to /etc", testenv.Tar(t, testenv.ArchiveEntry{Name: "etc", Type: tar.TypeSymlink, Linkname: "/etc"}), EINVALID, `link "etc" points to the absolute path "/etc"`},
		{"link out", testenv.Tar(t, testenv.ArchiveEntry{Name: "up", Type: tar.TypeSymlink, Linkname: "../../.."}), EINVALID, `link "up" points to "../../..", outside`},
		{"hard link out", testenv.Tar(t, testenv.ArchiveEntry{Name: "pw", Type: tar.TypeLink, Linkname: "/etc/passwd"}), EINVALID, `hard link "pw"`},
		{"hard link to nothing", testenv.Tar(t, testenv.ArchiveEntry{Name: "pw", Type: tar.TypeLink, Linkname: "shadow"}), EINVALID, `not a file before it`},
		{"device", testenv.Tar(t, testenv.ArchiveEntry{Name: "null", Type: tar.TypeChar}), EINVALID, `"null" is a device file`},
		{"block device", testenv.Tar(t, testenv.ArchiveEntry{Name: "sda", Type: tar.TypeBlock}), EINVALID, `"sda" is a device file`},
		{"fifo", testenv.Tar(t, testenv.ArchiveEntry{Name: "p", Type: tar.TypeFifo}), EINVALID, `"p" is a FIFO`},
		{"too many", testenv.Tar(t, many...), ETOOLARGE, "more than 10 entries"},
		{"too many zip", testenv.Zip(t, zipMany...), ETOOLARGE, "more than 10 entries"},
		// Entries ReadArchive skips count too: no archive of a few bytes
		// makes it read millions of headers, nor archive/tar read a
		// million headers within one entry.
		{"skipped top directories", testenv.Gzip(t, testenv.Tar(t, tops...)), ETOOLARGE, "more than 10 entries"},
		{"skipped global headers", testenv.Gzip(t, globals.Bytes()), ETOOLARGE, "more than 10 entries"},
		{"pax headers in a row", testenv.Gzip(t, paxHeaders(t, 1000)), ETOOLARGE, "over 437224B unpacked"},
		{"zip of skipped top directories", testenv.Zip(t, zipTops...), ETOOLARGE, "more than 10 entries"},
		{"too big", testenv.Tar(t, testenv.ArchiveEntry{Name: "big", Type: tar.TypeReg, Data: strings.Repeat("x", 1001)}), ETOOLARGE, `over the 1000B limit`},
		{"gzip bomb", testenv.Gzip(t, testenv.Tar(t, testenv.ArchiveEntry{Name: "zeros", Type: tar.TypeReg, Data: strings.Repeat("\x00", 1<<20)})), ETOOLARGE, "over the 1000B limit"},
		{"zip bomb", testenv.Zip(t, testenv.ArchiveEntry{Name: "zeros", Data: strings.Repeat("\x00", 1<<20)}), ETOOLARGE, "over the 1000B limit"},
		{"zip dot dot", testenv.Zip(t, testenv.ArchiveEntry{Name: "../evil", Data: "x"}), EINVALID, `"../evil" has a ".."`},
		{"zip backslash", testenv.Zip(t, testenv.ArchiveEntry{Name: `..\evil`, Data: "x"}), EINVALID, "backslash"},
		{"zip link out", testenv.Zip(t, testenv.ArchiveEntry{Name: "l", Type: '2', Data: "/etc/passwd"}), EINVALID, `link "l" points to the absolute path`},
		{"zip fifo", testenv.Zip(t, testenv.ArchiveEntry{Name: "p", Type: '6'}), EINVALID, `"p" is a FIFO`},
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

// paxHeaders returns a tar of n PAX extended headers in a row, which
// archive/tar reads within one call of Next, then its end.
func paxHeaders(t *testing.T, n int) []byte {
	t.Helper()
	one := testenv.Tar(t, testenv.ArchiveEntry{Name: "pax", Type: tar.TypeReg, Data: "16 comment=abcd\n"})[:1024] // header and content
	one[156] = tar.TypeXHeader
	copy(one[148:156], "        ")
	sum := 0
	for _, c := range one[:512] {
		sum += int(c)
	}
	copy(one[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return append(bytes.Repeat(one, n), make([]byte, 1024)...)
}

// FuzzReadArchive: no input makes ReadArchive panic, hold more than its
// limits, or return entries that RunFiles.Check refuses.
func FuzzReadArchive(f *testing.F) {
	f.Add(testenv.Tar(f, testenv.ArchiveEntry{Name: "a/b", Type: tar.TypeReg, Data: "x"}, testenv.ArchiveEntry{Name: "l", Type: tar.TypeSymlink, Linkname: "a/b"}))
	f.Add(testenv.Gzip(f, testenv.Tar(f, testenv.ArchiveEntry{Name: "a", Type: tar.TypeReg, Data: "hello"})))
	f.Add(testenv.Zip(f, testenv.ArchiveEntry{Name: "d/", Type: '5'}, testenv.ArchiveEntry{Name: "d/f", Data: "x"}, testenv.ArchiveEntry{Name: "l", Type: '2', Data: "d/f"}))
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

// TestKeptFiles: a background run's record keeps its files' content in
// path order while it fits max_stored_output_bytes in all; a file past it
// is listed without content (Omitted), a smaller one after it may still
// fit, and a file the run itself omitted stays omitted.
func TestKeptFiles(t *testing.T) {
	t.Parallel()
	f := func(p string, n int, omitted bool) OutputFile {
		o := OutputFile{Path: p, Size: int64(n), SHA256: p, Omitted: omitted}
		if !omitted {
			o.Data = make([]byte, n)
		}
		return o
	}
	in := []OutputFile{f("a", 4, false), f("b", 8, false), f("c", 2, false), f("d", 100, true)}
	for _, tt := range []struct {
		max  int64
		kept string
	}{{-1, "abc"}, {0, ""}, {4, "a"}, {6, "ac"}, {14, "abc"}, {13, "ab"}} {
		got := keptFiles(in, tt.max)
		kept := ""
		for i, g := range got {
			if g.Path != in[i].Path || g.Size != in[i].Size || g.SHA256 != in[i].SHA256 {
				t.Fatalf("max %d: file %d is %+v, want the listing of %+v", tt.max, i, g, in[i])
			}
			if g.Omitted != (g.Data == nil) {
				t.Fatalf("max %d: file %s omitted %v with %d bytes", tt.max, g.Path, g.Omitted, len(g.Data))
			}
			if !g.Omitted {
				kept += g.Path
			}
		}
		if kept != tt.kept {
			t.Errorf("max %d: kept %q, want %q", tt.max, kept, tt.kept)
		}
	}
	if keptFiles(nil, 10) != nil {
		t.Error("no files became a list")
	}
	if in[1].Data == nil || in[1].Omitted {
		t.Error("keptFiles changed the result's files")
	}
}
