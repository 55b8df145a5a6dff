package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"

	"github.com/wasmwiz/wasmwiz"
)

// Body limits beyond a tier's module and stdin sizes.
const (
	bodyOverhead   = 1 << 20  // multipart framing, args, env and other fields
	smallBodyLimit = 1 << 20  // every body that carries no module or stdin
	fieldLimit     = 64 << 10 // one multipart field that is neither module nor stdin
)

// limitBody bounds r's body to limit bytes while it streams: a declared
// Content-Length over the limit is refused before anything is read, and a
// longer body fails its read at the limit (http.MaxBytesError → 413).
func limitBody(w http.ResponseWriter, r *http.Request, limit int64) error {
	if r.ContentLength > limit {
		return wasmwiz.Errorf(wasmwiz.ETOOLARGE, "request body is %s, over the %s limit",
			wasmwiz.FormatSize(r.ContentLength), wasmwiz.FormatSize(limit))
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	return nil
}

// mediaType returns the request's media type, lower-cased, without parameters.
func mediaType(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(strings.Split(ct, ";")[0]))
	}
	return mt
}

// readAll reads r's body, bounded by limitBody; a body over its limit is
// ETOOLARGE. A declared length (within the limit, limitBody checked) sizes
// the buffer at once, instead of growing it by doubling.
func readAll(r *http.Request) ([]byte, error) {
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(r.Body); err != nil {
		return nil, bodyError(err)
	}
	return buf.Bytes(), nil
}

// bodyError maps a body read failure to a coded error.
func bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return wasmwiz.WrapError(wasmwiz.ETOOLARGE, err, "request body is larger than %s", wasmwiz.FormatSize(mbe.Limit))
	}
	if we := wasmwiz.AsError(err); we != nil {
		return we
	}
	return wasmwiz.WrapError(wasmwiz.EINVALID, err, "cannot read the request body")
}

// decodeSmallJSON decodes the JSON body of a request that carries no module
// or stdin into v, as decodeJSON, bounded by smallBodyLimit.
func decodeSmallJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if err := limitBody(w, r, smallBodyLimit); err != nil {
		return err
	}
	return decodeJSON(r.Body, v)
}

// decodeJSON decodes a bounded JSON body into v, refusing unknown fields and
// trailing data.
func decodeJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return bodyError(err)
		}
		if errors.Is(err, io.EOF) {
			return wasmwiz.Errorf(wasmwiz.EINVALID, "empty JSON body")
		}
		if we := wasmwiz.AsError(err); we != nil {
			return we // a field's own coded message, e.g. a bad size string
		}
		return wasmwiz.WrapError(wasmwiz.EINVALID, err, "invalid JSON body: %s", jsonErrorText(err))
	}
	if dec.More() {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "invalid JSON body: data after the object")
	}
	// Drain the rest so that trailing whitespace over the limit is still caught.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return bodyError(err)
	}
	return nil
}

func jsonErrorText(err error) string {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		return "field " + strconv.Quote(ute.Field) + " must be " + ute.Type.String()
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return "syntax error at byte " + strconv.FormatInt(se.Offset, 10)
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "json: unknown field ") {
		return "unknown field " + strings.TrimPrefix(msg, "json: unknown field ")
	}
	return "malformed"
}

// formPart is one part of a multipart body the handler asked for.
type formPart struct {
	data     []byte
	filename string     // the base name, as Part.FileName gives it
	path     string     // the filename parameter as sent: a guest path for a "file" part
	more     []formPart // the parts after the first, for a repeated field
}

// partLimits names the multipart parts a route accepts and each one's cap,
// with the error message for a part over its cap.
type partLimit struct {
	max     int64
	tooBig  string // message for ETOOLARGE
	aliasOf string // the canonical name this part is read as
	// repeated: the field may come more than once, up to maxCount times and
	// total bytes in all (ETOOLARGE past either, with tooBig's message).
	repeated bool
	maxCount int64
	total    int64
}

