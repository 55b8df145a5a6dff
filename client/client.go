// Package client is the Go client of the WasmWiz REST API (docs/API.md).
//
// Methods take and return the API's JSON shapes, the types of package api
// (*api.Result, *api.Module, *api.Run, …), which the server encodes its
// answers with. This package imports the standard library and api only;
// api imports the root package, which imports the standard library only, so
// a program that uses the client gets no third-party module through it.
//
// Every failure is an *Error: the code of the server's error body (one of
// the api.E* codes, or for an answer not in the error shape the code its
// HTTP status stands for) with the status, request id and rate-limit
// headers, EUNAVAILABLE for a request that never got an answer, EINVALID
// for one that could not be made. ErrorCode, ErrorMessage, RetryAfter and
// StatusCode read any error a method returns, and a method that fails
// returns no value with it (nil, zero counts).
//
// A list method returns a page of items and their total (api.ListTotal),
// counted by the server up to api.MaxListTotal: past it Capped is set.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/wasmwiz/wasmwiz/api"
)

// result returns v, or nil when err is set, so that no method hands back
// a half-filled value with its error.
func result[T any](v *T, err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	return v, nil
}

// listResult is result for a page of a list and its total (the answer's
// total and total_capped).
func listResult[T any](items []T, total int, capped bool, err error) ([]T, api.ListTotal, error) {
	if err != nil {
		return nil, api.ListTotal{}, err
	}
	return items, api.ListTotal{Count: total, Capped: capped}, nil
}

// maxAnswerBytes bounds what the client reads of one answer, so that a
// broken or hostile server cannot make it hold unbounded memory.
const maxAnswerBytes = 256 << 20

// Client talks to one WasmWiz server with one API key. It is safe for
// concurrent use.
type Client struct {
	base      *url.URL
	key       string
	http      *http.Client
	userAgent string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the client send its requests through hc (default: a
// client of its own with no overall timeout; use contexts for deadlines).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// New returns a client of the server at baseURL (e.g.
// "http://127.0.0.1:8080") that authenticates with key; an empty key sends
// no credentials (anonymous execute when the server has auth off, and the
// public routes). EINVALID for a baseURL that is not an absolute http(s) URL.
func New(baseURL, key string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errorf(api.EINVALID, nil, "server URL must be http://host:port or https://host, got %q", baseURL)
	}
	c := &Client{base: u, key: key, http: &http.Client{}, userAgent: "wasmwiz-client"}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// BaseURL returns the server's URL as given to New, without a trailing slash.
func (c *Client) BaseURL() string { return c.base.String() }

// RateLimit is what the X-RateLimit-* and Retry-After headers of an execute
// answer said. Present is false when the answer had none (the request did
// not get as far as the limiter).
type RateLimit struct {
	Present    bool
	Limit      int64
	Remaining  int64
	Reset      time.Duration // whole seconds, as sent
	RetryAfter time.Duration // 429 and 503 only
}

func rateLimitFrom(h http.Header) RateLimit {
	var rl RateLimit
	if v := h.Get("X-RateLimit-Limit"); v != "" {
		rl.Present = true
		rl.Limit, _ = strconv.ParseInt(v, 10, 64)
		rl.Remaining, _ = strconv.ParseInt(h.Get("X-RateLimit-Remaining"), 10, 64)
		s, _ := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64)
		rl.Reset = time.Duration(s) * time.Second
	}
	if v := h.Get("Retry-After"); v != "" {
		if s, err := strconv.ParseInt(v, 10, 64); err == nil {
			rl.RetryAfter = time.Duration(s) * time.Second
		}
	}
	return rl
}

// Error is a failure of a call: an answer that is not a success, or a
// request that got no answer (StatusCode 0).
type Error struct {
	Code       string    // one of the api.E* codes
	Message    string    // what went wrong, for people
	StatusCode int       // the answer's HTTP status; 0 when there was none
	RequestID  string    // the answer's X-Request-Id: the server logs the request under it
	RateLimit  RateLimit // the answer's X-RateLimit-* and Retry-After headers
	Body       []byte    // the answer's body, at most 64 KiB
	Err        error     // the cause when there was no answer (a dial error, the context's)
}

// Error implements error: the code and the message, and the status and
// request id of the answer when there was one.
func (e *Error) Error() string {
	msg := e.Code + ": " + e.Message
	if e.StatusCode != 0 {
		msg += fmt.Sprintf(" (HTTP %d, request id %s)", e.StatusCode, e.RequestID)
	}
	return msg
}

// Unwrap returns the cause of a failure without an answer, so that
// errors.Is(err, context.DeadlineExceeded) works.
func (e *Error) Unwrap() error { return e.Err }

func errorf(code string, cause error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: cause}
}

