package wasmwiz

import (
	"encoding/base64"
	"unicode/utf8"
)

// Output encodings in JSON.
const (
	EncodingUTF8   = "utf-8"
	EncodingBase64 = "base64"
)

// This is the one rule for output in JSON: package api's types call it for
// the API's answers, and the domain for the JSON it writes itself (a run's
// record as its webhook sends it).

// EncodeOutput returns b as UTF-8 text when it is valid UTF-8 that JSON
// writes in at most twice its size, else as base64 (4/3 of its size), with
// the encoding's name. Text of control bytes (each written \u00XX, six
// bytes) goes as base64, so that a JSON answer carrying output of n bytes
// is at most 2n plus its fixed fields: ordinary text, even with many line
// breaks or quotes (two bytes each), stays readable.
func EncodeOutput(b []byte) (text, encoding string) {
	if utf8.Valid(b) && jsonTextLen(b) <= 2*len(b) {
		return string(b), EncodingUTF8
	}
	return base64.StdEncoding.EncodeToString(b), EncodingBase64
}

// jsonTextLen returns how many bytes encoding/json writes for the valid
// UTF-8 text b inside its quotes, without HTML escaping (as MarshalJSON
// and the API write it).
func jsonTextLen(b []byte) int {
	n := 0
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f':
				n += 2
			case c < 0x20:
				n += 6 // \u00XX
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == '\u2028' || r == '\u2029' {
			n += 6
		} else {
			n += size
		}
		i += size
	}
	return n
}

// DecodeOutput reverses EncodeOutput.
func DecodeOutput(text, encoding string) ([]byte, error) {
	if encoding == EncodingBase64 {
		return base64.StdEncoding.DecodeString(text)
	}
	return []byte(text), nil
}
