package http_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
	"github.com/wasmwiz/wasmwiz/internal/mock"
	"github.com/wasmwiz/wasmwiz/internal/sqlite"
	"github.com/wasmwiz/wasmwiz/internal/sqlite/sqlitetest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

// outputReads is a real store that counts the bytes of a running run's
// output it hands to its readers.
type outputReads struct {
	*sqlite.DB
	mu    sync.Mutex
	bytes int
}

func (c *outputReads) add(n int) {
	c.mu.Lock()
	c.bytes += n
	c.mu.Unlock()
}

func (c *outputReads) RunOutputSince(ctx context.Context, id string, from [2]int64) (wasmwiz.RunState, [2]wasmwiz.OutputTail, error) {
	st, tails, err := c.DB.RunOutputSince(ctx, id, from)
	c.add(len(tails[0].Data) + len(tails[1].Data))
	return st, tails, err
}

func (c *outputReads) FindRunByID(ctx context.Context, id string) (*wasmwiz.UsageRecord, error) {
	r, err := c.DB.FindRunByID(ctx, id)
	if err == nil && r.State == wasmwiz.RunRunning {
		c.add(len(r.Stdout) + len(r.Stderr))
	}
	return r, err
}

// TestEventsFromTheStoreReadOnlyNewOutput: an event stream that follows a
// running run from the store alone (no live events reach it, as on a
// replica they do not reach) sends the output byte for byte and reads only
// what it has not sent: the store hands it each byte once, not the whole
// output at every recheck.
func TestEventsFromTheStoreReadOnlyNewOutput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, key := bootstrappedSQLite(t, nil)
	runs := &outputReads{DB: db}
	srv, err := wwhttp.NewServer(wwhttp.Options{
		Users: db, Keys: db, Tiers: db, Modules: db, Runs: runs,
		Engine: &mock.Engine{}, Limiter: inmem.New(inmem.Options{}), Usage: &mock.UsageRecorder{},
		Auth: true, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	users, _, err := db.FindUsers(wasmwiz.SystemContext(ctx), wasmwiz.UserFilter{})
	if err != nil || len(users) != 1 {
		t.Fatalf("the bootstrapped admin: %v %v", users, err)
	}
	admin := users[0]
	uctx := wasmwiz.NewContextWithUser(ctx, admin)
	rec := sqlitetest.QueuedRun(t, uctx, db)
	if _, _, err := db.StartRun(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(sctx, "GET", ts.URL+"/api/v1/runs/"+rec.ID+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	type event struct {
		kind string
		data []byte
	}
	events := make(chan event, 64)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		var ev event
		for sc.Scan() {
			switch line := sc.Text(); {
			case line == "" && ev.kind != "":
				events <- ev
				ev = event{}
			case strings.HasPrefix(line, "event: "):
				ev.kind = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data = []byte(line[len("data: "):])
			}
		}
	}()
	// nextOutput returns the stdout of the next output event.
	nextOutput := func(what string) string {
		t.Helper()
		for {
			ev := testenv.Recv(t, events, what)
			if ev.kind == "" {
				t.Fatal("the event stream ended")
			}
			if ev.kind == wasmwiz.EventStdout {
				var o api.OutputEvent
				if err := json.Unmarshal(ev.data, &o); err != nil {
					t.Fatal(err)
				}
				return string(o.Data)
			}
		}
	}

	var output string
	for i, piece := range []string{"first piece\n", "second\n", "third and last\n"} {
		if _, err := db.HeartbeatRun(ctx, rec.ID, wasmwiz.OutputTail{Offset: int64(len(output)), Data: []byte(piece)}, wasmwiz.OutputTail{}); err != nil {
			t.Fatal(err)
		}
		output += piece
		got := ""
		for len(got) < len(piece) {
			got += nextOutput(fmt.Sprintf("piece %d", i+1))
		}
		if got != piece {
			t.Fatalf("the stream sent %q, want %q", got, piece)
		}
	}
	runs.mu.Lock()
	read := runs.bytes
	runs.mu.Unlock()
	if read != len(output) {
		t.Fatalf("the stream read %d bytes of output from the store for %d bytes sent: want each byte once", read, len(output))
	}
}
