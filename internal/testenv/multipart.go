package testenv

import (
	"bytes"
	"io"
	"maps"
	"mime/multipart"
	"slices"
	"testing"
)

// Multipart returns a multipart/form-data body and its Content-Type: first
// the file parts (field name → content, each with the file name
// "<field>.wasm"), then the plain fields, each set sorted by name.
func Multipart(t testing.TB, files map[string][]byte, fields map[string]string) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		w, err := mw.CreateFormFile(name, name+".wasm")
		if err == nil {
			_, err = w.Write(files[name])
		}
		if err != nil {
			t.Fatalf("multipart file %s: %v", name, err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		if err := mw.WriteField(name, fields[name]); err != nil {
			t.Fatalf("multipart field %s: %v", name, err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatalf("multipart: %v", err)
	}
	return &buf, mw.FormDataContentType()
}
