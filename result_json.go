package wasmwiz

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// Output encodings in the JSON result shape.
const (
	EncodingUTF8   = "utf-8"
	EncodingBase64 = "base64"
)

// resultJSON is the one result shape shared by `wasmwiz run --json`, the REST
// API and the Go client.
type resultJSON struct {
	ID              string      `json:"id,omitempty"`
	Status          Status      `json:"status"`
	ExitCode        *int        `json:"exit_code"` // null when the guest did not exit (Status.Exited)
	Stdout          string      `json:"stdout"`
	StdoutEncoding  string      `json:"stdout_encoding"`
	StdoutTruncated bool        `json:"stdout_truncated"`
	Stderr          string      `json:"stderr"`
	StderrEncoding  string      `json:"stderr_encoding"`
	StderrTruncated bool        `json:"stderr_truncated"`
	Trap            string      `json:"trap,omitempty"`
	Results         []valueJSON `json:"results"`
	DurationMS      float64     `json:"duration_ms"`
	CompileMS       float64     `json:"compile_ms"`
	MemoryPeakBytes int64       `json:"memory_peak_bytes"`
	Module          ModuleInfo  `json:"module"`
	CompileCached   bool        `json:"compile_cached"`
}

type valueJSON struct {
	Type  string          `json:"type"`
	Value json.RawMessage `json:"value"`
}

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

// ResultJSON is a Result with the run's id, in the JSON shape of the API.
type ResultJSON struct {
	ID string
	*Result
}

// MarshalJSON writes the result in the shared JSON shape.
func (r ResultJSON) MarshalJSON() ([]byte, error) {
	j := resultJSON{
		ID:              r.ID,
		Status:          r.Status,
		ExitCode:        r.Status.exitCode(r.ExitCode),
		StdoutTruncated: r.StdoutTruncated,
		StderrTruncated: r.StderrTruncated,
		Trap:            r.Trap,
		Results:         []valueJSON{},
		DurationMS:      math.Round(float64(r.Duration.Microseconds())) / 1000,
		CompileMS:       math.Round(float64(r.CompileDuration.Microseconds())) / 1000,
		MemoryPeakBytes: r.MemoryPeakBytes,
		Module:          r.Module,
		CompileCached:   r.CompileCached,
	}
	j.Stdout, j.StdoutEncoding = EncodeOutput(r.Stdout)
	j.Stderr, j.StderrEncoding = EncodeOutput(r.Stderr)
	for _, v := range r.Results {
		raw, err := v.MarshalJSON()
		if err != nil {
			return nil, err
		}
		j.Results = append(j.Results, valueJSON{Type: v.Type, Value: raw})
	}
	// Without HTML escaping: <, > and & as themselves, not six bytes each,
	// so that markup a guest prints stays text of about its own size
	// (EncodeOutput). Write the answer with HTML escaping off too, or it is
	// applied again.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(j); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// UnmarshalJSON reads the shared JSON shape.
func (r *ResultJSON) UnmarshalJSON(data []byte) error {
	var j resultJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	res := &Result{
		Status:          j.Status,
		StdoutTruncated: j.StdoutTruncated,
		StderrTruncated: j.StderrTruncated,
		Trap:            j.Trap,
		Duration:        time.Duration(j.DurationMS * float64(time.Millisecond)),
		CompileDuration: time.Duration(j.CompileMS * float64(time.Millisecond)),
		MemoryPeakBytes: j.MemoryPeakBytes,
		Module:          j.Module,
		CompileCached:   j.CompileCached,
	}
	if j.ExitCode != nil {
		res.ExitCode = *j.ExitCode
	}
	var err error
	if res.Stdout, err = DecodeOutput(j.Stdout, j.StdoutEncoding); err != nil {
		return err
	}
	if res.Stderr, err = DecodeOutput(j.Stderr, j.StderrEncoding); err != nil {
		return err
	}
	for _, v := range j.Results {
		val, err := parseValueJSON(v)
		if err != nil {
			return err
		}
		res.Results = append(res.Results, val)
	}
	r.ID, r.Result = j.ID, res
	return nil
}

func parseValueJSON(v valueJSON) (Value, error) {
	var s string
	if err := json.Unmarshal(v.Value, &s); err != nil {
		s = string(v.Value) // a number
	}
	return ParseValue(v.Type, s)
}

// ParseValue parses a decimal number (for floats also "nan", "inf", "-inf")
// as a wasm value of type typ, with range checks. It returns EINVALID.
func ParseValue(typ, s string) (Value, error) {
	switch typ {
	case "i32":
		if n, err := strconv.ParseInt(s, 10, 32); err == nil {
			return Value{Type: typ, Bits: uint64(uint32(int32(n)))}, nil
		}
		if n, err := strconv.ParseUint(s, 10, 32); err == nil {
			return Value{Type: typ, Bits: n}, nil
		}
	case "i64":
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return Value{Type: typ, Bits: uint64(n)}, nil
		}
		if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			return Value{Type: typ, Bits: n}, nil
		}
	case "f32":
		if f, err := strconv.ParseFloat(s, 32); err == nil {
			return Value{Type: typ, Bits: uint64(math.Float32bits(float32(f)))}, nil
		}
	case "f64":
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return Value{Type: typ, Bits: math.Float64bits(f)}, nil
		}
	default:
		return Value{}, Errorf(EINVALID, "unsupported value type %q", typ)
	}
	return Value{}, Errorf(EINVALID, "%q is not a valid %s", s, typ)
}
