package http_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/wasmwiz/wasmwiz"
)

func TestBodyLimits(t *testing.T) {
	t.Parallel()
	free, _ := findTier(wasmwiz.TierFree)
	boundary := "b0undary"
	multipartHead := []byte("--" + boundary + "\r\nContent-Disposition: form-data; name=\"wasm\"; filename=\"m.wasm\"\r\n" +
		"Content-Type: application/wasm\r\n\r\n\x00asm\x01\x00\x00\x00")
	stdinAfterModule := append(bytes.Clone(multipartHead), "\r\n--"+boundary+"\r\nContent-Disposition: form-data; name=\"stdin\"\r\n\r\n"...)
	storedID := wasmwiz.NewModuleID()
	tests := []struct {
		name          string
		path          string
		contentType   string
		head          []byte
		contentLength int64 // declared; -1 for a streamed body of unknown length
		maxRead       int64 // the server must stop reading by here
	}{
		{name: "raw wasm, declared too long", path: "/api/v1/execute", contentType: "application/wasm",
			contentLength: free.MaxModuleBytes + 1, maxRead: 0},
		{name: "raw wasm, streamed", path: "/api/v1/execute", contentType: "application/wasm",
			contentLength: -1, maxRead: free.MaxModuleBytes + 64*1024},
		{name: "multipart module part, streamed", path: "/api/v1/execute", contentType: "multipart/form-data; boundary=" + boundary,
			head: multipartHead, contentLength: -1, maxRead: free.MaxModuleBytes + 64*1024},
		{name: "json, streamed", path: "/api/v1/execute", contentType: "application/json",
			head: []byte(`{"wasm_base64":"`), contentLength: -1, maxRead: (free.MaxModuleBytes+free.MaxStdinBytes+free.MaxFilesInBytes+free.MaxFiles*1024)*4/3 + 2<<20},
		{name: "module upload, streamed", path: "/api/v1/modules", contentType: "application/wasm",
			contentLength: -1, maxRead: free.MaxModuleBytes + 64*1024},
		{name: "key creation, streamed", path: "/api/v1/keys", contentType: "application/json",
			head: []byte(`{"name":"`), contentLength: -1, maxRead: 1<<20 + 64*1024},
		{name: "legacy, streamed", path: "/api/execute", contentType: "multipart/form-data; boundary=" + boundary,
			head: multipartHead, contentLength: -1, maxRead: free.MaxModuleBytes + 64*1024},
		{name: "stdin part after a module, streamed", path: "/api/v1/execute", contentType: "multipart/form-data; boundary=" + boundary,
			head: stdinAfterModule, contentLength: -1, maxRead: int64(len(stdinAfterModule)) + free.MaxStdinBytes + 64*1024},
		{name: "stored module's stdin, streamed", path: "/api/v1/modules/" + storedID + "/execute", contentType: "application/octet-stream",
			contentLength: -1, maxRead: free.MaxStdinBytes + 64*1024},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			f.modules.FindModuleWasmFn = func(ctx context.Context, id string) (*wasmwiz.Module, error) {
				return &wasmwiz.Module{ID: id, OwnerID: theUser.ID, SHA256: "abc", Wasm: wasmHeader}, nil
			}
			body := endless(string(tt.head), "a")
			res := f.do(request{method: "POST", path: tt.path, key: userKey, body: body, length: tt.contentLength, contentType: tt.contentType})
			if res.status != 413 {
				t.Fatalf("status = %d, want 413: %s", res.status, res.body)
			}
			if tt.path != "/api/execute" && !bytes.Contains(res.body, []byte(wasmwiz.ETOOLARGE)) {
				t.Errorf("answer %s", res.body)
			}
			if got := body.read(); got > tt.maxRead {
				t.Errorf("server read %d bytes of an endless body, want at most %d", got, tt.maxRead)
			}
			if f.runCount() != 0 {
				t.Error("the engine ran")
			}
		})
	}
}
