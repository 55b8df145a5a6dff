package http

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"testing"

	"github.com/wasmwiz/wasmwiz"
)

// fuzzLimits are small, so that the fuzzer reaches every size refusal.
var fuzzLimits = wasmwiz.Limits{MaxModuleBytes: 4096, MaxStdinBytes: 1024, MaxFilesInBytes: 2048, MaxFiles: 8}

// FuzzParseExecute calls the execute body parsers directly (multipart,
// JSON, a raw module with the query, a stored module's raw stdin with the
// query, and the original service's multipart), many times faster than
// FuzzExecute's round trips. Whatever the body: nothing panics; a refusal
// is EINVALID or ETOOLARGE with a message; an accepted request holds no
// more module and stdin than the body and query carried and than its
// limits allow, no more files than the tier's limits (an archive cannot
// expand past them), and no negative limit.
func FuzzParseExecute(f *testing.F) {
	f.Add([]byte(`{"wasm_base64":"AGFzbQEAAAA=","params":[1,"x"],"env":{"a":"b"},"stdin":"hi"}`), "application/json", "", false, uint8(0))
	f.Add([]byte(`{"stdin_base64":"aGk=","timeout":"NaN","memory":"1e300K","files":[{"path":"a","content_base64":"eA=="}]}`), "application/json", "", true, uint8(3))
	f.Add([]byte(`{"archive_base64":"H4sIAAAAAAAA/wEAAP//AAAAAAAAAAA=","mount":"/w","outputs":["out/"]}`), "application/json", "", false, uint8(0))
	f.Add([]byte("\x00asm\x01\x00\x00\x00"), "application/wasm", "stdin=x&arg=1&params=1,2&timeout=1s&memory=1MiB&env=A=B", false, uint8(7))
	f.Add([]byte("stdin bytes"), "text/plain", "params=[1,2.5,\"x\"]&async=true&callback_url=http://x", true, uint8(1))
	f.Add([]byte("--b\r\nContent-Disposition: form-data; name=\"wasm\"; filename=\"m.wasm\"\r\n\r\n\x00asm\x01\x00\x00\x00\r\n"+
		"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d/in.txt\"\r\n\r\nx\r\n"+
		"--b\r\nContent-Disposition: form-data; name=\"args\"\r\n\r\n[\"a\"]\r\n"+
		"--b\r\nContent-Disposition: form-data; name=\"outputs\"\r\n\r\n[\"out/*\"]\r\n--b--\r\n"),
		"multipart/form-data; boundary=b", "", false, uint8(0))
	f.Add([]byte("--b\r\nContent-Disposition: form-data; name=\"wasm_file\"\r\n\r\n\x00asm\r\n"+
		"--b\r\nContent-Disposition: form-data; name=\"input_data\"\r\n\r\nin\r\n--b--\r\n"), "multipart/form-data; boundary=b", "", false, uint8(0))
	f.Fuzz(func(t *testing.T, body []byte, contentType, query string, stored bool, piece uint8) {
		moduleID := ""
		if stored {
			moduleID = "mod_fuzz"
		}
		parsers := map[string]executeParser{"execute": (*Server)(nil).parseExecute}
		if !stored {
			parsers["legacy"] = parseLegacyExecute
		}
		parse := func(parser executeParser, body io.Reader) (*wasmwiz.RunRequest, *executeExtras, string, error) {
			r := &http.Request{Method: "POST", URL: &url.URL{Path: "/", RawQuery: query}, Header: http.Header{},
				Body: io.NopCloser(body), ContentLength: int64(body.(interface{ Len() int }).Len())}
			r.Header.Set("Content-Type", contentType)
			r = withExtras(r)
			req, err := parser(httptest.NewRecorder(), r, fuzzLimits, "free", moduleID)
			ext := extrasFrom(r)
			if err == nil && ext.archive != nil {
				// As readExecute does once the caller is admitted.
				err = unpackArchive(req, ext.archive, fuzzLimits)
			}
			return req, ext, mediaType(r), err
		}
		for name, parser := range parsers {
			req, extras, mt, err := parse(parser, bytes.NewReader(body))
			// The same body read in pieces of 1 to 16 bytes, as a network
			// delivers it: the same outcome.
			n := int(piece%16) + 1
			req2, extras2, _, err2 := parse(parser, &pieces{r: bytes.NewReader(body), n: n})
			if c, c2 := wasmwiz.ErrorCode(err), wasmwiz.ErrorCode(err2); c != c2 {
				t.Fatalf("%s: %s (%v) read at once, %s (%v) in pieces of %d bytes", name, c, err, c2, err2, n)
			}
			if err == nil && (!reflect.DeepEqual(req, req2) || !reflect.DeepEqual(extras, extras2)) {
				t.Fatalf("%s: read at once %+v %+v, in pieces of %d bytes %+v %+v", name, req, extras, n, req2, extras2)
			}
			if err != nil {
				if c := wasmwiz.ErrorCode(err); (c != wasmwiz.EINVALID && c != wasmwiz.ETOOLARGE) || wasmwiz.ErrorMessage(err) == "" {
					t.Fatalf("%s: error %s %q: %v", name, c, wasmwiz.ErrorMessage(err), err)
				}
				continue
			}
			checkParsedExecute(t, name, req, len(body)+len(query), moduleID)
			// What a part or a raw body carries is held to its own limit
			// as it is read (JSON's fields are checked by the executor).
			if (mt == "multipart/form-data" || mt == "application/wasm") && int64(len(req.Wasm)) > fuzzLimits.MaxModuleBytes {
				t.Fatalf("%s: a %s module of %d bytes, over the limit", name, mt, len(req.Wasm))
			}
			if mt == "multipart/form-data" && int64(len(req.Stdin)) > fuzzLimits.MaxStdinBytes {
				t.Fatalf("%s: a multipart stdin of %d bytes, over the limit", name, len(req.Stdin))
			}
		}
	})
}

