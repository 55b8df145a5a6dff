package http_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/wasmwiz/wasmwiz"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
	"github.com/wasmwiz/wasmwiz/internal/queue"
	"github.com/wasmwiz/wasmwiz/internal/sqlite"
	"github.com/wasmwiz/wasmwiz/internal/usage"
)

// newRunsStack is newWebStack with background runs: the queue on the
// SQLite store, and live events in process.
func newRunsStack(t *testing.T) *webStack {
	t.Helper()
	ctx := context.Background()
	eng := inProcessEngine(t)
	db, key := bootstrappedSQLite(t, func(ctx context.Context, db *sqlite.DB) error { return queue.MigrateSQLite(ctx, db.QueueDB()) })
	logger := slog.New(slog.DiscardHandler)
	q, err := queue.OpenSQLite(db.QueueDB(), queue.Options{Workers: 2, Runs: db, Logger: logger, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rec := usage.New(db, usage.Options{FlushInterval: 20 * time.Millisecond, Logger: logger})
	srv, err := wwhttp.NewServer(wwhttp.Options{
		Users: db, Keys: db, Tiers: db, Modules: db, Runs: db,
		Engine: eng, Limiter: inmem.New(inmem.Options{}), Usage: rec,
		Queue: q, Events: wasmwiz.NewEventHub(),
		Auth: true, Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Executor().HeartbeatInterval = 200 * time.Millisecond
	q.SetRunner(srv.Executor())
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { _ = rec.Close(ctx) })
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_ = q.Stop(sctx)
	})
	t.Cleanup(ts.Close)
	return &webStack{ts: ts, adminKey: key}
}

// signIn opens the page and uses the admin's key.
func (s *webStack) signIn() []chromedp.Action[chromedp.Void] {
	return []chromedp.Action[chromedp.Void]{
		chromedp.Navigate(s.ts.URL + "/"),
		chromedp.WaitVisible(chromedp.ID("api-key")),
		chromedp.SendKeys(chromedp.ID("api-key"), s.adminKey),
		chromedp.Click(chromedp.ID("key-save")),
		waitText("#whoami", "Signed in as admin@example.com"),
	}
}

// pollLong is poll with a bound a loaded machine never reaches for work that
// compiles a module (the Go sample is 2 MB) or waits for a worker.
func pollLong(expr string) chromedp.Action[chromedp.Void] {
	p := chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(2*time.Minute))
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := p(ctx, t)
		return chromedp.Void{}, err
	}
}

func waitTextLong(sel, want string) chromedp.Action[chromedp.Void] {
	return pollLong(fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && e.textContent.includes(%s); })()`,
		js(sel), js(want)))
}

// TestBrowserRuns: samples run in one click; a background run opens in
// History and shows its output while it runs; it can be cancelled; a
// History row opens its run, with its inputs, timings and output; Re-run
// fills the Run form; Usage draws its charts.
func TestBrowserRuns(t *testing.T) {
	ctx, problems := browser(t)
	st := newRunsStack(t)
	step := stepper(t, ctx, problems)
	sample := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Click(`#samples button[data-sample="` + name + `"]`)
	}

	step("open the page with a key", st.signIn()...)
	step("samples run in one click",
		sample("hello"), waitTextLong("#result-stdout", "Hello, World!"),
		sample("echo"), waitTextLong("#result-stdout", "Hello, echo!"),
		sample("go"), waitTextLong("#result-stdout", "Hello from Go, WasmWiz!"),
		sample("timeout"), waitTextLong("#result-status", "timeout"),
		sample("memory-bomb"), waitTextLong("#result-status", "memory_limit"),
	)
	step("a background sample opens in History and shows its output while it runs",
		sample("ticks"),
		chromedp.WaitVisible(chromedp.ID("run-detail")),
		pollLong(`document.getElementById("detail-stdout").textContent.includes("tick") &&
			document.getElementById("detail-state").textContent === "running"`),
	)
	var id string
	step("read its id", into(&id, chromedp.TextContent(chromedp.ID("detail-id"))))
	if !strings.HasPrefix(id, "run_") {
		t.Fatalf("detail id %q", id)
	}
	step("cancel it: its worker stops and it keeps its output",
		chromedp.Click(chromedp.ID("detail-cancel")),
		pollLong(`document.getElementById("detail-state").textContent === "cancelled"`),
		waitText("#detail-stdout", "tick"),
		poll(`document.getElementById("detail-cancel").hidden`),
	)
	screenshot(t, ctx, "run-detail")
	var rec wasmwiz.UsageRecord
	if code := st.apiGet(t, st.adminKey, "/api/v1/runs/"+id, &rec); code != 200 || rec.State != wasmwiz.RunCancelled {
		t.Fatalf("the cancelled run reads %d %+v", code, rec)
	}
	step("History lists the runs; Open shows one with its inputs, timings and output",
		chromedp.Click(chromedp.ID("detail-close")),
		chromedp.Click(chromedp.ID("tab-history")),
		idle("history-table"),
		poll(`document.querySelectorAll("#history-table tbody tr").length >= 6`),
		chromedp.Click(`#history-table tbody tr[data-id] button`),
		chromedp.WaitVisible(chromedp.ID("run-detail")),
		waitText("#detail-facts", "CPU"),
		waitText("#detail-facts", "Time limit"),
	)
	step("Re-run fills the Run form from the record",
		chromedp.Click(chromedp.ID("detail-rerun")),
		poll(`!document.getElementById("panel-run").hidden`),
		waitText("#run-state", "Re-run of"),
	)
	step("Usage draws runs per day by outcome and duration percentiles",
		chromedp.Click(chromedp.ID("tab-usage")),
		chromedp.WaitVisible("#usage-chart-runs svg rect.seg"),
		chromedp.WaitVisible("#usage-chart-durations svg polyline"),
		poll(`document.querySelectorAll("#usage-chart-runs rect.seg.ok").length >= 1 &&
			document.querySelectorAll("#usage-chart-runs rect.seg.timeout").length >= 1`),
	)
	screenshot(t, ctx, "runs")
	if p := problems(); len(p) > 0 {
		t.Fatalf("browser problems: %v", p)
	}
}
