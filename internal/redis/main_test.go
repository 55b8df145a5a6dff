package redis_test

import (
	"log/slog"
	"os"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/redis"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

func TestMain(m *testing.M) {
	// The outage tests dial closed ports on purpose; their dial errors are
	// go-redis's debug messages, not test output.
	redis.RouteClientLog(slog.New(slog.DiscardHandler))
	os.Exit(testenv.Run(m))
}
