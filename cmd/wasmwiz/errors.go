package main

import "github.com/wasmwiz/wasmwiz"

// errorText is what the CLI prints for an error: the caller-safe message and
// code for application errors, the full text for anything else (the CLI user
// is the operator, so internal detail is theirs to see).
func errorText(err error) string {
	code := wasmwiz.ErrorCode(err)
	if code == wasmwiz.EINTERNAL {
		return err.Error()
	}
	return code + ": " + wasmwiz.ErrorMessage(err)
}
