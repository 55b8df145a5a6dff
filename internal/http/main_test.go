package http_test

import (
	"os"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// TestMain prints, after the tests, one summary of those skipped for want
// of a service or a program, and what would run them; it then stops the
// chromium the browser tests shared.
func TestMain(m *testing.M) {
	code := testenv.Run(m)
	closeBrowser()
	os.Exit(code)
}
