// Package api holds the JSON shapes of the WasmWiz REST API (docs/API.md):
// what the server sends and accepts, and what the Go client (package
// client) returns. The server's HTTP layer encodes its answers with these
// types, so there is one definition of each shape; the OpenAPI document
// (GET /api/openapi.json) describes the same shapes, and a test holds the two
// together.
//
// It imports the standard library and the root package
// (github.com/wasmwiz/wasmwiz), which imports the standard library only:
// where the domain already declares a shape, the type here is the domain's
// (an alias), and the codecs the domain has are called, not copied. A
// program that talks to a WasmWiz server imports this package and package
// client; through them it links the root package, but no third-party module
// and none of the server's adapters (internal/…).
//
// Tier limits are not fields here: a tier carries them as a name → number
// map (Tier.Limits), and GET /api/v1/me describes each one (TierLimit), so
// a limit the server adds reaches a client without a change to it.
package api

import (
	"net/http"

	"github.com/wasmwiz/wasmwiz"
)

// Error codes: every failure the server answers carries one in its error
// body (ErrorBody), and each maps to one HTTP status (docs/API.md). They
// are the domain's codes (wasmwiz.EINVALID, …), which every layer of the
// server speaks.
const (
	EINVALID      = wasmwiz.EINVALID      // the request is malformed or names something impossible (400)
	EUNAUTHORIZED = wasmwiz.EUNAUTHORIZED // no credentials, or credentials that do not authenticate (401)
	EFORBIDDEN    = wasmwiz.EFORBIDDEN    // authenticated, but the action needs another role (403)
	ENOTFOUND     = wasmwiz.ENOTFOUND     // does not exist, or is not the caller's (404)
	ECONFLICT     = wasmwiz.ECONFLICT     // conflicts with existing state, e.g. a taken email (409)
	ETOOLARGE     = wasmwiz.ETOOLARGE     // a module, stdin or body over its limit (413)
	ERATELIMIT    = wasmwiz.ERATELIMIT    // a rate or concurrency quota is exhausted (429, Retry-After)
	EUNAVAILABLE  = wasmwiz.EUNAVAILABLE  // the server is saturated or a dependency is down; retry later (503)
	EINTERNAL     = wasmwiz.EINTERNAL     // a bug or an unexpected failure on the server (500)
)

// Codes lists every error code.
var Codes = []string{EINVALID, EUNAUTHORIZED, EFORBIDDEN, ENOTFOUND, ECONFLICT, ETOOLARGE, ERATELIMIT, EUNAVAILABLE, EINTERNAL}

// statusOf is the one error→status table: the server answers each code with
// its status, and the client reads an answer that is not in the error shape
// (a proxy's 502, say) by it (DESIGN rule 4). It lives here, in the wire
// contract, so that the two cannot drift apart.
var statusOf = map[string]int{
	EINVALID:      http.StatusBadRequest,
	EUNAUTHORIZED: http.StatusUnauthorized,
	EFORBIDDEN:    http.StatusForbidden,
	ENOTFOUND:     http.StatusNotFound,
	ECONFLICT:     http.StatusConflict,
	ETOOLARGE:     http.StatusRequestEntityTooLarge,
	ERATELIMIT:    http.StatusTooManyRequests,
	EUNAVAILABLE:  http.StatusServiceUnavailable,
	EINTERNAL:     http.StatusInternalServerError,
}

// HTTPStatus returns the status the server answers code with (500 for an
// unknown code).
func HTTPStatus(code string) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// CodeOfStatus returns the code of an answer by its status alone: the code
// the server answers with that status; for statuses it never sends, what a
// proxy or the HTTP stack on the way means by them (405 and 415: EINVALID;
// 502 and 504: EUNAVAILABLE); EINTERNAL for any other.
func CodeOfStatus(status int) string {
	for code, s := range statusOf {
		if s == status {
			return code
		}
	}
	switch status {
	case http.StatusMethodNotAllowed, http.StatusUnsupportedMediaType:
		return EINVALID
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		return EUNAVAILABLE
	}
	return EINTERNAL
}

// ErrorBody is the body of every failure: {"error":{"code":…,"message":…}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the code of a failure and a message for people.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Health is the answer of GET /healthz.
type Health struct {
	Status string `json:"status"` // "ok"
}

// Ready is the answer of GET /readyz: 200 with status "ok" when every
// dependency answers, 503 with status "unavailable" and Error otherwise.
type Ready struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"` // dependency → "ok" or "down" ("shutdown" → "draining")
	Error  *ErrorDetail      `json:"error,omitempty"`
}
