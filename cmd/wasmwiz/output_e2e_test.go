package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestServeOutputCapIsPerRun: a run's output cap bounds stdout and stderr
// together, and the answer is bounded by it: a guest that floods both
// streams with bytes JSON escapes six-fold gets an answer of about 4/3 of
// the cap (base64), not twelve times it; on SQLite and on PostgreSQL with
// Redis, while another tenant's runs complete.
func TestServeOutputCapIsPerRun(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := startServe(t, serveEnv(t, be.env(t)), ServeOptions{})
			const limit = wasmwiz.MiB
			s.putTier(testTier("flood", func(tr *wasmwiz.Tier) { tr.MaxOutputBytes = limit }))
			_, _, key := s.newUser("flood")
			other, _, _ := s.newUser(wasmwiz.TierBasic)

			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // the other tenant, meanwhile
				defer wg.Done()
				for i := 0; i < 3; i++ {
					res, err := other.Execute(ctx, &client.ExecuteRequest{Wasm: testmodule.Read(t, "hello.wasm")})
					if err != nil || res.Status != api.StatusOK {
						t.Errorf("another tenant's run: %+v, %v", res, err)
					}
				}
			}()
			for _, tt := range []struct {
				module   string
				encoding string
			}{
				{"flood_escapes.wasm", "base64"},
				{"flood_both.wasm", "utf-8"},
			} {
				resp, body := testenv.Do(t, http.MethodPost, s.url+"/api/v1/execute", key, "application/wasm",
					bytes.NewReader(testmodule.Read(t, tt.module)))
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%s: %d %.300s", tt.module, resp.StatusCode, body)
				}
				var r api.Result
				if err := json.Unmarshal(body, &r); err != nil {
					t.Fatal(err)
				}
				var enc struct {
					Stdout string `json:"stdout_encoding"`
					Stderr string `json:"stderr_encoding"`
				}
				_ = json.Unmarshal(body, &enc)
				if r.Status != api.StatusOutputLimit || int64(len(r.Stdout)+len(r.Stderr)) != limit ||
					len(r.Stdout) == 0 || len(r.Stderr) == 0 || enc.Stdout != tt.encoding || enc.Stderr != tt.encoding {
					t.Errorf("%s: status %s, stdout %d + stderr %d bytes (%s, %s); want output_limit, %d together, %s",
						tt.module, r.Status, len(r.Stdout), len(r.Stderr), enc.Stdout, enc.Stderr, limit, tt.encoding)
				}
				// Base64: 4/3; text: at most 2x; plus the fixed fields.
				bound := 2*limit + 4*wasmwiz.KiB
				if tt.encoding == "base64" {
					bound = limit/3*4 + 4*wasmwiz.KiB
				}
				if int64(len(body)) > bound {
					t.Errorf("%s: the answer is %d bytes, over %d for an output cap of %d", tt.module, len(body), bound, limit)
				}
				t.Logf("%s: answer %d bytes for a cap of %d", tt.module, len(body), limit)
			}
			wg.Wait()
		})
	}
}
