package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
)

// argvTextLimit bounds the JSON text of args and of env (a multipart part,
// a JSON body's field): room for wasmwiz.MaxArgvBytes with quotes, commas
// and escapes. What they hold is counted against the caps as it is read
// (wasmwiz.ArgvBudget).
const argvTextLimit = 2 * wasmwiz.MaxArgvBytes

var (
	errArgsShape = wasmwiz.Errorf(wasmwiz.EINVALID, `args must be a JSON array of strings, e.g. ["-v","x"]`)
	errEnvShape  = wasmwiz.Errorf(wasmwiz.EINVALID, `env must be a JSON object of strings, e.g. {"K":"V"}`)
)

// decodeArgs reads a JSON array of strings (or null) from dec, counting
// each one against b as it comes: a list past a cap is refused at the
// first string over it, never built whole.
func decodeArgs(dec *json.Decoder, b *wasmwiz.ArgvBudget) ([]string, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonReadError(err, errArgsShape)
	}
	if tok == nil {
		return nil, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, errArgsShape
	}
	args := []string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonReadError(err, errArgsShape)
		}
		s, ok := tok.(string)
		if !ok {
			return nil, errArgsShape
		}
		if err := b.AddArg(s); err != nil {
			return nil, err
		}
		args = append(args, s)
	}
	if _, err := dec.Token(); err != nil { // ]
		return nil, jsonReadError(err, errArgsShape)
	}
	return args, nil
}

// decodeEnv reads a JSON object of strings (or null) from dec, counting
// each variable against b as it comes.
func decodeEnv(dec *json.Decoder, b *wasmwiz.ArgvBudget) (map[string]string, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonReadError(err, errEnvShape)
	}
	if tok == nil {
		return nil, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errEnvShape
	}
	env := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonReadError(err, errEnvShape)
		}
		k, _ := tok.(string) // a key is always a string
		if tok, err = dec.Token(); err != nil {
			return nil, jsonReadError(err, errEnvShape)
		}
		v, ok := tok.(string)
		if !ok {
			return nil, errEnvShape
		}
		if err := b.AddEnv(k, v); err != nil {
			return nil, err
		}
		env[k] = v
	}
	if _, err := dec.Token(); err != nil { // }
		return nil, jsonReadError(err, errEnvShape)
	}
	return env, nil
}

// decodeWhole runs decode on a decoder over data and refuses anything
// after the value it read: a multipart field that is one JSON value.
func decodeWhole[T any](data []byte, b *wasmwiz.ArgvBudget, decode func(*json.Decoder, *wasmwiz.ArgvBudget) (T, error), shape error) (T, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	v, err := decode(dec, b)
	if err != nil {
		return v, err
	}
	if _, err := dec.Token(); err != io.EOF {
		var zero T
		return zero, shape
	}
	return v, nil
}

// jsonReadError words a failure to read a JSON token: the body's own
// errors (too large, too slow) as they are, a body cut short or malformed
// as EINVALID, anything else as shape.
func jsonReadError(err, shape error) error {
	var mbe *http.MaxBytesError
	var we *wasmwiz.Error
	var se *json.SyntaxError
	switch {
	case errors.As(err, &mbe):
		return bodyError(err)
	case errors.As(err, &we):
		return we
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return wasmwiz.Errorf(wasmwiz.EINVALID, "invalid JSON body: it ends too soon")
	case errors.As(err, &se):
		return wasmwiz.WrapError(wasmwiz.EINVALID, err, "invalid JSON body: %s", jsonErrorText(err))
	}
	return shape
}

// valueSlack is what a field's cap allows beyond its value's text: the
// colon, whitespace, and the byte after a number that ends it.
const valueSlack = 4 << 10