// readMultipart reads a multipart body part by part into bounded memory:
// nothing is written to temporary files. Parts not in limits are EINVALID
// unless ignoreUnknown, when they are read (bounded) and dropped.
func readMultipart(r *http.Request, limits map[string]partLimit, ignoreUnknown bool) (map[string]formPart, error) {
	body := &countingBody{ReadCloser: r.Body}
	r.Body = body
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, wasmwiz.WrapError(wasmwiz.EINVALID, err, "invalid multipart body")
	}
	parts := map[string]formPart{}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			// Read what follows the last boundary (bounded by the body's
			// limit): a body read to its end lets the server notice a
			// client that goes away during the run, and keeps the
			// connection for the next request.
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				return nil, multipartError(err)
			}
			return parts, nil
		}
		if err != nil {
			return nil, multipartError(err)
		}
		name := p.FormName()
		lim, ok := limits[name]
		if !ok {
			if !ignoreUnknown {
				return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "unknown form field %q", name)
			}
			n, err := io.Copy(io.Discard, io.LimitReader(p, fieldLimit+1))
			if err != nil {
				return nil, multipartError(err)
			}
			if n > fieldLimit {
				return nil, wasmwiz.Errorf(wasmwiz.ETOOLARGE, "form field %q is over 64KiB", name)
			}
			continue
		}
		canonical := name
		if lim.aliasOf != "" {
			canonical = lim.aliasOf
		}
		first, dup := parts[canonical]
		if dup && !lim.repeated {
			return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "form field %q given twice", canonical)
		}
		max := lim.max
		if lim.repeated {
			count, used := int64(0), int64(0)
			if dup {
				count, used = 1+int64(len(first.more)), int64(len(first.data))
				for _, m := range first.more {
					used += int64(len(m.data))
				}
			}
			if count+1 > lim.maxCount {
				return nil, wasmwiz.Errorf(wasmwiz.ETOOLARGE, "%s", lim.tooBig)
			}
			max = min(max, lim.total-used)
		}
		left := int64(-1) // what is left of a body of declared length bounds the part
		if r.ContentLength >= 0 {
			left = r.ContentLength - body.n + multipartReadAhead
		}
		data, err := readPart(p, max, left)
		if err != nil {
			return nil, multipartError(err)
		}
		if int64(len(data)) > max {
			// Not Close: it would drain the rest of the part.
			return nil, wasmwiz.Errorf(wasmwiz.ETOOLARGE, "%s", lim.tooBig)
		}
		part := formPart{data: data, filename: p.FileName(), path: rawFileName(p)}
		if dup {
			first.more = append(first.more, part)
			parts[canonical] = first
		} else {
			parts[canonical] = part
		}
	}
}

// countingBody counts the bytes read from a request body.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

// multipartReadAhead bounds how far mime/multipart reads the body ahead of
// the part it returns (its buffer of 4 KiB), with room to spare.
const multipartReadAhead = 8 << 10

// partFirstBytes is what readPart reads before it decides how to hold a part.
const partFirstBytes = 64 << 10

// readPart reads a part of at most limit bytes (limit+1 are read, to tell a
// part over it) into about its own size in memory. io.ReadAll grows
// its buffer by copying, and at the end of a large part held about twice
// the part, past the body's size that the body gate counted for it. Here a
// part longer than partFirstBytes is read into one buffer sized by left,
// what remains of a body of declared length (negative: not declared, and
// io.ReadAll as before: a chunked body is counted at its route's cap), and
// trimmed to the part when the rest of the body was much longer.
func readPart(p io.Reader, limit, left int64) ([]byte, error) {
	lr := io.LimitReader(p, limit+1)
	first := make([]byte, min(limit+1, partFirstBytes))
	n, err := io.ReadFull(lr, first)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return first[:n], nil // the whole part
	}
	if err != nil {
		return nil, err
	}
	if left < 0 {
		return io.ReadAll(io.MultiReader(bytes.NewReader(first), lr))
	}
	buf := make([]byte, n, max(int64(n), min(limit+1, left)))
	copy(buf, first)
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > limit {
				break // over the limit: the caller says so
			}
			// A body longer than it said: net/http does not let one
			// through, but grow rather than fail.
			buf = append(buf, 0)[:len(buf)]
		}
		m, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if spare := cap(buf) - len(buf); spare > partFirstBytes && spare > len(buf)/8 {
		buf = bytes.Clone(buf) // the rest of the body was another part's
	}
	return buf, nil
}

// all returns a repeated field's parts in the order they came.
func (p formPart) all() []formPart {
	if p.data == nil && p.path == "" && p.filename == "" && p.more == nil {
		return nil
	}
	return append([]formPart{{data: p.data, filename: p.filename, path: p.path}}, p.more...)
}

// rawFileName returns a part's filename parameter as sent: Part.FileName
// keeps the base name only, and a "file" part's filename is a guest path
// ("data/in.csv").
func rawFileName(p *multipart.Part) string {
	_, params, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
	if err != nil {
		return ""
	}
	return params["filename"]
}

func multipartError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return bodyError(err)
	}
	if we := wasmwiz.AsError(err); we != nil {
		return we // e.g. a body cut for arriving too slowly
	}
	return wasmwiz.WrapError(wasmwiz.EINVALID, err, "invalid multipart body")
}

// pageParams reads limit and offset from the query (EINVALID when bad,
// and for an offset past wasmwiz.MaxListOffset).
func pageParams(r *http.Request) (limit, offset int, err error) {
	limit, offset = 50, 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > wasmwiz.MaxListLimit {
			return 0, 0, wasmwiz.Errorf(wasmwiz.EINVALID, "limit must be a whole number from 1 to %d", wasmwiz.MaxListLimit)
		}
		limit = n
	}
	if v := r.URL.Query().Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, 0, wasmwiz.Errorf(wasmwiz.EINVALID, "offset must be a whole number, 0 or more")
		}
		if err := wasmwiz.CheckListOffset(n); err != nil {
			return 0, 0, err
		}
		offset = n
	}
	return limit, offset, nil
}

// boolParam reads a true/false query parameter (EINVALID when bad).
func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, wasmwiz.Errorf(wasmwiz.EINVALID, "%s must be true or false", name)
	}
	return b, nil
}

// pathID parses a numeric {id}; anything else is ENOTFOUND, as a missing
// thing would be.
func pathID(r *http.Request, what string) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, wasmwiz.Errorf(wasmwiz.ENOTFOUND, "%s not found", what)
	}
	return id, nil
}
