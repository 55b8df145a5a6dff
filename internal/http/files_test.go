package http_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// wasmPart is the module part of the file tests' multipart bodies.
var wasmPart = testenv.FilePart("wasm", "m.wasm", string(wasmHeader))

// TestExecuteFiles: the run's files from multipart parts, an archive, or
// JSON reach the engine checked and clean.
func TestExecuteFiles(t *testing.T) {
	t.Parallel()
	archive := string(testenv.Tar(t, testenv.ArchiveEntry{Name: "./", Type: tar.TypeDir}, testenv.ArchiveEntry{Name: "src/a.c", Type: tar.TypeReg, Data: "int main;"},
		testenv.ArchiveEntry{Name: "link", Type: tar.TypeSymlink, Linkname: "src/a.c"}))
	tests := []struct {
		name  string
		build func(t *testing.T) (io.Reader, string)
		want  string // entries as path:kind:data, then mount and outputs
	}{
		{"multipart files", func(t *testing.T) (io.Reader, string) {
			return testenv.MultipartOf(t, wasmPart, testenv.FilePart("file", "data/in.csv", "a,b"),
				testenv.FilePart("file", "./notes.txt", "hi"), testenv.FieldPart("mount", "/work"), testenv.FieldPart("outputs", "out/*.png"), testenv.FieldPart("outputs", `["report.txt"]`))
		}, "data/in.csv:file:a,b notes.txt:file:hi | /work | out/*.png report.txt"},
		{"multipart archive and a file", func(t *testing.T) (io.Reader, string) {
			return testenv.MultipartOf(t, wasmPart, testenv.FilePart("archive", "src.tar", archive), testenv.FilePart("file", "extra", "x"))
		}, "src/a.c:file:int main; link:symlink:src/a.c extra:file:x | / | "},
		{"json", func(t *testing.T) (io.Reader, string) {
			body, _ := json.Marshal(map[string]any{"wasm_base64": base64.StdEncoding.EncodeToString(wasmHeader),
				"files":          []map[string]string{{"path": "data/in.csv", "content_base64": base64.StdEncoding.EncodeToString([]byte("a,b"))}},
				"archive_base64": base64.StdEncoding.EncodeToString([]byte(archive)), "mount": "/src", "outputs": []string{"out/"}})
			return bytes.NewReader(body), "application/json"
		}, "src/a.c:file:int main; link:symlink:src/a.c data/in.csv:file:a,b | /src | out/"},
		{"outputs only", func(t *testing.T) (io.Reader, string) {
			return testenv.MultipartOf(t, wasmPart, testenv.FieldPart("outputs", "out/"))
		}, " | / | out/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			body, ct := tt.build(t)
			resp := f.do(request{method: "POST", path: "/api/v1/execute", key: userKey, body: body, contentType: ct})
			if resp.status != 200 {
				t.Fatalf("status %d: %s", resp.status, resp.body)
			}
			files := f.lastRun().Files
			if files == nil {
				t.Fatal("no files reached the engine")
			}
			var got []string
			for _, e := range files.Entries {
				got = append(got, e.Path+":"+string(e.Kind)+":"+string(e.Data)+e.Target)
			}
			if s := strings.Join(got, " ") + " | " + files.Mount + " | " + strings.Join(files.Outputs, " "); s != tt.want {
				t.Fatalf("files\n%s\nwant\n%s", s, tt.want)
			}
		})
	}
	// Without files, none.
	f := newFixture(t, nil)
	body, ct := testenv.MultipartOf(t, wasmPart)
	if resp := f.do(request{method: "POST", path: "/api/v1/execute", key: userKey, body: body, contentType: ct}); resp.status != 200 || f.lastRun().Files != nil {
		t.Fatalf("a run without files: %d %+v", resp.status, f.lastRun().Files)
	}
}

