package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestServeOutputCapIsPerRun: a run's output cap bounds stdout and stderr
// together, and the answer is bounded by it: a guest that floods both
// streams with bytes JSON escapes six-fold gets an answer of about 4/3 of
// the cap (base64), not twelve times it; on SQLite and on PostgreSQL with
// Redis, while another tenant's runs complete.
func TestServeOutputCapIsPerRun(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		s := be.serve(t)
		const limit = wasmwiz.MiB
		_, _, key := s.newTierUser("flood", func(tr *wasmwiz.Tier) { tr.MaxOutputBytes = limit })
		other, _, _ := s.newUser(wasmwiz.TierBasic)
		hello := testmodule.Read(t, "hello.wasm")

		stopRSS := testenv.PeakRSS(t)
		var otherTook, took testenv.Latencies
		var sizes []string
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // the other tenant, meanwhile
			defer wg.Done()
			if err := timedHellos(ctx, other, hello, 3, &otherTook); err != nil {
				t.Errorf("another tenant: %v", err)
			}
		}()
		for _, tt := range []struct {
			module   string
			encoding string
		}{
			{"flood_escapes.wasm", "base64"},
			{"flood_both.wasm", "utf-8"},
		} {
			start := time.Now()
			resp, body := testenv.Do(t, http.MethodPost, s.url+"/api/v1/execute", key, "application/wasm",
				bytes.NewReader(testmodule.Read(t, tt.module)))
			took.Since(start)
			sizes = append(sizes, fmt.Sprintf("%s %s", tt.module, testenv.MiB(int64(len(body)))))
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
		testenv.Prove(t, "output flood on both streams, of bytes JSON escapes six-fold (cap 1MiB), "+be.name,
			"the run ends output_limit with the cap's bytes; the answer is bounded by the cap; another tenant's runs complete",
			"answer size", strings.Join(sizes, ", "),
			"time to answer", took.String(),
			"other tenant's latency", otherTook.String(),
			"peak RSS", testenv.MiB(stopRSS()))
	})
}
