package wasmwiz_test

import (
	"os"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// TestMain prints, after the tests, one summary of those skipped for want
// of a service, and what would run them.
func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }
