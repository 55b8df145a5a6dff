package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestServeUserRequestsBounded: the wasmwiz binary on each store, with
// WASMWIZ_USER_REQUEST_RATE 3 (bursts of 6): one user's flood of usage
// reads through its two keys answers 429 ERATELIMIT with Retry-After past
// its burst, while another user's reads go through, and the flooding
// user's own runs right after (execute requests have a bucket of their
// own, which only their refusals spend). (The bound on requests in
// flight, that refused requests cost no lookup nor store call, that
// refused runs are charged, the bound on execute requests waiting for
// admission, and that idle users are forgotten, are internal/http's
// TestUserRequests* and TestExecute{Refusals,Waiting,NotHeldBack,AdmittedRuns}*.)
func TestServeUserRequestsBounded(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		s := be.serveWith(t, map[string]string{"WASMWIZ_USER_REQUEST_RATE": "3"}, ServeOptions{})
		flooder, _, _ := s.newUser(wasmwiz.TierBasic)
		other, _, _ := s.newUser(wasmwiz.TierBasic)
		second, err := flooder.CreateKey(ctx, "second", nil)
		if err != nil {
			t.Fatal(err)
		}
		keys := []*client.Client{flooder, s.client(second.Secret)}
		hello := testmodule.Read(t, "hello.wasm")

		const flood = 40
		start := time.Now()
		var answered, refused int
		var refusedTook time.Duration
		for i := range flood {
			sent := time.Now()
			_, err := keys[i%2].Usage(ctx)
			switch codeOf(err) {
			case "":
				answered++
			case wasmwiz.ERATELIMIT:
				refused++
				refusedTook += time.Since(sent)
				if d, ok := client.RetryAfter(err); !ok || d <= 0 {
					t.Fatalf("429 without Retry-After: %v", err)
				}
			default:
				t.Fatalf("read %d: %v", i+1, err)
			}
		}
		elapsed := time.Since(start)
		// The burst, the creation of the second key (counted too), and
		// what refilled meanwhile.
		if most := 6 + int(elapsed.Seconds()*3) + 1; answered > most || refused == 0 {
			t.Fatalf("%d reads of %d answered in %v, want at most %d and the rest refused", answered, flood, elapsed, most)
		}
		if _, err := other.Usage(ctx); err != nil {
			t.Fatalf("another user's read during the flood: %v", err)
		}
		// Execute requests have a bucket of their own: the spent reads
		// hold the user's runs back not at all.
		if _, err := flooder.Execute(ctx, &client.ExecuteRequest{Wasm: hello}); err != nil {
			t.Fatalf("the flooding user's run after its flood of reads: %v", err)
		}
		testenv.Prove(t, "a flood of one user's reads (GET /api/v1/usage through its two keys; WASMWIZ_USER_REQUEST_RATE 3), "+be.name,
			"past the user's burst its reads answer 429 with Retry-After; another user's reads go through, and so do the flooding user's runs (a bucket of their own)",
			"reads answered", fmt.Sprint(answered),
			"reads refused", fmt.Sprint(refused),
			"time to answer a refused read (mean)", (refusedTook / time.Duration(max(refused, 1))).Round(time.Microsecond).String())
	})
}