// pieces reads r at most n bytes at a time, and keeps Len for the
// request's length.
type pieces struct {
	r *bytes.Reader
	n int
}

func (p *pieces) Read(b []byte) (int, error) { return p.r.Read(b[:min(len(b), p.n)]) }
func (p *pieces) Len() int                   { return p.r.Len() }

func checkParsedExecute(t *testing.T, parser string, req *wasmwiz.RunRequest, sent int, moduleID string) {
	t.Helper()
	l := fuzzLimits
	if n := len(req.Wasm) + len(req.Stdin); n > sent {
		t.Fatalf("%s: %d bytes of module and stdin from %d sent", parser, n, sent)
	}
	if int64(len(req.Wasm)) > l.MaxModuleBytes+l.MaxStdinBytes+filesAllowance(l)+bodyOverhead {
		t.Fatalf("%s: a module of %d bytes, past every cap", parser, len(req.Wasm))
	}
	if moduleID != "" && (req.ModuleID != moduleID || len(req.Wasm) > 0) {
		t.Fatalf("%s: a stored module's run names module %q with %d bytes of module", parser, req.ModuleID, len(req.Wasm))
	}
	if req.Limits.Timeout < 0 || req.Limits.MaxMemoryBytes < 0 {
		t.Fatalf("%s: negative limits %+v", parser, req.Limits)
	}
	if req.Files != nil {
		var n int64
		for _, e := range req.Files.Entries {
			n += int64(len(e.Data))
		}
		if int64(len(req.Files.Entries)) > 2*l.MaxFiles || n > l.MaxFilesInBytes+int64(sent) {
			t.Fatalf("%s: %d files of %d bytes from %d bytes sent", parser, len(req.Files.Entries), n, sent)
		}
	}
}

// FuzzParseParams: params text (a JSON array or comma-separated values)
// never panics, refuses with EINVALID, and gives no more values than the
// text has characters plus one.
func FuzzParseParams(f *testing.F) {
	for _, s := range []string{"1,2", " 1 , -2.5 ", "[1,\"x\",2.5e3]", "[", "[null]", "[[1]]", "[1e999]", ",,,", "", "[\"\\u0000\"]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := parseParamsText(s)
		if err != nil {
			if wasmwiz.ErrorCode(err) != wasmwiz.EINVALID || wasmwiz.ErrorMessage(err) == "" {
				t.Fatalf("parseParamsText(%q): %v", s, err)
			}
			return
		}
		if len(out) > len(s)+1 {
			t.Fatalf("parseParamsText(%q): %d values", s, len(out))
		}
	})
}

// FuzzTextValue: a JSON string decoded as it streams (textValue) gives
// exactly what encoding/json gives for it, or fails where it fails, read at
// once or in pieces of 1 to 16 bytes: escapes, surrogate pairs, lone
// surrogates and invalid UTF-8 (both make U+FFFD), control characters.
func FuzzTextValue(f *testing.F) {
	for _, s := range []string{`"plain"`, `"a\"b\\c\/d\b\f\n\r\t"`, `"\u00e9\u4e2d"`, `"\ud83d\ude00"`, `"\ud83d"`, `"\ud83dx"`,
		`"\ude00\ud83d"`, `"\ud83d\u0041"`, "\"\xff\xfe\"", "\"\xe4\xb8\"", `"\x"`, "\"a\x01\"", `"\u12"`, `"never ends`, `null`, `12`,
		"\"\xf0\x9f\x98\x80\"", `"\ud83d\ud83d\ude00"`} {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, in []byte, piece uint8) {
		var want *string
		werr := json.NewDecoder(bytes.NewReader(in)).Decode(&want)
		for _, n := range []int{len(in) + 1, int(piece%16) + 1} {
			o := newJSONObject(&pieces{r: bytes.NewReader(in), n: n}, -1)
			got, given, err := o.textValue("stdin", 1<<20, errTooBigForTest)
			if werr != nil {
				if err == nil {
					t.Fatalf("%q in pieces of %d: %q, but encoding/json refuses it: %v", in, n, got, werr)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%q in pieces of %d: %v, but encoding/json reads %q", in, n, err, *want)
			}
			if given != (want != nil) || want != nil && !bytes.Equal(got, []byte(*want)) {
				t.Fatalf("%q in pieces of %d: %q (given %v), encoding/json %v", in, n, got, given, want)
			}
		}
	})
}

var errTooBigForTest = syntaxError("too big")
