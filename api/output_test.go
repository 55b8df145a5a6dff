package api

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/wasmwiz/wasmwiz"
)

// FuzzEncodeOutput: whatever a guest prints, its encoding round-trips and
// the JSON answer carries it in at most twice its size (four thirds when
// it goes as base64), plus quotes: the answer is bounded by the run's
// output cap.
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
		ans := answer(t, Result{Status: StatusOK, Stdout: out})
		var j struct {
			Stdout   string `json:"stdout"`
			Encoding string `json:"stdout_encoding"`
		}
		if err := json.Unmarshal(ans, &j); err != nil || j.Stdout != text || j.Encoding != enc {
			t.Fatalf("answer %s does not carry the encoded output: %v", ans, err)
		}
		// The answer without the output is a fixed size; what the output
		// adds is its escaped text.
		empty := answer(t, Result{Status: StatusOK})
		bound := 2 * len(out)
		if enc == wasmwiz.EncodingBase64 {
			// and the encoding's name is one byte longer than "utf-8"
			bound = (len(out)+2)/3*4 + len(wasmwiz.EncodingBase64) - len(wasmwiz.EncodingUTF8)
		}
		if grown := len(ans) - len(empty); grown > bound {
			t.Fatalf("output of %d bytes grew the answer by %d (%s), over %d", len(out), grown, enc, bound)
		}
	})
}

// answer encodes res as the API does: without HTML escaping.
func answer(t *testing.T, res Result) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(res); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