// TestExecuteFilesRefused: every path is checked before anything runs; a
// bad entry is 400 EINVALID naming it, too much is 413.
func TestExecuteFilesRefused(t *testing.T) {
	t.Parallel()
	free, _ := findTier(wasmwiz.TierFree)
	many := make([]testenv.Part, 0, free.MaxFiles+2)
	many = append(many, wasmPart)
	for i := int64(0); i <= free.MaxFiles; i++ {
		many = append(many, testenv.FilePart("file", "f"+strings.Repeat("x", int(i)), ""))
	}
	tests := []struct {
		name    string
		parts   []testenv.Part
		status  int
		code    string
		message string
	}{
		{"archive with ../", []testenv.Part{testenv.FilePart("archive", "a.tar", string(testenv.Tar(t, testenv.ArchiveEntry{Name: "../evil", Type: tar.TypeReg, Data: "x"})))}, 400, "EINVALID", `"../evil"`},
		{"archive with an absolute path", []testenv.Part{testenv.FilePart("archive", "a.tar", string(testenv.Tar(t, testenv.ArchiveEntry{Name: "/etc/cron.d/evil", Type: tar.TypeReg})))}, 400, "EINVALID", `"/etc/cron.d/evil" is absolute`},
		{"archive with a link to /etc", []testenv.Part{testenv.FilePart("archive", "a.tar", string(testenv.Tar(t, testenv.ArchiveEntry{Name: "etc", Type: tar.TypeSymlink, Linkname: "/etc"})))}, 400, "EINVALID", `link "etc" points to the absolute path "/etc"`},
		{"archive with a link out", []testenv.Part{testenv.FilePart("archive", "a.tar", string(testenv.Tar(t, testenv.ArchiveEntry{Name: "d/up", Type: tar.TypeSymlink, Linkname: "../../x"})))}, 400, "EINVALID", `link "d/up"`},
		{"archive with a device", []testenv.Part{testenv.FilePart("archive", "a.tar", string(testenv.Tar(t, testenv.ArchiveEntry{Name: "null", Type: tar.TypeChar})))}, 400, "EINVALID", `"null" is a device file`},
		{"archive then file through its link", []testenv.Part{testenv.FilePart("archive", "a.tar", string(testenv.Tar(t, testenv.ArchiveEntry{Name: "d", Type: tar.TypeSymlink, Linkname: "x"}))), testenv.FilePart("file", "d/f", "x")}, 400, "EINVALID", `"d" is a symlink and also the directory of "d/f"`},
		{"file with ../", []testenv.Part{testenv.FilePart("file", "../../etc/passwd", "x")}, 400, "EINVALID", `"../../etc/passwd"`},
		{"file with an absolute path", []testenv.Part{testenv.FilePart("file", "/tmp/x", "x")}, 400, "EINVALID", `"/tmp/x" is absolute`},
		{"file without a name", []testenv.Part{testenv.FieldPart("file", "x")}, 400, "EINVALID", "needs a filename"},
		{"file twice", []testenv.Part{testenv.FilePart("file", "a", "x"), testenv.FilePart("file", "./a", "y")}, 400, "EINVALID", `"a" is given twice`},
		{"relative mount", []testenv.Part{testenv.FieldPart("mount", "work")}, 400, "EINVALID", "must be an absolute path"},
		{"output outside", []testenv.Part{testenv.FieldPart("outputs", "../x")}, 400, "EINVALID", `output pattern "../x"`},
		{"files too big", []testenv.Part{testenv.FilePart("file", "big", strings.Repeat("x", int(free.MaxFilesInBytes)+1))}, 413, "ETOOLARGE", "the files are over the 1MiB limit"},
		{"too many files", many[1:], 413, "ETOOLARGE", "more than 100"},
		{"archive over the bytes", []testenv.Part{testenv.FilePart("archive", "a.tar", string(testenv.Tar(t, testenv.ArchiveEntry{Name: "big", Type: tar.TypeReg, Data: strings.Repeat("x", int(free.MaxFilesInBytes)+1)})))}, 413, "ETOOLARGE", "over the 1MiB limit"},
		{"not an archive", []testenv.Part{testenv.FilePart("archive", "a.tar", "hello")}, 400, "EINVALID", "not a valid tar"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			body, ct := testenv.MultipartOf(t, append([]testenv.Part{wasmPart}, tt.parts...)...)
			resp := f.do(request{method: "POST", path: "/api/v1/execute", key: userKey, body: body, contentType: ct})
			msg, _ := resp.json(t)["error"].(map[string]any)["message"].(string)
			if resp.status != tt.status || resp.errorCode(t) != tt.code || !strings.Contains(msg, tt.message) {
				t.Fatalf("status %d %s, want %d %s saying %q", resp.status, resp.body, tt.status, tt.code, tt.message)
			}
			if f.runCount() != 0 {
				t.Fatal("the engine ran")
			}
		})
	}
}

