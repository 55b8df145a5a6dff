package wasmwiz

import (
	"errors"
	"fmt"
)

// Error codes. Every error that reaches a caller carries one of these; the HTTP
// layer maps each to a status in one table and the client maps statuses back.
const (
	EINVALID      = "EINVALID"      // the request is malformed or names something impossible
	EUNAUTHORIZED = "EUNAUTHORIZED" // no credentials, or credentials that do not authenticate
	EFORBIDDEN    = "EFORBIDDEN"    // authenticated, but the action needs another role
	ENOTFOUND     = "ENOTFOUND"     // does not exist, or is not the caller's
	ECONFLICT     = "ECONFLICT"     // conflicts with existing state (duplicate email, tier in use)
	ETOOLARGE     = "ETOOLARGE"     // a module, stdin or body over its limit
	ERATELIMIT    = "ERATELIMIT"    // a rate or concurrency quota is exhausted
	EUNAVAILABLE  = "EUNAVAILABLE"  // the server is saturated or a dependency is down; retry later
	EINTERNAL     = "EINTERNAL"     // a bug or an unexpected failure; details are logged, not sent
)

// Error is an application error with a code and a message that is safe to show
// to the caller. Internal detail belongs in Err, which is logged but never sent.
type Error struct {
	Code    string
	Message string
	Err     error // optional wrapped cause, never shown to callers
}

// Error implements the error interface.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("wasmwiz error: code=%s message=%s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("wasmwiz error: code=%s message=%s", e.Code, e.Message)
}

// Unwrap returns the wrapped cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code string, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WrapError returns an *Error with the given code and message that wraps err.
func WrapError(code string, err error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// AsError returns the first *Error in err's chain, and nil when there is
// none (or err is nil).
func AsError(err error) *Error {
	var e *Error
	errors.As(err, &e)
	return e
}

// HasCode reports whether err's chain holds an *Error, that is whether err
// already carries a code and a caller-safe message. The adapters that turn
// their dependency's errors into coded ones pass such errors through as
// they are.
func HasCode(err error) bool { return AsError(err) != nil }

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for
// any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if e := AsError(err); e != nil {
		return e.Code
	}
	if err == nil {
		return ""
	}
	return EINTERNAL
}

// ErrorMessage returns the caller-safe message of the first *Error in err's
// chain, and a generic message for any other non-nil error.
func ErrorMessage(err error) string {
	if e := AsError(err); e != nil {
		return e.Message
	}
	if err == nil {
		return ""
	}
	return "internal error"
}
