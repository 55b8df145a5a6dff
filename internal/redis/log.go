package redis

import (
	"context"
	"fmt"
	"log/slog"

	goredis "github.com/redis/go-redis/v9"
)

// RouteClientLog sends go-redis's own messages (a failed dial, a bad pooled
// connection) to logger at debug level. go-redis otherwise prints them to
// stderr, one per failed dial, which would repeat what the limiter already
// logged once per outage. The setting is process-wide: call it once, from
// main, before creating clients.
func RouteClientLog(logger *slog.Logger) {
	goredis.SetLogger(clientLog{logger})
}

type clientLog struct{ l *slog.Logger }

func (c clientLog) Printf(ctx context.Context, format string, v ...any) {
	c.l.DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}