// TestExecuteFilesAnswer: the files that came back are in the JSON answer,
// or, asked with Accept, the whole answer is a zip or a tar: result.json
// and the files under files/.
func TestExecuteFilesAnswer(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.engine.RunFn = func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
		return &wasmwiz.Result{Status: wasmwiz.StatusOK, Stdout: []byte("done"), Files: []wasmwiz.OutputFile{
			{Path: "out/a.png", Size: 3, SHA256: "aa", Data: []byte("PNG")},
			{Path: "out/big.bin", Size: 1 << 30, SHA256: "bb", Omitted: true},
		}}, nil
	}
	post := func(accept string) *response {
		body, ct := testenv.MultipartOf(t, wasmPart, testenv.FieldPart("outputs", "out/"))
		return f.do(request{method: "POST", path: "/api/v1/execute", key: userKey, body: body, contentType: ct, header: map[string]string{"Accept": accept}})
	}
	resp := post("")
	var res api.Result
	if err := json.Unmarshal(resp.body, &res); err != nil || len(res.Files) != 2 || string(res.Files[0].Content) != "PNG" || !res.Files[1].Omitted {
		t.Fatalf("JSON answer %s (%v)", resp.body, err)
	}
	if !strings.Contains(string(resp.body), `"files":[{"path":"out/a.png","size":3,"sha256":"aa","content_base64":"UE5H"},{"path":"out/big.bin","size":1073741824,"sha256":"bb","omitted":true}]`) {
		t.Fatalf("JSON answer %s", resp.body)
	}
	for _, accept := range []string{"application/zip", "application/x-tar", "application/json;q=0.5, application/zip"} {
		resp := post(accept)
		want := "application/zip"
		if strings.Contains(accept, "tar") {
			want = "application/x-tar"
		}
		if resp.status != 200 || resp.header.Get("Content-Type") != want {
			t.Fatalf("Accept %s: %d %s", accept, resp.status, resp.header.Get("Content-Type"))
		}
		files := map[string]string{}
		if want == "application/zip" {
			zr, err := zip.NewReader(bytes.NewReader(resp.body), int64(len(resp.body)))
			if err != nil {
				t.Fatal(err)
			}
			for _, zf := range zr.File {
				rc, _ := zf.Open()
				b, _ := io.ReadAll(rc)
				files[zf.Name] = string(b)
			}
		} else {
			tr := tar.NewReader(bytes.NewReader(resp.body))
			for {
				h, err := tr.Next()
				if err != nil {
					break
				}
				b, _ := io.ReadAll(tr)
				if h.Typeflag == tar.TypeReg {
					files[h.Name] = string(b)
				}
			}
		}
		if files["files/out/a.png"] != "PNG" || len(files) != 2 {
			t.Fatalf("Accept %s: archive holds %v", accept, files)
		}
		var inner api.Result
		if err := json.Unmarshal([]byte(files["result.json"]), &inner); err != nil || string(inner.Stdout) != "done" ||
			len(inner.Files) != 2 || inner.Files[0].Content != nil || strings.Contains(files["result.json"], "content_base64") {
			t.Fatalf("Accept %s: result.json %s (%v)", accept, files["result.json"], err)
		}
	}
	// JSON preferred, or an error: JSON.
	if resp := post("application/json, application/zip;q=0.1"); !strings.HasPrefix(resp.header.Get("Content-Type"), "application/json") {
		t.Fatalf("JSON preferred: %s", resp.header.Get("Content-Type"))
	}
}
