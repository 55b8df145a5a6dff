package http

import (
	"bytes"
	"encoding/json"
	"testing"
)

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
