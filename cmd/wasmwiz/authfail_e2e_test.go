package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// TestServeAuthFailuresBounded: the wasmwiz binary on each store, with
// WASMWIZ_MAX_AUTH_FAILURES 5: a flood of well-shaped keys that do not
// authenticate, from one address, gets 401 for the first 6 (the 6th finds
// the address over its limit) and then 429 ERATELIMIT with a Retry-After,
// while the admin's key, which authenticated from that address before,
// keeps working. (That refused keys cost no database lookup, and the /64
// and the window, are internal/http's TestAuthFailuresBoundedPerAddress.)
func TestServeAuthFailuresBounded(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		s := be.serveWith(t, map[string]string{"WASMWIZ_MAX_AUTH_FAILURES": "5"}, ServeOptions{})
		if _, err := s.admin().Me(ctx); err != nil {
			t.Fatal(err)
		}
		for i := range 6 {
			_, _, err := s.client(fmt.Sprintf("ww_%040d", i)).ListModules(ctx, "", client.Page{})
			wantCode(t, fmt.Sprintf("bad key %d", i+1), err, wasmwiz.EUNAUTHORIZED)
		}
		refusing := time.Now()
		for i := range 20 {
			_, _, err := s.client(fmt.Sprintf("ww_%040d", 100+i)).ListModules(ctx, "", client.Page{})
			wantCode(t, fmt.Sprintf("bad key %d past the limit", 7+i), err, wasmwiz.ERATELIMIT)
			if d, ok := client.RetryAfter(err); !ok || d <= 0 {
				t.Fatalf("429 without Retry-After: %v", err)
			}
		}
		refused := time.Since(refusing) / 20
		if _, err := s.admin().Me(ctx); err != nil {
			t.Fatalf("the admin's key from the refused address: %v", err)
		}
		testenv.Prove(t, "a flood of well-shaped API keys that do not authenticate, from one address with no account (WASMWIZ_MAX_AUTH_FAILURES 5), "+be.name,
			"past the limit the address's keys answer 429 with Retry-After, without a database lookup; a key that authenticated from that address before keeps working",
			"keys answered 401 before the limit", "6",
			"keys answered 429 after it", "20",
			"time to answer a refused key (mean)", refused.Round(time.Microsecond).String())
	})
}
