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
// user's own runs once its bucket has a token again (a run that is
// admitted takes none). (The bound on requests in flight, that refused
// requests cost no lookup nor store call, that refused runs are charged,
// and that idle users are forgotten, are internal/http's TestUserRequests*
// and TestExecuteRefusals*.)
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
		testenv.WaitFor(t, "the flooding user's run to go through once its bucket refills", func() bool {
			_, err := flooder.Execute(ctx, &client.ExecuteRequest{Wasm: hello})
			if err != nil && codeOf(err) != wasmwiz.ERATELIMIT {
				t.Fatalf("the flooding user's run: %v", err)
			}
			return err == nil
		})
		testenv.Prove(t, "a flood of one user's reads (GET /api/v1/usage through its two keys; WASMWIZ_USER_REQUEST_RATE 3), "+be.name,
			"past the user's burst its reads answer 429 with Retry-After; another user's reads go through, and the flooding user's runs once its bucket refills",
			"reads answered", fmt.Sprint(answered),
			"reads refused", fmt.Sprint(refused),
			"time to answer a refused read (mean)", (refusedTook / time.Duration(max(refused, 1))).Round(time.Microsecond).String())
	})
}
