package wasmwiz_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
)

// TestEncodeOutput: text stays text while JSON writes it in at most twice
// its size (line breaks, quotes, markup); control bytes and invalid UTF-8
// go as base64. The API's wire type (api.Result, which encodes with
// EncodeOutput) is held to the same cases.
func TestEncodeOutput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		out  string
		want string
	}{
		{"empty", "", wasmwiz.EncodingUTF8},
		{"text", "Hello, World!\n", wasmwiz.EncodingUTF8},
		{"one number a line", strings.Repeat("7\n", 1000), wasmwiz.EncodingUTF8},
		{"only quotes", strings.Repeat(`"`, 100), wasmwiz.EncodingUTF8},
		{"markup", strings.Repeat("<p>a &amp; b</p>\n", 100), wasmwiz.EncodingUTF8},
		{"a few control bytes", "ok\x1b[0m done\n", wasmwiz.EncodingUTF8},
		{"control bytes", strings.Repeat("\x01\x02\x03\x04", 100), wasmwiz.EncodingBase64},
		{"line separators, twice their size", strings.Repeat("\u2028", 100), wasmwiz.EncodingUTF8},
		{"more than twice its size", strings.Repeat("\x01a", 100), wasmwiz.EncodingBase64},
		{"invalid UTF-8", "\xff\xfe", wasmwiz.EncodingBase64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			text, enc := wasmwiz.EncodeOutput([]byte(tt.out))
			if enc != tt.want {
				t.Fatalf("encoding %s, want %s", enc, tt.want)
			}
			back, err := wasmwiz.DecodeOutput(text, enc)
			if err != nil || string(back) != tt.out {
				t.Fatalf("round trip: %q, %v", back, err)
			}
			wire, err := json.Marshal(api.Result{Status: api.StatusOK, Stdout: []byte(tt.out)})
			if err != nil {
				t.Fatal(err)
			}
			var w struct {
				Encoding string `json:"stdout_encoding"`
			}
			var res api.Result
			if err := json.Unmarshal(wire, &w); err != nil || w.Encoding != tt.want {
				t.Fatalf("api.Result encoding %s, want %s: %v", w.Encoding, tt.want, err)
			}
			if err := json.Unmarshal(wire, &res); err != nil || string(res.Stdout) != tt.out {
				t.Fatalf("api.Result round trip: %q, %v", res.Stdout, err)
			}
		})
	}
}

// FuzzEncodeOutput: whatever a guest prints, its encoding round-trips, the
// API's types (api.Result) encode it the same way, and the JSON answer
// carries it in at most twice its size (four thirds when it goes as
// base64), plus quotes: the answer is bounded by the run's output cap.
func FuzzEncodeOutput(f *testing.F) {
	for _, s := range []string{"", "hello\n", "\x00\x01\x02", "<&>", "\"\\", "\u2028\u2029", "\xff", "é\n\t"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		text, enc := wasmwiz.EncodeOutput(out)
		back, err := wasmwiz.DecodeOutput(text, enc)
		if err != nil || !bytes.Equal(back, out) {
			t.Fatalf("round trip of %q: %q, %v", out, back, err)
		}
		if enc == wasmwiz.EncodingUTF8 && !utf8.ValidString(text) {
			t.Fatalf("invalid UTF-8 sent as text: %q", out)
		}
		// The REST API's wire type encodes by the same rule.
		wire := answer(t, api.Result{Status: api.StatusOK, Stdout: out})
		var w struct {
			Stdout   string `json:"stdout"`
			Encoding string `json:"stdout_encoding"`
		}
		if err := json.Unmarshal(wire, &w); err != nil || w.Stdout != text || w.Encoding != enc {
			t.Fatalf("api.Result sends %q as %s, the root package as %s: %v", out, w.Encoding, enc, err)
		}
		// The answer without the output is a fixed size; what the output
		// adds is its escaped text.
		empty := answer(t, api.Result{Status: api.StatusOK})
		bound := 2 * len(out)
		if enc == wasmwiz.EncodingBase64 {
			// and the encoding's name is one byte longer than "utf-8"
			bound = (len(out)+2)/3*4 + len(wasmwiz.EncodingBase64) - len(wasmwiz.EncodingUTF8)
		}
		if grown := len(wire) - len(empty); grown > bound {
			t.Fatalf("output of %d bytes grew the answer by %d (%s), over %d", len(out), grown, enc, bound)
		}
	})
}

// answer encodes res as the API does: without HTML escaping.
func answer(t *testing.T, res api.Result) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(res); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
