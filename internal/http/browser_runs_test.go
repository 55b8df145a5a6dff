package http_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/wasmwiz/wasmwiz"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
	"github.com/wasmwiz/wasmwiz/internal/queue"
	"github.com/wasmwiz/wasmwiz/internal/sqlite"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
	"github.com/wasmwiz/wasmwiz/internal/usage"
)

// newRunsStack is newWebStack with background runs: the queue on the
// SQLite store, and live events in process.
func newRunsStack(t *testing.T) *webStack {
	t.Helper()
	ctx := context.Background()
	eng := inProcessEngine(t)
	db, key := bootstrappedSQLite(t, func(ctx context.Context, db *sqlite.DB) error {
		return queue.MigrateSQLite(sqlite.WithoutCallTimeout(ctx), db.QueueDB()) // as serve migrates
	})
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
		// The page works under the bounds serve applies by default.
		MaxUserRequests: wwhttp.DefaultMaxUserRequests, UserRequestRate: wwhttp.DefaultUserRequestRate,
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
		// The state event can come well before the result's record (the
		// replica stops the run at its next heartbeat, then writes it).
		waitTextLong("#detail-stdout", "tick"),
		pollLong(`document.getElementById("detail-cancel").hidden`),
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

// TestBrowserRunFiles: a background run's files show in its record in
// History as a result's do: each with its path (markup in a name is text),
// size and a Download of the bytes the guest wrote, a file past the tier's
// stored output listed as not kept, and "Download all" as a zip; a run
// whose outputs matched nothing says so, and one that asked for none shows
// no files.
func TestBrowserRunFiles(t *testing.T) {
	ctx, problems := browser(t)
	st := newRunsStack(t)
	step := stepper(t, ctx, problems)

	// The admin's tier keeps 1 KiB of a background run's files: a 2 KiB
	// file is listed without its content, smaller ones are kept.
	const stored = 1024
	var tier map[string]any
	if code := st.apiGet(t, st.adminKey, "/api/v1/admin/tiers/enterprise", &tier); code != http.StatusOK {
		t.Fatalf("reading the tier: %d", code)
	}
	tier["max_stored_output_bytes"] = stored
	delete(tier, "updated_at")
	if code, b, _ := testenv.DoJSON(t, "PUT", st.ts.URL+"/api/v1/admin/tiers/enterprise", st.adminKey, tier, nil); code != http.StatusOK {
		t.Fatalf("lowering the tier's stored output: %d %s", code, b)
	}

	// Two background runs through the API: one asks for no files, one for
	// files that the guest does not write.
	hello, err := os.ReadFile(testmodule.Path(t, "hello.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	queue := func(outputs []string) string {
		t.Helper()
		body := map[string]any{"async": true, "wasm_base64": hello}
		if outputs != nil {
			body["outputs"] = outputs
		}
		code, b, _ := testenv.DoJSON(t, "POST", st.ts.URL+"/api/v1/execute", st.adminKey, body, nil)
		var queued struct{ ID string }
		if err := json.Unmarshal(b, &queued); code != http.StatusAccepted || err != nil || queued.ID == "" {
			t.Fatalf("queueing a run: %d %s", code, b)
		}
		return queued.ID
	}
	noFiles, noMatch := queue(nil), queue([]string{"out/"})

	const hostile = `out/<img src=x onerror="window.pwned=1">&amp;.txt`
	binary := "\x00\xff\xfe binary \x80\n"
	stdin := filepath.Join(t.TempDir(), "stdin.bin")
	if err := os.WriteFile(stdin, []byte(binary), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"mkdir", "out", "write", hostile, "hostile", "copy", "-", "out/data.bin", "fill", "out/big.txt", "2048"}
	var id string
	step("open the page with a key", st.signIn()...)
	step("queue a background run that writes files, from the page; it opens in History and ends with its files",
		chromedp.SetUploadFiles(chromedp.ID("run-wasm"), []string{testmodule.Path(t, "fsprobe.wasm")}),
		chromedp.SetUploadFiles(chromedp.ID("run-stdin-file"), []string{stdin}),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`void (document.getElementById("run-args").value = %s)`, js(strings.Join(args, "\n")))),
		chromedp.Evaluate[chromedp.Void](`void (document.getElementById("run-files-box").open = true)`),
		chromedp.SendKeys(chromedp.ID("run-outputs"), "out/"),
		chromedp.Click(chromedp.ID("run-async")),
		chromedp.Click(chromedp.ID("run-submit")),
		chromedp.WaitVisible(chromedp.ID("run-detail")),
		pollLong(`document.getElementById("detail-state").textContent === "done" &&
			document.querySelectorAll("#detail-files tbody tr").length === 3`),
		into(&id, chromedp.TextContent(chromedp.ID("detail-id"))),
	)
	var rec wasmwiz.UsageRecord
	if code := st.apiGet(t, st.adminKey, "/api/v1/runs/"+id, &rec); code != http.StatusOK || rec.Status != wasmwiz.StatusOK {
		t.Fatalf("the run reads %d %+v", code, rec)
	}
	var kept []string
	for _, f := range rec.Files {
		kept = append(kept, fmt.Sprintf("%s %d %t %q", f.Path, f.Size, f.Omitted, f.Data))
	}
	if want := []string{hostile + ` 7 false "hostile"`, `out/big.txt 2048 true ""`, fmt.Sprintf("out/data.bin %d false %q", len(binary), binary)}; !slices.Equal(kept, want) {
		t.Fatalf("the record keeps files %q, want %q (stdout %q)", kept, want, rec.Stdout)
	}

	// rows is what the detail's files table shows: per row its cells'
	// text, and whether it has a Download button.
	rows := func() []string {
		t.Helper()
		var got []string
		step("read the files table", into(&got, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#detail-files tbody tr")].map((tr) =>
			[...tr.cells].map((td) => td.textContent).join(" | ") + (tr.querySelector("button") ? " [Download]" : ""))`)))
		return got
	}
	shown := func(what string) {
		t.Helper()
		want := []string{
			hostile + " | 7 B | " + rec.Files[0].SHA256[:12] + "… | Download [Download]",
			"out/big.txt | 2.0 KiB | " + rec.Files[1].SHA256[:12] + "… | not kept: over your tier's stored output or files out",
			fmt.Sprintf("out/data.bin | %d B | %s… | Download [Download]", len(binary), rec.Files[2].SHA256[:12]),
		}
		if got := rows(); !slices.Equal(got, want) {
			t.Errorf("%s: the files table shows\n%q\nwant\n%q", what, got, want)
		}
		var markup bool
		step("the hostile name is text", into(&markup, chromedp.Evaluate[bool](`window.pwned !== undefined ||
			document.querySelector("#detail-files img") !== null ||
			[...document.querySelectorAll("#detail-files tbody td")].some((td) => td.children.length > 0 && !td.querySelector("button"))`)))
		if markup {
			t.Errorf("%s: a file name was read as HTML", what)
		}
	}
	shown("followed live to its end")

	step("History: a run that asked for no files shows none",
		chromedp.Click(chromedp.ID("detail-close")),
		chromedp.Click(chromedp.ID("tab-history")),
		idle("history-table"),
		chromedp.Click(fmt.Sprintf(`#history-table tr[data-id=%s] button`, js(noFiles))),
		waitText("#detail-id", noFiles),
		waitText("#detail-state", "done"),
		waitJS(`document.getElementById("detail-files-box").hidden`),
	)
	var note string
	var zipShown bool
	step("a run whose outputs matched nothing says so",
		chromedp.Click(fmt.Sprintf(`#history-table tr[data-id=%s] button`, js(noMatch))),
		waitText("#detail-id", noMatch),
		waitJS(`!document.getElementById("detail-files-box").hidden`),
		into(&note, chromedp.TextContent(chromedp.ID("detail-files-note"))),
		into(&zipShown, chromedp.Evaluate[bool](`!document.getElementById("detail-files-zip").hidden`)),
	)
	if note != "(no file matched the outputs)" || zipShown || len(rows()) != 0 {
		t.Errorf("no file matched: note %q, zip button shown %t, rows %q", note, zipShown, rows())
	}
	step("the run with files opens from its row",
		chromedp.Click(fmt.Sprintf(`#history-table tr[data-id=%s] button`, js(id))),
		waitText("#detail-id", id),
		waitJS(`document.querySelectorAll("#detail-files tbody tr").length === 3`),
	)
	shown("opened from History")
	screenshot(t, ctx, "run-files")

	downloads := t.TempDir()
	step("download a file, and all as a zip",
		allowDownloads(downloads),
		chromedp.Click(`#detail-files tbody tr:nth-child(3) button`),
		chromedp.Click(chromedp.ID("detail-files-zip")),
	)
	if got := downloaded(t, downloads, "data.bin", len(binary)); string(got) != binary {
		t.Errorf("downloaded data.bin %q, want %q", got, binary)
	}
	if zipped := downloadedZip(t, downloads, id+"-files.zip"); len(zipped) != 2 || zipped[hostile] != "hostile" || zipped["out/data.bin"] != binary {
		t.Errorf("the page's zip holds %q", zipped)
	}
	if p := problems(); len(p) > 0 {
		t.Fatalf("browser problems: %v", p)
	}
}