// cappedReader is a body read by a json.Decoder with a cap that moves: while
// one field's value is read, no further than stop (then err), so that a
// field over its cap is refused when its cap is reached, not when the body's
// is.
type cappedReader struct {
	r    io.Reader
	n    int64 // bytes read so far
	stop int64 // -1: no cap but the body's
	err  error
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.stop >= 0 {
		if c.n >= c.stop {
			return 0, c.err
		}
		if rem := c.stop - c.n; int64(len(p)) > rem {
			p = p[:rem]
		}
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// jsonStream walks a JSON object field by field, each value under a cap.
type jsonStream struct {
	src *cappedReader
	dec *json.Decoder
}

func newJSONStream(r io.Reader) *jsonStream {
	src := &cappedReader{r: r, stop: -1}
	dec := json.NewDecoder(src)
	dec.DisallowUnknownFields() // inside values read with Decode (files)
	return &jsonStream{src: src, dec: dec}
}

// capped runs read, which reads the next value, with at most max bytes of
// value text (and valueSlack) read from the body for it; past it read
// fails with tooBig.
func (s *jsonStream) capped(max int64, tooBig error, read func() error) error {
	buffered := int64(0)
	if b, ok := s.dec.Buffered().(interface{ Len() int }); ok {
		buffered = int64(b.Len())
	}
	s.src.stop, s.src.err = s.src.n-buffered+max+valueSlack, tooBig
	defer func() { s.src.stop, s.src.err = -1, nil }()
	return read()
}

// decode reads the next value into v under a cap, as field name.
func (s *jsonStream) decode(name string, max int64, tooBig error, v any) error {
	return s.capped(max, tooBig, func() error {
		if err := s.dec.Decode(v); err != nil {
			var ute *json.UnmarshalTypeError
			if errors.As(err, &ute) {
				return wasmwiz.Errorf(wasmwiz.EINVALID, "invalid JSON body: field %q must be %s", name, ute.Type)
			}
			return jsonReadError(err, wasmwiz.Errorf(wasmwiz.EINVALID, "invalid JSON body: field %q is malformed", name))
		}
		return nil
	})
}

// base64Len is the length of n bytes in padded standard base64.
func base64Len(n int64) int64 { return (n + 2) / 3 * 4 }

// fieldTooLarge is the refusal of a small field over fieldLimit.
func fieldTooLarge(name string) error {
	return wasmwiz.Errorf(wasmwiz.ETOOLARGE, "field %q is over %s", name, wasmwiz.FormatSize(fieldLimit))
}

// decodeExecuteJSON reads an execute body's JSON object field by field:
// unknown fields, a field given twice and data after the object are
// EINVALID; each field's value is read under its cap (ETOOLARGE past it,
// refused as the cap is reached); args and env are counted against the
// argv caps as they come, files against the tier's max_files.
func decodeExecuteJSON(r io.Reader, limits wasmwiz.Limits, tier string) (*executeJSON, error) {
	s := newJSONStream(r)
	var body executeJSON
	tok, err := s.dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "empty JSON body")
		}
		return nil, jsonReadError(err, errNotObject)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errNotObject
	}
	var argv wasmwiz.ArgvBudget
	seen := map[string]bool{}
	small := func(name string, v any) error { return s.decode(name, fieldLimit, fieldTooLarge(name), v) }
	for s.dec.More() {
		tok, err := s.dec.Token()
		if err != nil {
			return nil, jsonReadError(err, errNotObject)
		}
		name, _ := tok.(string)
		if seen[name] {
			return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "invalid JSON body: field %q given twice", name)
		}
		seen[name] = true
		switch name {
		case "wasm_base64":
			err = s.decode(name, base64Len(limits.MaxModuleBytes), wasmwiz.SizeError("module", -1, limits.MaxModuleBytes, tier), &body.WasmBase64)
		case "stdin":
			// Text: escapes may take more room than the bytes they stand for.
			err = s.decode(name, 2*limits.MaxStdinBytes, wasmwiz.SizeError("stdin", -1, limits.MaxStdinBytes, tier), &body.Stdin)
		case "stdin_base64":
			err = s.decode(name, base64Len(limits.MaxStdinBytes), wasmwiz.SizeError("stdin", -1, limits.MaxStdinBytes, tier), &body.StdinBase64)
		case "archive_base64":
			max := filesAllowance(limits)
			err = s.decode(name, base64Len(max), wasmwiz.Errorf(wasmwiz.ETOOLARGE, "the archive is over the %s limit of the tier's files", wasmwiz.FormatSize(max)), &body.ArchiveBase64)
		case "files":
			body.Files, err = decodeFiles(s, limits)
		case "args":
			err = s.capped(argvTextLimit, wasmwiz.Errorf(wasmwiz.ETOOLARGE, "args are over %s as JSON text", wasmwiz.FormatSize(argvTextLimit)), func() error {
				var err error
				body.Args, err = decodeArgs(s.dec, &argv)
				return err
			})
		case "env":
			err = s.capped(argvTextLimit, wasmwiz.Errorf(wasmwiz.ETOOLARGE, "env is over %s as JSON text", wasmwiz.FormatSize(argvTextLimit)), func() error {
				var err error
				body.Env, err = decodeEnv(s.dec, &argv)
				return err
			})
		case "module_id":
			err = small(name, &body.ModuleID)
		case "name":
			err = small(name, &body.Name)
		case "function":
			err = small(name, &body.Function)
		case "params":
			err = small(name, &body.Params)
		case "timeout":
			err = small(name, &body.Timeout)
		case "memory":
			err = small(name, &body.Memory)
		case "async":
			err = small(name, &body.Async)
		case "callback_url":
			err = small(name, &body.CallbackURL)
		case "mount":
			err = small(name, &body.Mount)
		case "outputs":
			err = small(name, &body.Outputs)
		default:
			return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "invalid JSON body: unknown field %q", name)
		}
		if err != nil {
			return nil, err
		}
	}
	if _, err := s.dec.Token(); err != nil { // }
		return nil, jsonReadError(err, errNotObject)
	}
	if _, err := s.dec.Token(); err != io.EOF {
		if err != nil {
			return nil, jsonReadError(err, errNotObject)
		}
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "invalid JSON body: data after the object")
	}
	return &body, nil
}

