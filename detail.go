package wasmwiz

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// AppendJSON appends d as json.Marshal encodes it, byte for byte but for
// invalid UTF-8, whose replacement it writes as the escape \ufffd (as
// json.Marshal did up to Go 1.26; from Go 1.27 it writes the character
// U+FFFD itself: the same string to any reader), and returns the extended
// buffer. The stores keep every run's detail as this
// document; encoding/json spent more CPU on it (reflection, and sorting the
// Limits map's keys through reflect values) than SQLite did storing the
// row. A field added to RunDetail must be added here too: a test compares
// the two encodings over every field. EINVALID when CPUMS is not a finite
// number, which JSON cannot hold.
func (d *RunDetail) AppendJSON(b []byte) ([]byte, error) {
	if math.IsNaN(d.CPUMS) || math.IsInf(d.CPUMS, 0) {
		return b, Errorf(EINVALID, "run detail: cpu_ms %v is not a JSON number", d.CPUMS)
	}
	b = append(b, `{"async":`...)
	b = strconv.AppendBool(b, d.Async)
	if d.Name != "" {
		b = appendJSONString(append(b, `,"name":`...), d.Name)
	}
	b = appendJSONStrings(append(b, `,"args":`...), d.Args)
	b = appendJSONStrings(append(b, `,"env_names":`...), d.EnvNames)
	if d.Function != "" {
		b = appendJSONString(append(b, `,"function":`...), d.Function)
	}
	if len(d.Params) > 0 {
		b = appendJSONStrings(append(b, `,"params":`...), d.Params)
	}
	if d.StdinSHA256 != "" {
		b = appendJSONString(append(b, `,"stdin_sha256":`...), d.StdinSHA256)
	}
	if len(d.Limits) > 0 {
		b = appendJSONLimits(append(b, `,"limits":`...), d.Limits)
	}
	b = appendJSONFloat(append(b, `,"cpu_ms":`...), d.CPUMS)
	if d.Trap != "" {
		b = appendJSONString(append(b, `,"trap":`...), d.Trap)
	}
	if len(d.Results) > 0 {
		b = append(b, `,"results":[`...)
		for i, v := range d.Results {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(append(b, `{"type":`...), v.Type)
			b = appendJSONString(append(b, `,"value":`...), v.Value)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = strconv.AppendBool(append(b, `,"stdout_truncated":`...), d.StdoutTruncated)
	b = strconv.AppendBool(append(b, `,"stderr_truncated":`...), d.StderrTruncated)
	if d.DetailTruncated {
		b = append(b, `,"detail_truncated":true`...)
	}
	if d.Message != "" {
		b = appendJSONString(append(b, `,"message":`...), d.Message)
	}
	if d.CallbackURL != "" {
		b = appendJSONString(append(b, `,"callback_url":`...), d.CallbackURL)
	}
	return append(b, '}'), nil
}

// appendJSONStrings appends ss as a JSON array, null when ss is nil (as
// json.Marshal writes a nil slice).
func appendJSONStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// appendJSONLimits appends m as a JSON object with its keys sorted, as
// json.Marshal writes a map.
func appendJSONLimits(b []byte, m map[string]int64) []byte {
	type limit struct {
		name  string
		value int64
	}
	var buf [16]limit // a run's limits fit: no allocation to sort them
	limits := buf[:0]
	for k, v := range m {
		limits = append(limits, limit{k, v})
	}
	slices.SortFunc(limits, func(a, b limit) int { return strings.Compare(a.name, b.name) })
	b = append(b, '{')
	for i, l := range limits {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(appendJSONString(b, l.name), ':')
		b = strconv.AppendInt(b, l.value, 10)
	}
	return append(b, '}')
}

// appendJSONFloat appends a finite f as json.Marshal writes a float64: the
// shortest representation, in exponent form below 1e-6 and from 1e21, with
// the exponent's leading zero dropped.
func appendJSONFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const lowerHex = "0123456789abcdef"

// appendJSONString appends s quoted as json.Marshal quotes a string: <, >
// and & escaped as for HTML, control characters escaped, invalid UTF-8
// replaced by U+FFFD, and U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', lowerHex[c>>4], lowerHex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', lowerHex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
