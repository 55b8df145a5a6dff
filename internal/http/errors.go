package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
)

// handlerFunc is a handler that returns its failure instead of writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// ErrorStatus returns the HTTP status for an error code (500 for unknown),
// from the one error→status table, api's.
func ErrorStatus(code string) int { return api.HTTPStatus(code) }

// errorBody is the JSON shape of every failure.
type errorBody = api.ErrorBody

// errorJSON is a failure's code and message.
type errorJSON = api.ErrorDetail

// route adapts fn: it records the route pattern for metrics and the access
// log, and writes fn's error.
func (s *Server) route(pattern string, fn handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if info := routeInfoFrom(r.Context()); info != nil {
			info.pattern = pattern
		}
		if err := fn(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// errorParts returns what a failure tells the caller: status, code and a
// caller-safe message, and sets Retry-After when err carries a hint.
func (s *Server) errorParts(w http.ResponseWriter, r *http.Request, err error) (int, string, string) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		err = wasmwiz.WrapError(wasmwiz.ETOOLARGE, err, "request body is larger than %s", wasmwiz.FormatSize(mbe.Limit))
	}
	code := wasmwiz.ErrorCode(err)
	msg := wasmwiz.ErrorMessage(err)
	status := ErrorStatus(code)
	if code == wasmwiz.EINTERNAL {
		// A bug or an unexpected failure: the detail is logged, never sent.
		s.log.ErrorContext(r.Context(), "internal error", "err", err,
			"request_id", wasmwiz.RequestIDFromContext(r.Context()), "method", loggedText(r.Method, maxLoggedMethod),
			"path", loggedText(r.URL.Path, maxLoggedPath))
		msg = "internal error; request id " + wasmwiz.RequestIDFromContext(r.Context())
	} else if s.log.Enabled(r.Context(), slog.LevelDebug) {
		s.log.DebugContext(r.Context(), "request failed", "err", err,
			"request_id", wasmwiz.RequestIDFromContext(r.Context()))
	}
	if d, ok := wasmwiz.RetryAfter(err); ok {
		w.Header().Set("Retry-After", retryAfterSeconds(d))
	}
	if code == wasmwiz.EUNAUTHORIZED {
		w.Header().Set("WWW-Authenticate", `Bearer realm="wasmwiz"`)
	}
	return status, code, msg
}

// writeError writes err in the error shape with the status from the table.
//
// On the legacy route every failure, including those of the middleware
// (bad key, body too large), answers in the original service's shape, so
// that its clients keep parsing what they get.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := s.errorParts(w, r, err)
	if info := routeInfoFrom(r.Context()); info != nil {
		info.errorCode = code
	}
	if r.URL.Path == legacyExecutePath {
		writeJSON(w, status, legacyJSON{Error: &msg})
		return
	}
	writeJSON(w, status, errorBody{Error: errorJSON{Code: code, Message: msg}})
}

// retryAfterSeconds writes d as whole seconds, rounded up, at least 1.
func retryAfterSeconds(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return strconv.FormatInt(secs, 10)
}

// writeJSON writes v as JSON with status, without HTML escaping: answers
// are JSON (nosniff, no HTML context), and a run's output full of markup
// would otherwise take six bytes per <, > or & (api.Result).
func writeJSON(w http.ResponseWriter, status int, v any) {
	var b []byte
	var err error
	if m, ok := v.(json.Marshaler); ok {
		// Straight to the type's own encoder (api.Result's escapes
		// no HTML either): json.Marshal would then read its output again to
		// check and compact it, and escape HTML.
		b, err = m.MarshalJSON()
	} else {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		err = enc.Encode(v)
		b = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	}
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"EINTERNAL","message":"cannot encode the answer"}}`)
	}
	h := w.Header()
	h["Content-Type"] = hvJSONType
	h["Content-Length"] = []string{strconv.Itoa(len(b) + 1)}
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// requireUser refuses callers without a user (EUNAUTHORIZED).
func requireUser(fn handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if _, err := wasmwiz.RequireUser(r.Context()); err != nil {
			return err
		}
		return fn(w, r)
	}
}

// requireAdmin refuses callers that are not admins (EUNAUTHORIZED, EFORBIDDEN).
func requireAdmin(fn handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if _, err := wasmwiz.RequireAdmin(r.Context()); err != nil {
			return err
		}
		return fn(w, r)
	}
}

// notFoundOrMethod answers paths no route matched: 405 with Allow when the
// path exists under other methods, else 404. Its message carries the
// method and path cut short (loggedText).
func (s *Server) notFoundOrMethod(w http.ResponseWriter, r *http.Request) error {
	var allow []string
	// One shallow copy, its method changed for each probe: the mux reads
	// the method, host and path only, and a deep Clone per method copied
	// the headers and URL five times a request.
	probe := *r
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
		if m == r.Method {
			continue
		}
		probe.Method = m
		if _, pattern := s.mux.Handler(&probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: errorJSON{
			Code: wasmwiz.EINVALID, Message: "method " + loggedText(r.Method, maxLoggedMethod) + " not allowed; use " + strings.Join(allow, ", ")}})
		return nil
	}
	return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "no route for %s %s", loggedText(r.Method, maxLoggedMethod), loggedText(r.URL.Path, maxLoggedPath))
}
