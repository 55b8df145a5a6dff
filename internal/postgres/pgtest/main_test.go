package pgtest_test

import (
	"os"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }
