package http_test

import (
	"bytes"
	"net/url"
	"testing"
)

// FuzzExecute sends arbitrary bodies and query strings to the execute route
// in each body format: the answer is never a 500 (nothing panics, nothing is
// an unexpected failure), and always JSON.
func FuzzExecute(f *testing.F) {
	f.Add([]byte(`{"wasm_base64":"AGFzbQEAAAA=","params":[1,"x"],"env":{"a":"b"}}`), "application/json", "")
	f.Add([]byte("\x00asm\x01\x00\x00\x00"), "application/wasm", "stdin=x&arg=1&params=1,2&timeout=1s&memory=1MiB")
	f.Add([]byte("--b\r\nContent-Disposition: form-data; name=\"wasm\"\r\n\r\n\x00asm\x01\x00\x00\x00\r\n--b--\r\n"),
		"multipart/form-data; boundary=b", "")
	f.Add([]byte(`{"stdin_base64":"!!","timeout":"-1s"}`), "application/json", "env=%")
	f.Add([]byte(` {"wasm_base64" : "AGFzbQEAAAA=", "stdin_base64":"\/wA=","args":["a","b"],"files":[{"path":"a","content_base64":"YQ=="}],"stdin":null} `),
		"application/json", "")
	f.Add([]byte(`{"w\u0061sm_base64":"AGFzbQEAAAA=","archive_base64":null,"async":false}`), "application/json", "")
	f.Fuzz(func(t *testing.T, body []byte, contentType, query string) {
		fx := newFixture(t, nil)
		path := "/api/v1/execute"
		if q, _ := url.ParseQuery(query); len(q) > 0 {
			path += "?" + q.Encode() // what a client could send
		}
		res := fx.do(request{method: "POST", path: path, key: userKey, body: bytes.NewReader(body), contentType: contentType,
			header: map[string]string{}})
		if res.status >= 500 {
			t.Fatalf("status %d for %q %q %q: %s", res.status, body, contentType, query, res.body)
		}
		res.json(t)
	})
}
