package testenv

import (
	"io"
	"mime"
	"mime/multipart"
	"strings"
	"testing"
)

func TestMultipart(t *testing.T) {
	body, ctype := Multipart(t, map[string][]byte{"wasm": []byte("\x00asm"), "b": []byte("B")}, map[string]string{"input": "hi", "a": "A"})
	_, params, err := mime.ParseMediaType(ctype)
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(body, params["boundary"])
	var got []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		got = append(got, p.FormName()+"|"+p.FileName()+"|"+string(b))
	}
	want := "b|b.wasm|B wasm|wasm.wasm|\x00asm a||A input||hi"
	if strings.Join(got, " ") != want {
		t.Errorf("parts %q, want %q", strings.Join(got, " "), want)
	}
}
