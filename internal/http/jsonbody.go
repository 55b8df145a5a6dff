package http

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/wasmwiz/wasmwiz"
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
	args := []string{}
	null, err := decodeStrings(dec, '[', errArgsShape, func(_, s string) error {
		if err := b.AddArg(s); err != nil {
			return err
		}
		args = append(args, s)
		return nil
	})
	if null || err != nil {
		return nil, err
	}
	return args, nil
}

// decodeEnv reads a JSON object of strings (or null) from dec, counting
// each variable against b as it comes.
func decodeEnv(dec *json.Decoder, b *wasmwiz.ArgvBudget) (map[string]string, error) {
	env := map[string]string{}
	null, err := decodeStrings(dec, '{', errEnvShape, func(k, v string) error {
		if err := b.AddEnv(k, v); err != nil {
			return err
		}
		env[k] = v
		return nil
	})
	if null || err != nil {
		return nil, err
	}
	return env, nil
}

// decodeStrings reads from dec a JSON array (open '[') or object ('{') of
// strings, or null (null is true), token by token, calling add with each
// string (and, in an object, its key; "" in an array) as it comes. Any
// other shape is the error shape.
func decodeStrings(dec *json.Decoder, open json.Delim, shape error, add func(key, s string) error) (null bool, err error) {
	tok, err := dec.Token()
	if err != nil {
		return false, jsonReadError(err, shape)
	}
	if tok == nil {
		return true, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != open {
		return false, shape
	}
	str := func() (string, error) {
		tok, err := dec.Token()
		if err != nil {
			return "", jsonReadError(err, shape)
		}
		s, ok := tok.(string) // an object's key always is
		if !ok {
			return "", shape
		}
		return s, nil
	}
	for dec.More() {
		var key string
		if open == '{' {
			if key, err = str(); err != nil {
				return false, err
			}
		}
		s, err := str()
		if err != nil {
			return false, err
		}
		if err := add(key, s); err != nil {
			return false, err
		}
	}
	if _, err := dec.Token(); err != nil { // ] or }
		return false, jsonReadError(err, shape)
	}
	return false, nil
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
	var se *json.SyntaxError
	we := wasmwiz.AsError(err)
	switch {
	case errors.As(err, &mbe):
		return bodyError(err)
	case we != nil:
		return we
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		// encoding/json says so when the body ends inside a value and the
		// end came with the read that brought its last bytes.
		errors.As(err, &se) && se.Error() == "unexpected end of JSON input":
		return wasmwiz.Errorf(wasmwiz.EINVALID, "invalid JSON body: it ends too soon")
	case errors.As(err, &se):
		return wasmwiz.WrapError(wasmwiz.EINVALID, err, "invalid JSON body: %s", jsonErrorText(err))
	}
	return shape
}

// smallFields are the execute body's fields decoded whole under fieldLimit,
// each as the pointer into the body that encoding/json fills.
var smallFields = map[string]func(*executeBody) any{
	"module_id":    func(b *executeBody) any { return &b.ModuleID },
	"name":         func(b *executeBody) any { return &b.Name },
	"function":     func(b *executeBody) any { return &b.Function },
	"params":       func(b *executeBody) any { return &b.Params },
	"timeout":      func(b *executeBody) any { return &b.Timeout },
	"memory":       func(b *executeBody) any { return &b.Memory },
	"async":        func(b *executeBody) any { return &b.Async },
	"callback_url": func(b *executeBody) any { return &b.CallbackURL },
	"mount":        func(b *executeBody) any { return &b.Mount },
	"outputs":      func(b *executeBody) any { return &b.Outputs },
}

// valueSlack is what a field's cap allows beyond its value's text: the
// whitespace and the byte after a number that ends it.
const valueSlack = 4 << 10

// cappedReader reads at most stop bytes of r, then fails with err: one
// field's value under its cap.
type cappedReader struct {
	r    io.Reader
	n    int64
	stop int64
	err  error
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.n >= c.stop {
		return 0, c.err
	}
	if rem := c.stop - c.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// pushback is a reader that bytes read too far can be given back to.
type pushback struct {
	pending []byte
	r       io.Reader
}

func (p *pushback) Read(b []byte) (int, error) {
	if len(p.pending) > 0 {
		n := copy(b, p.pending)
		p.pending = p.pending[n:]
		return n, nil
	}
	return p.r.Read(b)
}

// unread puts b back in front of what is still to be read.
func (p *pushback) unread(b []byte) {
	if len(b) > 0 {
		p.pending = append(append([]byte(nil), b...), p.pending...)
	}
}

// readByte reads one byte (io.ErrUnexpectedEOF at the end).
func (p *pushback) readByte() (byte, error) {
	var b [1]byte
	for {
		n, err := p.Read(b[:])
		if n == 1 {
			return b[0], nil
		}
		if err == io.EOF {
			return 0, io.ErrUnexpectedEOF
		}
		if err != nil {
			return 0, err
		}
	}
}

// next skips JSON whitespace and reads the byte after it.
func (p *pushback) next() (byte, error) {
	for {
		c, err := p.readByte()
		if err != nil {
			return 0, err
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c, nil
	}
}

// jsonObject walks the top-level object of a JSON body field by field: the
// big base64 fields are decoded as they stream (never held as text), every
// other value is read by a json.Decoder of its own under the field's cap.
type jsonObject struct {
	src *pushback
	// left is how much of the body's declared length no base64 value has
	// taken yet (-1: no length declared): a value is decoded into a buffer
	// of the size it can have, not one grown by doubling.
	left int64
}

func newJSONObject(r io.Reader, length int64) *jsonObject {
	return &jsonObject{src: &pushback{r: bufio.NewReaderSize(r, 32<<10)}, left: length}
}

// syntaxError is a malformed body.
func syntaxError(what string) error {
	return wasmwiz.Errorf(wasmwiz.EINVALID, "invalid JSON body: %s", what)
}

// readError words a failure to read the body's structure.
func (o *jsonObject) readError(err error) error {
	return jsonReadError(err, syntaxError("malformed"))
}

// key reads the next field's name, and the colon after it; ok is false at
// the object's end.
func (o *jsonObject) key(first bool) (name string, ok bool, err error) {
	c, err := o.src.next()
	if err != nil {
		return "", false, o.readError(err)
	}
	if c == '}' && first {
		return "", false, nil
	}
	if !first {
		switch c {
		case '}':
			return "", false, nil
		case ',':
			if c, err = o.src.next(); err != nil {
				return "", false, o.readError(err)
			}
		default:
			return "", false, syntaxError("want , or } after a field")
		}
	}
	if c != '"' {
		return "", false, syntaxError("want a field name")
	}
	// A name is short: the longest known one is 14 bytes.
	raw := []byte{'"'}
	for escaped := false; ; {
		c, err := o.src.readByte()
		if err != nil {
			return "", false, o.readError(err)
		}
		raw = append(raw, c)
		if len(raw) > 256 {
			return "", false, syntaxError("a field name over 256 bytes")
		}
		if c == '"' && !escaped {
			break
		}
		escaped = c == '\\' && !escaped
	}
	if err := json.Unmarshal(raw, &name); err != nil {
		return "", false, syntaxError("a malformed field name")
	}
	if c, err := o.src.next(); err != nil {
		return "", false, o.readError(err)
	} else if c != ':' {
		return "", false, syntaxError("want : after a field name")
	}
	return name, true, nil
}

// fields walks the members of an object whose '{' was read: it reads each
// member's name and colon and calls value, which reads the value.
func (o *jsonObject) fields(value func(name string) error) error {
	for first := true; ; first = false {
		name, ok, err := o.key(first)
		if err != nil || !ok {
			return err
		}
		if err := value(name); err != nil {
			return err
		}
	}
}

// value reads the next value with read, given a json.Decoder of its own
// over at most max bytes (and valueSlack) of the body; past them read fails
// with tooBig. What the decoder read beyond the value is given back.
func (o *jsonObject) value(max int64, tooBig error, read func(dec *json.Decoder) error) error {
	dec := json.NewDecoder(&cappedReader{r: o.src, stop: max + valueSlack, err: tooBig})
	dec.DisallowUnknownFields() // inside values read with Decode (files)
	err := read(dec)
	rest, _ := io.ReadAll(dec.Buffered())
	o.src.unread(rest)
	return err
}

// decode reads the next value into v under a cap, as field name.
func (o *jsonObject) decode(name string, max int64, tooBig error, v any) error {
	return o.value(max, tooBig, func(dec *json.Decoder) error {
		if err := dec.Decode(v); err != nil {
			var ute *json.UnmarshalTypeError
			if errors.As(err, &ute) {
				return wasmwiz.Errorf(wasmwiz.EINVALID, "invalid JSON body: field %q must be %s", name, ute.Type)
			}
			return jsonReadError(err, wasmwiz.Errorf(wasmwiz.EINVALID, "invalid JSON body: field %q is malformed", name))
		}
		return nil
	})
}

// stringStart reads the start of the next value, which must be a JSON
// string (its opening quote is consumed) or null (consumed whole: null is
// true).
func (o *jsonObject) stringStart(name string) (null bool, err error) {
	return o.valueStart('"', wasmwiz.Errorf(wasmwiz.EINVALID, "invalid JSON body: field %q must be string", name))
}

// valueStart reads the start of the next value, which must be the byte open
// (consumed) or null (consumed whole: null is true); anything else is the
// error wrong.
func (o *jsonObject) valueStart(open byte, wrong error) (null bool, err error) {
	c, err := o.src.next()
	if err != nil {
		return false, o.readError(err)
	}
	if c == 'n' {
		var rest [3]byte
		if _, err := io.ReadFull(o.src, rest[:]); err != nil || string(rest[:]) != "ull" {
			return false, wrong
		}
		return true, nil
	}
	if c != open {
		return false, wrong
	}
	return false, nil
}

// base64Value decodes the next value, a JSON string of standard base64 (or
// null), as it streams, into at most limit bytes: past them, tooBig. given
// is false for null and for "".
func (o *jsonObject) base64Value(name string, limit int64, tooBig error) (data []byte, given bool, err error) {
	if null, err := o.stringStart(name); err != nil || null {
		return nil, false, err
	}
	text := &jsonStringReader{src: o.src}
	var buf bytes.Buffer
	if o.left > 0 {
		buf.Grow(int(min(limit+1, o.left/4*3+3)))
	}
	n, err := io.Copy(&buf, io.LimitReader(base64.NewDecoder(base64.StdEncoding, &endsAtPadding{r: text}), limit+1))
	if o.left > 0 {
		o.left = max(o.left-text.n, 0)
	}
	switch {
	case err != nil && text.err != nil:
		return nil, false, jsonReadError(text.err, syntaxError("field "+strconv.Quote(name)+" is malformed"))
	case err != nil:
		return nil, false, wasmwiz.Errorf(wasmwiz.EINVALID, "%s is not valid base64", name)
	case n > limit:
		return nil, false, tooBig
	}
	// The decoder stops at the padding: the string must end there.
	if rest, err := io.Copy(io.Discard, text); err != nil {
		return nil, false, jsonReadError(err, syntaxError("field "+strconv.Quote(name)+" is malformed"))
	} else if rest > 0 {
		return nil, false, wasmwiz.Errorf(wasmwiz.EINVALID, "%s is not valid base64", name)
	}
	return buf.Bytes(), text.n > 0, nil
}

// endsAtPadding refuses base64 text that goes on after its padding: the
// standard library's stream decoder decodes each read's text alone, so
// "AGFzbQEAAAA=" and "AAAA" arriving in two reads would pass.
type endsAtPadding struct {
	r      io.Reader
	padded bool
}

var errAfterPadding = errors.New("base64 text after its padding")

func (e *endsAtPadding) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	for _, c := range p[:n] {
		switch {
		case c == '=':
			e.padded = true
		case e.padded:
			return 0, errAfterPadding
		}
	}
	return n, err
}

// textValue decodes the next value, a JSON string (or null), as it
// streams, into at most limit bytes (past them, tooBig): the bytes
// encoding/json would give for it, invalid UTF-8 and lone surrogates
// replaced with U+FFFD. given is false for null.
func (o *jsonObject) textValue(name string, limit int64, tooBig error) (data []byte, given bool, err error) {
	if null, err := o.stringStart(name); err != nil || null {
		return nil, false, err
	}
	out := []byte{}
	if o.left > 0 {
		out = make([]byte, 0, min(limit+1, o.left))
	}
	buf := make([]byte, 0, 32<<10)
	eof := false
	for {
		// buf holds what is not decoded yet: at most an escape or a
		// character cut by the end of a read.
		if !eof {
			n, err := o.src.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err == io.EOF {
				eof = true
			} else if err != nil {
				return nil, false, o.readError(err)
			}
		}
		i, done, err := unquoteSome(&out, buf, eof)
		if o.left > 0 {
			o.left = max(o.left-int64(i), 0)
		}
		if err != nil {
			return nil, false, err
		}
		if int64(len(out)) > limit {
			return nil, false, tooBig
		}
		if done {
			o.src.unread(buf[i:])
			return out, true, nil
		}
		if eof && i == 0 {
			return nil, false, o.readError(io.ErrUnexpectedEOF)
		}
		buf = append(buf[:0], buf[i:]...)
	}
}

// unquoteSome decodes the start of buf, the content of a JSON string, onto
// out, as encoding/json does, and returns how much of buf it used: it stops
// before an escape or a UTF-8 character that buf holds only part of
// (unless eof), and after the closing quote (done).
func unquoteSome(out *[]byte, buf []byte, eof bool) (used int, done bool, err error) {
	i := 0
	for i < len(buf) {
		c := buf[i]
		switch {
		case c == '"':
			return i + 1, true, nil
		case c < 0x20:
			return i, false, syntaxError("a control character in a string")
		case c < utf8.RuneSelf && c != '\\':
			*out = append(*out, c)
			i++
		case c == '\\':
			if i+1 >= len(buf) {
				return i, false, nil
			}
			switch e := buf[i+1]; e {
			case '"', '\\', '/':
				*out, i = append(*out, e), i+2
			case 'b':
				*out, i = append(*out, '\b'), i+2
			case 'f':
				*out, i = append(*out, '\f'), i+2
			case 'n':
				*out, i = append(*out, '\n'), i+2
			case 'r':
				*out, i = append(*out, '\r'), i+2
			case 't':
				*out, i = append(*out, '\t'), i+2
			case 'u':
				if i+6 > len(buf) {
					if eof {
						return i, false, syntaxError("an invalid escape in a string")
					}
					return i, false, nil
				}
				r := hex4(buf[i+2 : i+6])
				if r < 0 {
					return i, false, syntaxError("an invalid escape in a string")
				}
				if utf16.IsSurrogate(r) {
					// A pair is two escapes; wait for the second unless
					// what follows cannot be one.
					if i+12 > len(buf) && !eof && bytes.HasPrefix([]byte("\\u"), buf[i+6:min(i+8, len(buf))]) {
						return i, false, nil
					}
					if i+12 <= len(buf) && buf[i+6] == '\\' && buf[i+7] == 'u' {
						if r2 := hex4(buf[i+8 : i+12]); r2 >= 0 {
							if d := utf16.DecodeRune(r, r2); d != unicode.ReplacementChar {
								*out = utf8.AppendRune(*out, d)
								i += 12
								continue
							}
						}
					}
					r = unicode.ReplacementChar
				}
				*out = utf8.AppendRune(*out, r)
				i += 6
			default:
				return i, false, syntaxError("an invalid escape in a string")
			}
		default:
			if !utf8.FullRune(buf[i:]) && !eof {
				return i, false, nil
			}
			r, size := utf8.DecodeRune(buf[i:])
			if r == utf8.RuneError && size == 1 {
				*out = utf8.AppendRune(*out, unicode.ReplacementChar)
			} else {
				*out = append(*out, buf[i:i+size]...)
			}
			i += size
		}
	}
	return i, false, nil
}

// hex4 reads four hex digits, -1 when they are not.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// jsonStringReader yields the content of a JSON string whose opening quote
// was read, up to its closing quote, which it consumes; the one escape
// base64 text may carry (\/) is undone, any other is an error.
type jsonStringReader struct {
	src  *pushback
	n    int64 // content bytes yielded
	done bool
	err  error // a read error of the body, or a malformed string
}

func (s *jsonStringReader) Read(p []byte) (int, error) {
	if s.done {
		return 0, io.EOF
	}
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.src.Read(p)
	for i := 0; i < n; i++ {
		switch c := p[i]; {
		case c == '"':
			s.src.unread(p[i+1 : n])
			s.done = true
			s.n += int64(i)
			return i, nil
		case c == '\\':
			// Give back what follows and yield what came before.
			s.src.unread(p[i:n])
			if i > 0 {
				s.n += int64(i)
				return i, nil
			}
			esc := make([]byte, 2)
			if _, err := io.ReadFull(s.src, esc); err != nil || esc[1] != '/' {
				s.err = syntaxError("a base64 string with an escape other than \\/")
				return 0, s.err
			}
			p[0] = '/'
			s.n++
			return 1, nil
		case c < 0x20:
			s.err = syntaxError("a control character in a string")
			return 0, s.err
		}
	}
	s.n += int64(n)
	if err == io.EOF {
		s.err = io.ErrUnexpectedEOF
		return n, nil
	}
	if err != nil {
		s.err = err
	}
	return n, nil
}

// fieldTooLarge is the refusal of a small field over fieldLimit.
func fieldTooLarge(name string) error {
	return wasmwiz.Errorf(wasmwiz.ETOOLARGE, "field %q is over %s", name, wasmwiz.FormatSize(fieldLimit))
}

// executeBody is a JSON execute body as read: the small fields as sent,
// the base64 ones decoded (the ExecuteRequest's strings stay empty).
type executeBody struct {
	executeJSON
	files                         []wasmwiz.FileEntry // decoded; executeJSON.Files stays empty
	stdinText                     []byte              // stdin sent as text, decoded; executeJSON.Stdin stays nil
	hasStdinText                  bool                // stdin given, and not null
	wasm, stdin, archive          []byte
	hasWasm, hasStdin, hasArchive bool // given, and not ""
}

// decodeExecuteJSON reads an execute body's JSON object (of declared
// length, or -1) field by field:
// unknown fields, a field given twice and data after the object are
// EINVALID; each field's value is read under its cap (ETOOLARGE past it,
// refused as the cap is reached): the module, stdin and archive decoded
// from base64 as they stream, within the tier's sizes; args and env
// counted against the argv caps as they come, files against the tier's
// max_files.
func decodeExecuteJSON(r io.Reader, length int64, limits wasmwiz.Limits, tier string) (*executeBody, error) {
	o := newJSONObject(r, length)
	c, err := o.src.next()
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "empty JSON body")
		}
		return nil, o.readError(err)
	}
	if c != '{' {
		return nil, errNotObject
	}
	var body executeBody
	var argv wasmwiz.ArgvBudget
	seen := map[string]bool{}
	small := func(name string, v any) error { return o.decode(name, fieldLimit, fieldTooLarge(name), v) }
	err = o.fields(func(name string) error {
		if seen[name] {
			return wasmwiz.Errorf(wasmwiz.EINVALID, "invalid JSON body: field %q given twice", name)
		}
		seen[name] = true
		var err error
		switch name {
		case "wasm_base64":
			body.wasm, body.hasWasm, err = o.base64Value(name, limits.MaxModuleBytes, wasmwiz.SizeError("module", -1, limits.MaxModuleBytes, tier))
		case "stdin_base64":
			body.stdin, body.hasStdin, err = o.base64Value(name, limits.MaxStdinBytes, wasmwiz.SizeError("stdin", -1, limits.MaxStdinBytes, tier))
		case "archive_base64":
			max := filesAllowance(limits)
			body.archive, body.hasArchive, err = o.base64Value(name, max,
				wasmwiz.Errorf(wasmwiz.ETOOLARGE, "the archive is over the %s limit of the tier's files", wasmwiz.FormatSize(max)))
		case "stdin":
			body.stdinText, body.hasStdinText, err = o.textValue(name, limits.MaxStdinBytes, wasmwiz.SizeError("stdin", -1, limits.MaxStdinBytes, tier))
		case "files":
			body.files, err = decodeFiles(o, limits)
		case "args":
			err = o.value(argvTextLimit, wasmwiz.Errorf(wasmwiz.ETOOLARGE, "args are over %s as JSON text", wasmwiz.FormatSize(argvTextLimit)), func(dec *json.Decoder) error {
				var err error
				body.Args, err = decodeArgs(dec, &argv)
				return err
			})
		case "env":
			err = o.value(argvTextLimit, wasmwiz.Errorf(wasmwiz.ETOOLARGE, "env is over %s as JSON text", wasmwiz.FormatSize(argvTextLimit)), func(dec *json.Decoder) error {
				var err error
				body.Env, err = decodeEnv(dec, &argv)
				return err
			})
		default:
			field, ok := smallFields[name]
			if !ok {
				return wasmwiz.Errorf(wasmwiz.EINVALID, "invalid JSON body: unknown field %q", name)
			}
			err = small(name, field(&body))
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	// Only whitespace after the object, read to the end: the body's limit
	// applies to it too.
	if _, err := o.src.next(); err == nil {
		return nil, syntaxError("data after the object")
	} else if !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, o.readError(err)
	}
	return &body, nil
}

var errNotObject = wasmwiz.Errorf(wasmwiz.EINVALID, "invalid JSON body: want one JSON object")

// decodeFiles reads the files array one file at a time, by hand: each
// file's content decoded from base64 as it streams, within what the tier's
// max_files_in_bytes leaves; at most max_files files (refused at the first
// past it); a path at most 4KiB. Unknown members of a file are EINVALID.
func decodeFiles(o *jsonObject, limits wasmwiz.Limits) ([]wasmwiz.FileEntry, error) {
	tooBig := wasmwiz.Errorf(wasmwiz.ETOOLARGE, "the files are over the %s limit (the tier's max_files_in_bytes)", wasmwiz.FormatSize(limits.MaxFilesInBytes))
	shape := wasmwiz.Errorf(wasmwiz.EINVALID, `files must be a JSON array of {"path":…,"content_base64":…}`)
	if null, err := o.valueStart('[', shape); err != nil || null {
		return nil, err
	}
	var files []wasmwiz.FileEntry
	used := int64(0)
	for i := 0; ; i++ {
		c, err := o.src.next()
		if err != nil {
			return nil, o.readError(err)
		}
		if c == ']' && i == 0 {
			return files, nil
		}
		if i > 0 {
			if c == ']' {
				return files, nil
			}
			if c != ',' {
				return nil, syntaxError("want , or ] after a file")
			}
			if c, err = o.src.next(); err != nil {
				return nil, o.readError(err)
			}
		}
		if c != '{' {
			return nil, shape
		}
		if int64(i) >= limits.MaxFiles {
			return nil, wasmwiz.Errorf(wasmwiz.ETOOLARGE, "more than %d files are sent into the run (the limit of the tier)", limits.MaxFiles)
		}
		var f wasmwiz.FileEntry
		var hasPath, hasContent bool
		err = o.fields(func(name string) error {
			var err error
			switch {
			case name == "path" && !hasPath:
				hasPath = true
				err = o.decode("files[].path", 4<<10, wasmwiz.Errorf(wasmwiz.ETOOLARGE, "files[%d].path is over 4KiB", i), &f.Path)
			case name == "content_base64" && !hasContent:
				hasContent = true
				f.Data, _, err = o.base64Value(fmt.Sprintf("files[%d].content_base64", i), limits.MaxFilesInBytes-used, tooBig)
				if f.Data == nil {
					f.Data = []byte{}
				}
				used += int64(len(f.Data))
			case name == "path", name == "content_base64":
				return wasmwiz.Errorf(wasmwiz.EINVALID, "invalid JSON body: files[%d]: field %q given twice", i, name)
			default:
				return wasmwiz.Errorf(wasmwiz.EINVALID, "invalid JSON body: files[%d]: unknown field %q", i, name)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		if f.Path == "" {
			return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "files[%d] has no path", i)
		}
		files = append(files, f)
	}
}
