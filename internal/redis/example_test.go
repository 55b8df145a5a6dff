package redis_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
	"github.com/wasmwiz/wasmwiz/internal/redis"
)

// How serve wires the limiters: the in-memory one decides alone without
// Redis, and is the Redis one's fallback with it.
func ExampleNew() {
	redisURL := "redis://127.0.0.1:1" // WASMWIZ_REDIS_URL; here nothing listens
	logger := slog.New(slog.DiscardHandler)
	redis.RouteClientLog(logger)

	fallback := inmem.New(inmem.Options{})
	var limiter wasmwiz.RateLimiter = fallback
	stats := fallback.Stats
	if redisURL != "" {
		client, err := redis.NewClient(redisURL)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer client.Close()
		rl, err := redis.New(redis.Options{Client: client, Timeout: 50 * time.Millisecond, Fallback: fallback, Logger: logger})
		if err != nil {
			fmt.Println(err)
			return
		}
		limiter, stats = rl, rl.Stats
	}

	limits := []wasmwiz.RateLimit{{Name: "minute", Limit: 10, Window: time.Minute}, {Name: "day", Limit: 500, Window: 24 * time.Hour}}
	d, err := limiter.Allow(context.Background(), "user:42", limits)
	fmt.Println(d.Allowed, d.Limit, d.Remaining, d.Fallback, err)
	s := stats()
	fmt.Println(s.Allowed, s.Fallback, s.FallbackActive, s.Outages)
	// Output:
	// true 10 9 true <nil>
	// 1 1 true 1
}