// ErrorCode returns the code of an error a method returned (one of the
// api.E* codes), EINTERNAL for any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if e := asError(err); e != nil {
		return e.Code
	}
	if err == nil {
		return ""
	}
	return api.EINTERNAL
}

// ErrorMessage returns the message of an error a method returned, and the
// error's text for any other.
func ErrorMessage(err error) string {
	if e := asError(err); e != nil {
		return e.Message
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

// asError returns the first *Error in err's chain, and nil when there is
// none.
func asError(err error) *Error {
	var e *Error
	errors.As(err, &e)
	return e
}

// RetryAfter returns how long the server asked the caller to wait before
// retrying (its Retry-After header, sent with ERATELIMIT and EUNAVAILABLE),
// and false when it did not say.
func RetryAfter(err error) (time.Duration, bool) {
	if e := asError(err); e != nil && e.RateLimit.RetryAfter > 0 {
		return e.RateLimit.RetryAfter, true
	}
	return 0, false
}

// StatusCode returns the HTTP status of the answer a failure came from, and
// 0 when there was none.
func StatusCode(err error) int {
	if e := asError(err); e != nil {
		return e.StatusCode
	}
	return 0
}

// request is one call.
type request struct {
	method string
	path   string // starts with /
	query  url.Values
	body   io.Reader
	ctype  string
	accept string // "" means application/json
}

// answer is what came back.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// send makes one call and returns its answer when the status is 2xx, and
// the mapped error otherwise.
func (c *Client) send(ctx context.Context, r request) (*answer, error) {
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return nil, errorf(api.EUNAVAILABLE, err, "reading the answer: %v", err)
	}
	if len(body) > maxAnswerBytes {
		return nil, errorf(api.EINTERNAL, nil, "answer over %d bytes", maxAnswerBytes)
	}
	a := &answer{status: resp.StatusCode, header: resp.Header, body: body}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return a, nil
	}
	return nil, responseError(a)
}

// do sends r and returns the server's response, whatever its status; the
// caller closes its body. EINVALID for a request that cannot be made,
// EUNAVAILABLE when the server did not answer.
func (c *Client) do(ctx context.Context, r request) (*http.Response, error) {
	u := *c.base
	u.Path = strings.TrimRight(u.Path, "/") + r.path
	if len(r.query) > 0 {
		u.RawQuery = r.query.Encode()
	}
	hr, err := http.NewRequestWithContext(ctx, r.method, u.String(), r.body)
	if err != nil {
		return nil, errorf(api.EINVALID, err, "cannot make the request: %v", err)
	}
	if r.ctype != "" {
		hr.Header.Set("Content-Type", r.ctype)
	}
	accept := r.accept
	if accept == "" {
		accept = "application/json"
	}
	hr.Header.Set("Accept", accept)
	if c.userAgent != "" {
		hr.Header.Set("User-Agent", c.userAgent)
	}
	if c.key != "" {
		hr.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, errorf(api.EUNAVAILABLE, err, "request ended: %v", ctx.Err())
		}
		return nil, errorf(api.EUNAVAILABLE, err, "server did not answer: %v", err)
	}
	return resp, nil
}

