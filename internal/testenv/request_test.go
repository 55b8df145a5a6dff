package testenv

import (
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestMultipart: MultipartOf writes the parts in their order, a name as
// often as given, file parts with their file name and an octet-stream type;
// Multipart writes the files, then the fields, each sorted by name.
func TestMultipart(t *testing.T) {
	read := func(body io.Reader, ctype string) string {
		_, params, err := mime.ParseMediaType(ctype)
		if err != nil {
			t.Fatal(err)
		}
		mr := multipart.NewReader(body, params["boundary"])
		var got []string
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				return strings.Join(got, " ")
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(p)
			_, disp, _ := mime.ParseMediaType(p.Header.Get("Content-Disposition")) // FileName() drops directories
			got = append(got, p.FormName()+"|"+disp["filename"]+"|"+p.Header.Get("Content-Type")+"|"+string(b))
		}
	}
	got := read(Multipart(t, map[string][]byte{"wasm": []byte("\x00asm"), "b": []byte("B")}, map[string]string{"input": "hi", "a": "A"}))
	if want := "b|b.wasm|application/octet-stream|B wasm|wasm.wasm|application/octet-stream|\x00asm a|||A input|||hi"; got != want {
		t.Errorf("Multipart: parts %q, want %q", got, want)
	}
	got = read(MultipartOf(t, FieldPart("z", "1"), FilePart("file", "a/b.txt", "x"), FieldPart("z", "2"), FilePart("file", "c", "")))
	if want := "z|||1 file|a/b.txt|application/octet-stream|x z|||2 file|c|application/octet-stream|"; got != want {
		t.Errorf("MultipartOf: parts %q, want %q", got, want)
	}
}

func TestDo(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Got", r.Method+"|"+r.Header.Get("Authorization")+"|"+r.Header.Get("Content-Type"))
		w.WriteHeader(http.StatusTeapot)
		w.Write(b)
	}))
	defer ts.Close()
	res, b := Do(t, "PUT", ts.URL, "ww_k", "text/plain", strings.NewReader("hi"))
	if res.StatusCode != http.StatusTeapot || string(b) != "hi" || res.Header.Get("X-Got") != "PUT|Bearer ww_k|text/plain" {
		t.Errorf("Do: %d %q %q", res.StatusCode, b, res.Header.Get("X-Got"))
	}
	res, _ = Do(t, "GET", ts.URL, "", "", nil)
	if res.Header.Get("X-Got") != "GET||" {
		t.Errorf("Do without key and type sent %q", res.Header.Get("X-Got"))
	}
	code, b, hdr := DoJSON(t, "POST", ts.URL, "ww_k", map[string]int{"n": 1}, map[string]string{"Content-Type": "text/json"})
	if code != http.StatusTeapot || string(b) != `{"n":1}` || hdr.Get("X-Got") != "POST|Bearer ww_k|text/json" {
		t.Errorf("DoJSON: %d %q %q", code, b, hdr.Get("X-Got"))
	}
	if _, _, hdr := DoJSON(t, "GET", ts.URL, "", nil, nil); hdr.Get("X-Got") != "GET||" {
		t.Errorf("DoJSON without a body sent %q", hdr.Get("X-Got"))
	}
}