var errNotObject = wasmwiz.Errorf(wasmwiz.EINVALID, "invalid JSON body: want one JSON object")

// decodeFiles reads the files array one file at a time: at most the
// tier's max_files of them (refused at the first past it), their text at
// most their content's cap in base64 and 1KiB per file for its path.
func decodeFiles(s *jsonStream, limits wasmwiz.Limits) ([]api.FileIn, error) {
	max := base64Len(limits.MaxFilesInBytes) + limits.MaxFiles*1024
	tooBig := wasmwiz.Errorf(wasmwiz.ETOOLARGE, "the files are over the %s limit (the tier's max_files_in_bytes)", wasmwiz.FormatSize(limits.MaxFilesInBytes))
	shape := wasmwiz.Errorf(wasmwiz.EINVALID, `files must be a JSON array of {"path":…,"content_base64":…}`)
	var files []api.FileIn
	err := s.capped(max, tooBig, func() error {
		tok, err := s.dec.Token()
		if err != nil {
			return jsonReadError(err, shape)
		}
		if tok == nil {
			return nil
		}
		if d, ok := tok.(json.Delim); !ok || d != '[' {
			return shape
		}
		files = []api.FileIn{}
		for s.dec.More() {
			if int64(len(files)) >= limits.MaxFiles {
				return wasmwiz.Errorf(wasmwiz.ETOOLARGE, "more than %d files are sent into the run (the limit of the tier)", limits.MaxFiles)
			}
			var f api.FileIn
			if err := s.dec.Decode(&f); err != nil {
				var ute *json.UnmarshalTypeError
				if errors.As(err, &ute) || strings.HasPrefix(err.Error(), "json: unknown field ") {
					return wasmwiz.WrapError(wasmwiz.EINVALID, err, "invalid JSON body: files[%d]: %s", len(files), jsonErrorText(err))
				}
				return jsonReadError(err, shape)
			}
			files = append(files, f)
		}
		if _, err := s.dec.Token(); err != nil { // ]
			return jsonReadError(err, shape)
		}
		return nil
	})
	return files, err
}