// responseError turns a non-2xx answer into an *Error.
func responseError(a *answer) error {
	e := &Error{StatusCode: a.status, RequestID: a.header.Get("X-Request-Id"), RateLimit: rateLimitFrom(a.header),
		Body: a.body[:min(len(a.body), 64<<10)]}
	var eb struct {
		Error *api.ErrorDetail `json:"error"`
	}
	if json.Unmarshal(a.body, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
		e.Code, e.Message = eb.Error.Code, eb.Error.Message
		return e
	}
	// The legacy route answers {"output":null,"error":"…"}.
	var legacy api.LegacyResult
	e.Code, e.Message = api.CodeOfStatus(a.status), http.StatusText(a.status)
	if json.Unmarshal(a.body, &legacy) == nil && legacy.Error != nil {
		e.Message = *legacy.Error
	}
	return e
}

// call sends a JSON body (nil: none) and decodes a JSON answer into out (nil:
// ignored).
func (c *Client) call(ctx context.Context, method, path string, query url.Values, in, out any) error {
	r := request{method: method, path: path, query: query}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return errorf(api.EINVALID, err, "cannot encode the request: %v", err)
		}
		r.body, r.ctype = bytes.NewReader(b), "application/json"
	}
	a, err := c.send(ctx, r)
	if err != nil {
		return err
	}
	return decode(a, out)
}

func decode(a *answer, out any) error {
	if out == nil || a.status == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(a.body, out); err != nil {
		return errorf(api.EINTERNAL, err, "the server's answer is not the expected JSON: %v", err)
	}
	return nil
}

// Page selects a page of a list (zero values: the server's defaults). An
// Offset past api.MaxListOffset is refused (EINVALID): for items further
// down, narrow the filter.
type Page struct {
	Limit  int
	Offset int
}

// query is the page's parameters and the filters, given as name, value
// pairs; a filter whose value is "" is left out.
func (p Page) query(filters ...string) url.Values {
	q := url.Values{}
	if p.Limit > 0 {
		q.Set("limit", strconv.Itoa(p.Limit))
	}
	if p.Offset > 0 {
		q.Set("offset", strconv.Itoa(p.Offset))
	}
	for i := 0; i+1 < len(filters); i += 2 {
		if filters[i+1] != "" {
			q.Set(filters[i], filters[i+1])
		}
	}
	return q
}

func idPath(prefix string, id int64) string {
	return prefix + "/" + strconv.FormatInt(id, 10)
}

// Health calls GET /healthz: nil while the server serves.
func (c *Client) Health(ctx context.Context) error {
	return c.call(ctx, http.MethodGet, "/healthz", nil, nil, nil)
}

// Readiness is the answer of GET /readyz.
type Readiness struct {
	Ready  bool              // 200
	Checks map[string]string // dependency → "ok" or "down"
}

// Ready calls GET /readyz. A 503 is not an error: Ready is false and Checks
// says which dependency is down. Errors: EUNAVAILABLE when the server does
// not answer, the code of any other failure.
func (c *Client) Ready(ctx context.Context) (*Readiness, error) {
	var body api.Ready
	a, err := c.send(ctx, request{method: http.MethodGet, path: "/readyz"})
	if err != nil {
		if e := asError(err); e != nil && e.StatusCode == http.StatusServiceUnavailable {
			if json.Unmarshal(e.Body, &body) == nil && body.Checks != nil {
				return &Readiness{Ready: false, Checks: body.Checks}, nil
			}
		}
		return nil, err
	}
	if err := decode(a, &body); err != nil {
		return nil, err
	}
	return &Readiness{Ready: true, Checks: body.Checks}, nil
}

// OpenAPI returns the server's OpenAPI document (GET /api/openapi.json).
func (c *Client) OpenAPI(ctx context.Context) (map[string]any, error) {
	var doc map[string]any
	return doc, c.call(ctx, http.MethodGet, "/api/openapi.json", nil, nil, &doc)
}

// Metrics returns the Prometheus text of GET /metrics on this server's
// address (see the server's WASMWIZ_METRICS_ADDR).
func (c *Client) Metrics(ctx context.Context) (string, error) {
	a, err := c.send(ctx, request{method: http.MethodGet, path: "/metrics"})
	if err != nil {
		return "", err
	}
	return string(a.body), nil
}
