package testenv

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"mime/multipart"
	"net/http"
	"slices"
	"testing"
)

// Do sends one request over the network, with key as a Bearer token ("" for
// none) and contentType ("" for none), and returns the response with its
// body read and closed; it fails t when there is no response.
func Do(t testing.TB, method, url, key, contentType string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	return Send(t, newRequest(t, method, url, key, contentType, body))
}

// DoJSON sends body (none when nil) as JSON as Do sends a request, with
// the headers hdr besides, and returns the answer's status, body and
// headers.
func DoJSON(t testing.TB, method, url, key string, body any, hdr map[string]string) (int, []byte, http.Header) {
	t.Helper()
	var rd io.Reader
	contentType := ""
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		rd, contentType = bytes.NewReader(b), "application/json"
	}
	req := newRequest(t, method, url, key, contentType, rd)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, b := Send(t, req)
	return res.StatusCode, b, res.Header
}

// newRequest is Do's request.
func newRequest(t testing.TB, method, url, key, contentType string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req
}

// Send sends req over the network and returns the response with its body
// read and closed; it fails t when there is no response.
func Send(t testing.TB, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", req.Method, req.URL, err)
	}
	return res, b
}

// Multipart returns a multipart/form-data body and its Content-Type: first
// the file parts (field name → content, each with the file name
// "<field>.wasm"), then the plain fields, each set sorted by name.
func Multipart(t testing.TB, files map[string][]byte, fields map[string]string) (io.Reader, string) {
	t.Helper()
	var parts []Part
	for _, name := range slices.Sorted(maps.Keys(files)) {
		parts = append(parts, FilePart(name, name+".wasm", string(files[name])))
	}
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		parts = append(parts, FieldPart(name, fields[name]))
	}
	return MultipartOf(t, parts...)
}

// Part is one part of a multipart/form-data body (MultipartOf).
type Part struct {
	Name     string
	FileName string // a file part (application/octet-stream) when set
	Data     string
}

// FilePart is a file part: field name, file name and content.
func FilePart(name, fileName, data string) Part {
	return Part{Name: name, FileName: fileName, Data: data}
}

// FieldPart is a plain field part.
func FieldPart(name, value string) Part { return Part{Name: name, Data: value} }

// MultipartOf returns a multipart/form-data body of parts, in their order
// (a name may repeat), and its Content-Type.
func MultipartOf(t testing.TB, parts ...Part) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		var w io.Writer
		var err error
		if p.FileName != "" {
			w, err = mw.CreateFormFile(p.Name, p.FileName)
		} else {
			w, err = mw.CreateFormField(p.Name)
		}
		if err == nil {
			_, err = io.WriteString(w, p.Data)
		}
		if err != nil {
			t.Fatalf("multipart part %s: %v", p.Name, err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatalf("multipart: %v", err)
	}
	return &buf, mw.FormDataContentType()
}
