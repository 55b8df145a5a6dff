package http_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/wasmwiz/wasmwiz"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
	"github.com/wasmwiz/wasmwiz/internal/sqlite"
	"github.com/wasmwiz/wasmwiz/internal/sqlite/sqlitetest"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
	"github.com/wasmwiz/wasmwiz/internal/usage"
)

// findChromium returns the browser to drive, or skips (fails when
// WASMWIZ_TEST_REQUIRE_SERVICES=1) when there is none.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Skip(t, "no chromium on this machine", "install chromium (Debian: apt-get install chromium; .ci/run does)")
	return ""
}

// webStack is a real server for the browser: the in-process engine, a
// SQLite store on a temporary file, the in-memory limiter and the usage
// writer, over a real listener.
type webStack struct {
	ts       *httptest.Server
	adminKey string
}

// bootstrappedSQLite is a migrated SQLite store in a temporary file, closed
// when the test ends, with its first admin, whose key it returns; migrate,
// when set, migrates more on it (the queue's tables) before the admin.
func bootstrappedSQLite(t *testing.T, migrate func(ctx context.Context, db *sqlite.DB) error) (*sqlite.DB, string) {
	t.Helper()
	ctx := context.Background()
	db := sqlitetest.Open(t)
	if migrate != nil {
		if err := migrate(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	_, key, _, err := db.Bootstrap(ctx, "admin@example.com")
	if err != nil {
		t.Fatal(err)
	}
	return db, key
}

func newWebStack(t *testing.T, auth bool) *webStack {
	t.Helper()
	ctx := context.Background()
	eng := inProcessEngine(t)
	db, key := bootstrappedSQLite(t, nil)
	logger := slog.New(slog.DiscardHandler)
	usage := usage.New(db, usage.Options{FlushInterval: 20 * time.Millisecond, Logger: logger})
	srv, err := wwhttp.NewServer(wwhttp.Options{
		Users: db, Keys: db, Tiers: db, Modules: db, Runs: db,
		Engine: eng, Limiter: inmem.New(inmem.Options{}), Usage: usage,
		Auth: auth, Logger: logger,
		// The page works under the bounds serve applies by default.
		MaxUserRequests: wwhttp.DefaultMaxUserRequests, UserRequestRate: wwhttp.DefaultUserRequestRate,
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	// Cleanups run last-in first-out: the listener closes before the usage
	// writer flushes and the store closes.
	t.Cleanup(func() { _ = usage.Close(ctx) })
	t.Cleanup(ts.Close)
	return &webStack{ts: ts, adminKey: key}
}

// apiGet calls the API directly, to check what the browser did.
func (s *webStack) apiGet(t *testing.T, key, path string, v any) int {
	t.Helper()
	res, b := testenv.Do(t, "GET", s.ts.URL+path, key, "", nil)
	if v != nil && res.StatusCode == 200 {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, b)
		}
	}
	return res.StatusCode
}

// sharedBrowser is the one headless chromium of the test binary: started
// by the first browser test, closed by TestMain after all of them. A
// chromium start costs more CPU than most of these tests' steps, so the
// tests share the process, not its state: each gets a browser context of its
// own (browser).
var sharedBrowser struct {
	once   sync.Once
	ctx    context.Context // the browser's chromedp context; nil until started
	cancel func()
	dir    string
	err    error
}

// startBrowser starts the shared chromium, with a fresh profile and no
// network beyond the test servers, once.
func startBrowser(path string) (context.Context, error) {
	b := &sharedBrowser
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "wasmwiz-chromium-")
		if b.err != nil {
			return
		}
		opts := []chromedp.ExecAllocatorOption{
			chromedp.ExecPath(path),
			chromedp.Headless,
			chromedp.NoSandbox,
			chromedp.DisableGPU,
			chromedp.NoFirstRun,
			chromedp.NoDefaultBrowserCheck,
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("disable-extensions", true),
			chromedp.Flag("disable-dev-shm-usage", true),
			chromedp.UserDataDir(b.dir),
			chromedp.WindowSize(1280, 1000),
		}
		actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		bctx, cancelBrowser := chromedp.NewContext(actx)
		b.ctx, b.cancel = bctx, func() { cancelBrowser(); cancelAlloc() }
		// The first call starts the browser and must not carry a timeout
		// (it would stop the browser).
		if err := chromedp.Do(bctx); err != nil {
			b.err = fmt.Errorf("starting chromium: %w", err)
		}
	})
	return b.ctx, b.err
}

// closeBrowser stops the shared chromium, if a test started it, and
// removes its profile.
func closeBrowser() {
	b := &sharedBrowser
	if b.cancel != nil {
		b.cancel()
	}
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// browser opens a tab of the shared headless chromium in a browser context
// of its own (its own cookies, storage and cache, closed with the test),
// and collects script errors, exceptions and CSP violations from its
// console. Browser tests skip in -short mode.
func browser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test: not in -short mode")
	}
	path := findChromium(t)
	bctx, err := startBrowser(path)
	if err != nil {
		t.Fatal(err)
	}
	if bctx.Err() != nil {
		t.Fatalf("the shared chromium has stopped: %v", context.Cause(bctx))
	}
	tctx, cancelTab := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancelTab)
	// The first call opens the tab; the steps after it get a timeout.
	messages := chromedp.Console(tctx)
	if err := chromedp.Do(tctx); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	ctx, cancelTimeout := context.WithTimeout(tctx, 5*time.Minute)
	t.Cleanup(cancelTimeout)

	var mu sync.Mutex
	var problems []string
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			// Network entries are the API's deliberate 4xx answers; any other
			// error (a CSP violation, a script error) is a bug of the page.
			if (m.Type == chromedp.ConsoleError || m.IsException()) && m.Source != "network" {
				mu.Lock()
				problems = append(problems, m.String())
				mu.Unlock()
			}
		}
	}()
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), problems...)
	}
}

// stepper returns step, which runs actions in the browser and ends the
// test at the first that fails, saying what the step did and what the
// browser reported.
func stepper(t *testing.T, ctx context.Context, problems func() []string) func(what string, actions ...chromedp.Action[chromedp.Void]) {
	return func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v (browser problems: %v)", what, err, problems())
		}
	}
}

// js quotes s as a JavaScript string literal.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// waitText waits until the element sel's text contains want.
func waitText(sel, want string) chromedp.Action[chromedp.Void] {
	return poll(fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && e.textContent.includes(%s); })()`,
		js(sel), js(want)))
}

// idle waits until the list or panel with this id is not loading.
func idle(id string) chromedp.Action[chromedp.Void] {
	return poll(fmt.Sprintf(`!document.getElementById(%s).hasAttribute("aria-busy")`, js(id)))
}

// cardsProblem is a script that checks the table with this id in its
// narrow layout, and returns what is wrong ("" when nothing): the header
// row is hidden, each cell of the first row is shown below the one before,
// inside the screen, labelled with its column's name.
func cardsProblem(id string) string {
	return fmt.Sprintf(`(() => {
		const t = document.getElementById(%s);
		const rows = t.tBodies[0].rows;
		if (rows.length === 0) return "no rows";
		if (getComputedStyle(t.tHead).display !== "none") return "the header row is shown";
		const heads = [...t.tHead.rows[0].cells];
		const cells = [...rows[0].cells];
		if (cells.length !== heads.length) return "the row has " + cells.length + " cells for " + heads.length + " columns";
		if (document.documentElement.scrollWidth > window.innerWidth) return "the page scrolls sideways";
		const scroller = t.closest(".scroll");
		if (scroller && scroller.scrollWidth > scroller.clientWidth) return "the table scrolls sideways";
		let top = -1;
		for (let i = 0; i < cells.length; i++) {
			const b = cells[i].getBoundingClientRect();
			if (b.height === 0 || b.left < 0 || b.right > window.innerWidth) return "cell " + i + " is not on the screen";
			if (b.top <= top) return "cell " + i + " is beside the one before, not below";
			top = b.top;
			const name = heads[i].querySelector(".sr") ? "" : heads[i].textContent.trim();
			const label = getComputedStyle(cells[i], "::before").content;
			if (name !== "" && label !== JSON.stringify(name)) return "cell " + i + " is labelled " + label + ", not " + name;
		}
		return "";
	})()`, js(id))
}

// allowDownloads lets the page's downloads land in dir.
func allowDownloads(dir string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		// The browser is shared: the behaviour is set for this test's
		// browser context only.
		_, err := chromedp.CallBrowser(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
			Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir,
			BrowserContextID: chromedp.FromContext(ctx).BrowserContextID})
		return err
	})
}

// downloaded waits until the browser has written the file name of size
// bytes into dir (allowDownloads), and returns it.
func downloaded(t *testing.T, dir, name string, size int) []byte {
	t.Helper()
	return waitDownload(t, dir, name, func(b []byte) bool { return len(b) == size })
}

// downloadedZip waits until the browser has written the whole zip name
// into dir (allowDownloads), and returns its files' content by name; each
// is read through the reader's CRC-32 check of the page's zip.
func downloadedZip(t *testing.T, dir, name string) map[string]string {
	t.Helper()
	files := map[string]string{}
	waitDownload(t, dir, name, func(b []byte) bool {
		zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return false
		}
		clear(files)
		for _, f := range zr.File {
			rc, err := f.Open()
			if err != nil {
				return false
			}
			data, err := io.ReadAll(rc)
			_ = rc.Close()
			if err != nil {
				t.Errorf("%s in the zip: %v", f.Name, err)
			}
			files[f.Name] = string(data)
		}
		return true
	})
	return files
}

// waitDownload waits until the file name in dir is complete, which
// complete says from its bytes so far, and returns them.
func waitDownload(t *testing.T, dir, name string, complete func([]byte) bool) []byte {
	t.Helper()
	var b []byte
	testenv.WaitFor(t, "the download "+filepath.Join(dir, name), func() bool {
		var err error
		b, err = os.ReadFile(filepath.Join(dir, name))
		return err == nil && complete(b)
	})
	return b
}

// waitJS waits until expr is truthy.
func waitJS(expr string) chromedp.Action[chromedp.Void] { return poll(expr) }

func poll(expr string) chromedp.Action[chromedp.Void] {
	p := chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(15*time.Second))
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := p(ctx, t)
		return chromedp.Void{}, err
	}
}

// into runs a and stores its value in dst.
func into[T any](dst *T, a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		v, err := a(ctx, t)
		*dst = v
		return chromedp.Void{}, err
	}
}

// screenshot saves the page as a PNG in WASMWIZ_TEST_SCREENSHOT_DIR, when
// set, for a person to look at.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("WASMWIZ_TEST_SCREENSHOT_DIR")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBrowserWebUI drives the page in a real browser against a real server:
// key, inline runs with stdin, the module registry, history, usage, keys,
// API errors, keyboard tabs and a narrow window.
func TestBrowserWebUI(t *testing.T) {
	ctx, problems := browser(t)
	st := newWebStack(t, true)
	hello, echo := testmodule.Path(t, "hello.wasm"), testmodule.Path(t, "echo.wasm")
	var runIDs []string
	readRunID := func() string {
		var id string
		if err := chromedp.Do(ctx, into(&id, chromedp.TextContent(chromedp.ID("result-id")))); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(id, "run_") {
			t.Fatalf("run id %q", id)
		}
		runIDs = append(runIDs, id)
		return id
	}
	step := stepper(t, ctx, problems)

	// Revoking, deleting and disabling ask first: accept every confirm() and remember
	// what it asked.
	var dialogMu sync.Mutex
	var asked []string
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			dialogMu.Lock()
			asked = append(asked, ev.Message)
			dialogMu.Unlock()
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	lastAsked := func() string {
		dialogMu.Lock()
		defer dialogMu.Unlock()
		if len(asked) == 0 {
			return ""
		}
		return asked[len(asked)-1]
	}

	step("open the page, use the key; it survives a reload",
		chromedp.Navigate(st.ts.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("api-key")),
		waitText("#whoami", "Paste an API key"),
		chromedp.SendKeys(chromedp.ID("api-key"), st.adminKey),
		chromedp.Click(chromedp.ID("key-save")),
		waitText("#whoami", "Signed in as admin@example.com"),
		chromedp.Reload(),
		waitText("#whoami", "Signed in as admin@example.com"),
		waitJS(fmt.Sprintf(`document.getElementById("api-key").value === %s && localStorage.getItem("wasmwiz.apiKey") === %s`, js(st.adminKey), js(st.adminKey))),
	)

	step("a run before choosing a file is refused by the page",
		chromedp.Click(chromedp.ID("run-submit")),
		waitText("#run-error", "choose a .wasm file"),
	)

	var stdout, status string
	step("run hello.wasm",
		chromedp.SetUploadFiles(chromedp.ID("run-wasm"), []string{hello}),
		chromedp.Click(chromedp.ID("run-submit")),
		waitText("#result-stdout", "Hello, World!"),
		into(&stdout, chromedp.TextContent(chromedp.ID("result-stdout"))),
		into(&status, chromedp.TextContent(chromedp.ID("result-status"))),
	)
	if stdout != "Hello, World!\n" || status != "ok" {
		t.Errorf("hello: stdout %q status %q", stdout, status)
	}
	helloRun := readRunID()
	var quota string
	step("the rate-limit headers are shown", into(&quota, chromedp.TextContent(chromedp.ID("result-quota"))))
	if quota != "4999 of 5000 (full again in 60 s)" {
		t.Errorf("quota shows %q", quota)
	}

	step("run echo.wasm with stdin",
		chromedp.SetUploadFiles(chromedp.ID("run-wasm"), []string{echo}),
		chromedp.SendKeys(chromedp.ID("run-stdin"), "  echo from the browser \n"),
		chromedp.Click(chromedp.ID("run-submit")),
		waitText("#result-stdout", "echo from the browser"),
		into(&stdout, chromedp.TextContent(chromedp.ID("result-stdout"))),
	)
	if stdout != "echo from the browser" {
		t.Errorf("echo: stdout %q, want the trimmed stdin", stdout)
	}

	echoRun := readRunID()
	if echoRun == helloRun {
		t.Fatal("the echo run shows the hello run's id")
	}
	screenshot(t, ctx, "run")

	step("keyboard: arrow keys move between tabs",
		chromedp.Focus(chromedp.ID("tab-run")),
		chromedp.KeyEvent(kb.ArrowRight),
		waitJS(`document.getElementById("tab-modules").getAttribute("aria-selected") === "true" && !document.getElementById("panel-modules").hidden && document.activeElement.id === "tab-modules"`),
	)

	step("uploading a file that is not wasm shows the API's error",
		chromedp.SetUploadFiles(chromedp.ID("upload-wasm"), []string{testmodule.Path(t, "echo.c")}),
		chromedp.Click(chromedp.ID("upload-submit")),
		waitText("#modules-error", "EINVALID"),
	)

	// The name tries to inject markup; the page must show it as text.
	const hostileName = `greeter <img src=x onerror="window.pwned=1">`
	var moduleID string
	step("upload hello.wasm to the registry",
		chromedp.SetUploadFiles(chromedp.ID("upload-wasm"), []string{hello}),
		chromedp.SendKeys(chromedp.ID("upload-name"), hostileName),
		chromedp.SendKeys(chromedp.ID("upload-description"), "says hello"),
		chromedp.Click(chromedp.ID("upload-submit")),
		waitText("#upload-result", "_start"),
		into(&moduleID, chromedp.TextContent(chromedp.ID("upload-id"))),
	)
	if !strings.HasPrefix(moduleID, "mod_") {
		t.Fatalf("module id %q", moduleID)
	}
	row := fmt.Sprintf(`#modules-table tr[data-id=%s]`, js(moduleID))
	var pwned bool
	step("a hostile module name is shown as text, never run as HTML",
		waitText(row, hostileName),
		waitText("#upload-result", hostileName),
		into(&pwned, chromedp.Evaluate[bool](`window.pwned === 1 || document.querySelector("#panel-modules img") !== null`)),
	)
	if pwned {
		t.Error("the module name was interpreted as HTML")
	}
	screenshot(t, ctx, "modules")
	step("the module is listed; run it from its row",
		idle("modules-table"),
		waitText(row, "greeter"),
		waitJS(`document.getElementById("modules-error").hidden`),
		chromedp.Click(chromedp.CSS(row+" button")),
		waitJS(fmt.Sprintf(`document.getElementById("run-module").value === %s && !document.getElementById("panel-run").hidden`, js(moduleID))),
		chromedp.Evaluate[chromedp.Void](`void (document.getElementById("run-stdin").value = "")`),
		chromedp.Click(chromedp.ID("run-submit")),
		waitJS(fmt.Sprintf(`document.getElementById("result-id").textContent !== %s`, js(echoRun))),
		into(&stdout, chromedp.TextContent(chromedp.ID("result-stdout"))),
	)
	if stdout != "Hello, World!\n" {
		t.Errorf("stored module run: stdout %q", stdout)
	}
	storedRun := readRunID()

	// History reads the usage records, which the usage writer stores a
	// moment after each run: wait for them through the API first.
	testenv.WaitFor(t, "the three runs' records", func() bool {
		var runs struct{ Total int }
		return st.apiGet(t, st.adminKey, "/api/v1/runs", &runs) == 200 && runs.Total >= 3
	})
	var storedRow string
	step("history lists the runs",
		chromedp.Click(chromedp.ID("tab-history")),
		waitText(fmt.Sprintf(`#history-table tr[data-id=%s]`, js(helloRun)), "ok"),
		waitText(fmt.Sprintf(`#history-table tr[data-id=%s]`, js(echoRun)), "ok"),
		into(&storedRow, chromedp.TextContent(chromedp.CSS(fmt.Sprintf(`#history-table tr[data-id=%s]`, js(storedRun))))),
		waitText("#history-pager", "3 items"),
	)
	screenshot(t, ctx, "history")
	var historyCards, modulesCards, wideTable string
	step("at 390 px, history and modules are cards: every column of a row shown with its name, nothing wider than the screen",
		chromedp.EmulateViewport(390, 844),
		into(&historyCards, chromedp.Evaluate[string](cardsProblem("history-table"))),
		chromedp.Click(chromedp.ID("tab-modules")),
		idle("modules-table"),
		waitText(row, "greeter"),
		into(&modulesCards, chromedp.Evaluate[string](cardsProblem("modules-table"))),
	)
	screenshot(t, ctx, "phone-modules")
	step("wide again, the modules are a table",
		chromedp.EmulateViewport(1280, 1000),
		into(&wideTable, chromedp.Evaluate[string](`(() => {
			const t = document.getElementById("modules-table");
			const cells = t.tBodies[0].rows[0].cells;
			if (getComputedStyle(t.tHead).display === "none") return "the header row is hidden";
			if (cells[1].getBoundingClientRect().top !== cells[0].getBoundingClientRect().top) return "the cells are stacked";
			return "";
		})()`)),
		chromedp.Click(chromedp.ID("tab-history")),
		waitText(fmt.Sprintf(`#history-table tr[data-id=%s]`, js(helloRun)), "ok"),
	)
	for name, problem := range map[string]string{"history at 390 px": historyCards, "modules at 390 px": modulesCards, "modules at 1280 px": wideTable} {
		if problem != "" {
			t.Errorf("%s: %s", name, problem)
		}
	}
	step("the open panel survives a reload",
		chromedp.Reload(),
		waitJS(`location.hash === "#history" && !document.getElementById("panel-history").hidden && document.getElementById("panel-run").hidden`),
		waitText(fmt.Sprintf(`#history-table tr[data-id=%s]`, js(helloRun)), "ok"),
	)
	if !strings.Contains(storedRow, moduleID) {
		t.Errorf("history row of the stored module's run %q lacks the module id %s", storedRow, moduleID)
	}
	step("history filters by status",
		chromedp.Focus(chromedp.ID("history-status")),
		chromedp.Evaluate[chromedp.Void](`{ const s = document.getElementById("history-status"); s.value = "trap"; s.dispatchEvent(new Event("change")); }`),
		waitJS(`!document.getElementById("history-empty").hidden && document.querySelectorAll("#history-table tbody tr").length === 0`),
	)

	step("usage counts the runs, the stored modules and run output against the tier",
		chromedp.Click(chromedp.ID("tab-usage")),
		waitText("#usage-tier", "enterprise"),
		waitText("#usage-day-text", "3 of 1000000"),
		waitText("#usage-modules-text", "1 of 10000 (9999 left)"),
		waitText("#usage-module-bytes-text", " of 20 GiB ("),
		waitText("#usage-run-bytes-text", " of 100 GiB ("),
		waitText("#usage-limits", "Modules a user may keep stored"),
		waitText("#usage-limits", "Runs in flight at once"),
		waitText("#usage-limits", "Linear memory of a run"),
		waitText("#usage-limits", "Bytes of the files sent into a run"),
		waitText("#usage-limits", "Bytes a run's files may grow by"),
		waitText("#usage-limits", "Bytes of the files that come back from a run"),
	)
	screenshot(t, ctx, "usage")

	var runsToday string
	step("the admin panel: today's figures and the users",
		chromedp.Click(chromedp.ID("tab-admin")),
		idle("admin-stats"),
		waitText("#admin-users", "admin@example.com"),
		into(&runsToday, chromedp.TextContent(chromedp.CSS(`#admin-stats dd[data-stat="Runs today"]`))),
		waitText("#admin-modules", moduleID),
		waitJS(`document.querySelectorAll("#admin-days tbody tr").length >= 1`),
		chromedp.SendKeys(chromedp.ID("admin-email"), "nobody@example.com\n"),
		waitJS(`!document.getElementById("admin-users-empty").hidden`),
	)
	if runsToday != "3" {
		t.Errorf("admin stats: runs today %q, want 3", runsToday)
	}

	var bobSecret string
	step("an admin creates a user with a key: shown once",
		chromedp.SendKeys(chromedp.ID("user-email"), "bob@example.com"),
		chromedp.Evaluate[chromedp.Void](`void (document.getElementById("user-tier").value = "basic")`),
		chromedp.Click(chromedp.ID("user-create")),
		waitJS(`!document.getElementById("user-secret-box").hidden`),
		into(&bobSecret, chromedp.TextContent(chromedp.ID("user-secret"))),
		chromedp.Evaluate[chromedp.Void](`{ const f = document.getElementById("admin-email"); f.value = ""; f.form.requestSubmit(); }`),
		idle("admin-users"),
		waitText("#admin-users", "bob@example.com"),
	)
	screenshot(t, ctx, "admin")
	bobTier := func() string {
		t.Helper()
		var me struct {
			User wasmwiz.User `json:"user"`
		}
		if code := st.apiGet(t, bobSecret, "/api/v1/me", &me); code != http.StatusOK {
			return fmt.Sprintf("status %d", code)
		}
		return me.User.Tier
	}
	if got := bobTier(); got != "basic" {
		t.Fatalf("bob's key: tier %q, want basic", got)
	}
	step("an admin changes a user's tier",
		chromedp.Evaluate[chromedp.Void](`{ const s = document.querySelector('select[aria-label="Tier of bob@example.com"]'); s.value = "pro"; s.dispatchEvent(new Event("change")); }`),
		waitJS(`(() => { const s = document.querySelector('select[aria-label="Tier of bob@example.com"]'); return !!s && s.value === "pro" && !s.disabled; })()`),
		idle("admin-users"),
	)
	if got := bobTier(); got != "pro" {
		t.Errorf("after the change bob's tier is %q, want pro", got)
	}
	step("an admin disables a user; there is no button to disable oneself",
		waitJS(`!document.querySelector('button[aria-label="Disable admin@example.com"]')`),
		chromedp.Click(chromedp.CSS(`button[aria-label="Disable bob@example.com"]`)),
		waitJS(`!!document.querySelector('button[aria-label="Enable bob@example.com"]')`),
	)
	if got := bobTier(); got != "status 401" {
		t.Errorf("a disabled user's key: %s, want status 401", got)
	}

	var secret string
	step("create a key: shown once",
		chromedp.Click(chromedp.ID("tab-keys")),
		waitText("#keys-table", "bootstrap"),
		chromedp.SendKeys(chromedp.ID("key-name"), "laptop"),
		chromedp.Click(chromedp.ID("key-create")),
		waitJS(`!document.getElementById("key-secret-box").hidden`),
		into(&secret, chromedp.TextContent(chromedp.ID("key-secret"))),
		waitText("#keys-table", "laptop"),
	)
	if !wasmwiz.LooksLikeAPIKey(secret) {
		t.Fatalf("shown secret %q is not a key", secret)
	}
	screenshot(t, ctx, "key-secret")
	var me struct {
		User wasmwiz.User `json:"user"`
	}
	if code := st.apiGet(t, secret, "/api/v1/me", &me); code != 200 || me.User.Email != "admin@example.com" {
		t.Errorf("the new key: GET /api/v1/me status %d user %q", code, me.User.Email)
	}
	var stillShown bool
	step("dismissing the secret forgets it",
		chromedp.Click(chromedp.ID("key-dismiss")),
		into(&stillShown, chromedp.Evaluate[bool](fmt.Sprintf(`document.documentElement.outerHTML.includes(%s)`, js(secret)))),
	)
	if stillShown {
		t.Error("the secret is still in the page after Done")
	}
	screenshot(t, ctx, "keys")

	step("revoke the new key",
		idle("keys-table"),
		chromedp.Click(chromedp.CSS(`button[aria-label="Revoke key laptop"]`)),
		waitJS(`!document.querySelector('button[aria-label="Revoke key laptop"]')`),
	)
	if q := lastAsked(); !strings.Contains(q, "laptop") {
		t.Errorf("revoking asked %q", q)
	}
	if code := st.apiGet(t, secret, "/api/v1/me", nil); code != http.StatusUnauthorized {
		t.Errorf("the revoked key: GET /api/v1/me status %d, want 401", code)
	}

	var byIDRun string
	step("run a stored module by its id",
		chromedp.Click(chromedp.ID("tab-run")),
		chromedp.Click(chromedp.ID("source-stored")),
		chromedp.SendKeys(chromedp.ID("run-module-id"), moduleID),
		chromedp.Evaluate[chromedp.Void](`void (document.getElementById("run-module").value = "")`),
		chromedp.Click(chromedp.ID("run-submit")),
		waitJS(fmt.Sprintf(`document.getElementById("result-id").textContent !== %s && document.getElementById("run-state").textContent.startsWith("Finished")`, js(storedRun))),
		into(&stdout, chromedp.TextContent(chromedp.ID("result-stdout"))),
		into(&byIDRun, chromedp.TextContent(chromedp.ID("result-id"))),
	)
	if stdout != "Hello, World!\n" {
		t.Errorf("run by module id: stdout %q", stdout)
	}
	var run struct {
		ModuleID string `json:"module_id"`
	}
	testenv.WaitFor(t, "the record of run "+byIDRun, func() bool {
		return st.apiGet(t, st.adminKey, "/api/v1/runs/"+byIDRun, &run) == http.StatusOK
	})
	if run.ModuleID != moduleID {
		t.Errorf("run by id recorded module %q, want %s", run.ModuleID, moduleID)
	}

	step("delete the stored module",
		chromedp.Click(chromedp.ID("tab-modules")),
		// Opening the tab reloads the list: act on the new rows only.
		idle("modules-table"),
		waitText(row, "greeter"),
		chromedp.Click(chromedp.CSS(row+" button.danger")),
		waitJS(fmt.Sprintf(`!document.querySelector(%s) && !document.getElementById("modules-empty").hidden`, js(row))),
	)
	if q := lastAsked(); !strings.Contains(q, moduleID) {
		t.Errorf("deleting asked %q", q)
	}
	if code := st.apiGet(t, st.adminKey, "/api/v1/modules/"+moduleID, nil); code != http.StatusNotFound {
		t.Errorf("the deleted module: status %d, want 404", code)
	}

	var values, trap string
	step("call a plain module's function with params",
		chromedp.Click(chromedp.ID("tab-run")),
		chromedp.Click(chromedp.ID("source-file")),
		chromedp.SetUploadFiles(chromedp.ID("run-wasm"), []string{testmodule.Path(t, "add.wasm")}),
		chromedp.Click(chromedp.CSS("#run-advanced summary")),
		chromedp.SendKeys(chromedp.ID("run-function"), "add"),
		chromedp.SendKeys(chromedp.ID("run-params"), "2,3"),
		chromedp.Click(chromedp.ID("run-submit")),
		waitJS(`!document.getElementById("result-values-box").hidden`),
		into(&values, chromedp.TextContent(chromedp.ID("result-values"))),
	)
	if values != "i32 5" {
		t.Errorf("add(2,3) shows %q, want i32 5", values)
	}
	step("an unknown function shows the API's error",
		chromedp.Evaluate[chromedp.Void](`void (document.getElementById("run-function").value = "nope")`),
		chromedp.Click(chromedp.ID("run-submit")),
		waitText("#run-error", "EINVALID"),
		waitJS(`document.getElementById("run-result").hidden`),
	)
	step("a trap shows its status and message",
		chromedp.SetUploadFiles(chromedp.ID("run-wasm"), []string{testmodule.Path(t, "traps.wasm")}),
		chromedp.Evaluate[chromedp.Void](`void (document.getElementById("run-function").value = "div_by_zero", document.getElementById("run-params").value = "")`),
		chromedp.Click(chromedp.ID("run-submit")),
		waitText("#result-status", "trap"),
		waitJS(`!document.getElementById("result-trap-box").hidden && document.getElementById("run-error").hidden`),
		into(&trap, chromedp.TextContent(chromedp.ID("result-trap"))),
	)
	if !strings.Contains(strings.ToLower(trap), "divide by zero") {
		t.Errorf("trap shows %q", trap)
	}
	screenshot(t, ctx, "trap")

	// Binary stdin from a file through echo: the output is not UTF-8, so
	// the API sends base64 and the page shows a hex dump.
	binIn := filepath.Join(t.TempDir(), "input.bin")
	if err := os.WriteFile(binIn, []byte("\xff\xfeAB\x00\x80"), 0o644); err != nil {
		t.Fatal(err)
	}
	var hexOut, note string
	step("binary stdin from a file, output as hex, run with Ctrl+Enter",
		chromedp.SetUploadFiles(chromedp.ID("run-wasm"), []string{echo}),
		chromedp.Evaluate[chromedp.Void](`void (document.getElementById("run-function").value = "")`),
		chromedp.SetUploadFiles(chromedp.ID("run-stdin-file"), []string{binIn}),
		chromedp.Focus(chromedp.ID("run-stdin")),
		chromedp.KeyEvent(kb.Enter, chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		waitText("#result-stdout-note", "binary"),
		into(&hexOut, chromedp.TextContent(chromedp.ID("result-stdout"))),
		into(&note, chromedp.TextContent(chromedp.ID("result-stdout-note"))),
	)
	if want := "00000000  ff fe 41 42 00 80"; !strings.HasPrefix(hexOut, want) || !strings.HasSuffix(hexOut, "|..AB..|") {
		t.Errorf("hex dump %q, want it to start %q and end |..AB..|", hexOut, want)
	}
	if note != "(binary, 6 bytes, shown as hex)" {
		t.Errorf("stdout note %q", note)
	}
	// Download gives the raw bytes, not the hex dump.
	downloads := t.TempDir()
	var binRun string
	step("download the binary stdout",
		allowDownloads(downloads),
		into(&binRun, chromedp.TextContent(chromedp.ID("result-id"))),
		chromedp.Click(chromedp.ID("result-stdout-download")),
	)
	if got := downloaded(t, downloads, binRun+".stdout", 6); string(got) != "\xff\xfeAB\x00\x80" {
		t.Errorf("downloaded stdout %q", got)
	}
	step("text and a file for stdin at once is refused by the page",
		chromedp.SendKeys(chromedp.ID("run-stdin"), "text"),
		chromedp.Click(chromedp.ID("run-submit")),
		waitText("#run-error", "not both"),
		chromedp.Click(chromedp.ID("run-stdin-clear")),
		waitJS(`document.getElementById("run-stdin-file").files.length === 0`),
	)

	inFile := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(inFile, []byte("from the page"), 0o644); err != nil {
		t.Fatal(err)
	}
	inZip := filepath.Join(t.TempDir(), "lib.zip")
	if err := os.WriteFile(inZip, testenv.Zip(t, testenv.ArchiveEntry{Name: "lib/a.txt", Data: "from the zip"}), 0o644); err != nil {
		t.Fatal(err)
	}
	var filesTable, filesRun string
	step("files in (a file and an archive), files out",
		chromedp.Evaluate[chromedp.Void](`void (document.getElementById("run-stdin").value = "")`),
		chromedp.Evaluate[chromedp.Void](`void (document.getElementById("run-files-box").open = true)`),
		chromedp.SetUploadFiles(chromedp.ID("run-wasm"), []string{testmodule.Path(t, "fsprobe.wasm")}),
		chromedp.SetUploadFiles(chromedp.ID("run-files"), []string{inFile}),
		chromedp.SetUploadFiles(chromedp.ID("run-archive"), []string{inZip}),
		chromedp.SendKeys(chromedp.ID("run-args"), "mkdir\nout\ncopy\nin.txt\nout/copy.txt\ncopy\nlib/a.txt\nout/lib.txt\n"),
		chromedp.SendKeys(chromedp.ID("run-mount"), "/work"),
		chromedp.SendKeys(chromedp.ID("run-outputs"), "out/"),
		chromedp.Click(chromedp.ID("run-submit")),
		waitText("#result-files", "out/lib.txt"),
		into(&filesTable, chromedp.TextContent(chromedp.ID("result-files"))),
		into(&stdout, chromedp.TextContent(chromedp.ID("result-stdout"))),
		into(&filesRun, chromedp.TextContent(chromedp.ID("result-id"))),
		waitJS(`!document.getElementById("result-files-zip").hidden`),
	)
	if stdout != "mkdir out: ok\ncopy in.txt out/copy.txt: ok 13\ncopy lib/a.txt out/lib.txt: ok 12\n" || !strings.Contains(filesTable, "13 B") || !strings.Contains(filesTable, "12 B") {
		t.Errorf("files: stdout %q, table %q", stdout, filesTable)
	}
	// Each file downloads by itself (under its base name), and all of them
	// as one zip the page builds from the answer.
	step("download the files one by one and as a zip",
		chromedp.Evaluate[chromedp.Void](`for (const b of document.querySelectorAll("#result-files tbody button")) b.click()`),
		chromedp.Click(chromedp.ID("result-files-zip")),
		chromedp.Evaluate[chromedp.Void](`for (const id of ["run-args", "run-mount", "run-outputs", "run-files", "run-archive"]) document.getElementById(id).value = ""`),
	)
	if b := downloaded(t, downloads, "copy.txt", 13); string(b) != "from the page" {
		t.Errorf("downloaded copy.txt %q", b)
	}
	if b := downloaded(t, downloads, "lib.txt", 12); string(b) != "from the zip" {
		t.Errorf("downloaded lib.txt %q", b)
	}
	if zipped := downloadedZip(t, downloads, filesRun+"-files.zip"); len(zipped) != 2 || zipped["out/copy.txt"] != "from the page" || zipped["out/lib.txt"] != "from the zip" {
		t.Errorf("the page's zip holds %v", zipped)
	}

	var argsOut string
	step("args one per line and env as KEY=value lines",
		chromedp.Evaluate[chromedp.Void](`void (document.getElementById("run-stdin").value = "")`),
		chromedp.SetUploadFiles(chromedp.ID("run-wasm"), []string{testmodule.Path(t, "args_env.wasm")}),
		chromedp.SendKeys(chromedp.ID("run-args"), "first arg\n\nsecond=2\n"),
		chromedp.SendKeys(chromedp.ID("run-env"), "NAME=ww\nEMPTY=\n"),
		chromedp.Click(chromedp.ID("run-submit")),
		waitText("#result-stdout", "random_differs"),
		into(&argsOut, chromedp.TextContent(chromedp.ID("result-stdout"))),
	)
	for _, want := range []string{"argv[1]=first arg\n", "argv[2]=second=2\n", "env NAME=ww\n", "env EMPTY=\n"} {
		if !strings.Contains(argsOut, want) {
			t.Errorf("args/env run printed %q, want it to contain %q", argsOut, want)
		}
	}
	if strings.Contains(argsOut, "argv[3]") {
		t.Errorf("an empty line became an argument: %q", argsOut)
	}
	step("an env line without = is refused by the page",
		chromedp.SendKeys(chromedp.ID("run-env"), "oops"),
		chromedp.Click(chromedp.ID("run-submit")),
		waitText("#run-error", `"oops" is not KEY=value`),
	)
	step("a lowered timeout stops a guest that loops",
		chromedp.Evaluate[chromedp.Void](`for (const id of ["run-args", "run-env"]) document.getElementById(id).value = ""`),
		chromedp.SetUploadFiles(chromedp.ID("run-wasm"), []string{testmodule.Path(t, "loop.wasm")}),
		chromedp.SendKeys(chromedp.ID("run-timeout"), "200ms"),
		chromedp.Click(chromedp.ID("run-submit")),
		waitText("#result-status", "timeout"),
		waitText("#run-state", "Finished: timeout."),
	)

	var overflow bool
	step("narrow window: nothing wider than the screen",
		chromedp.EmulateViewport(360, 740),
		chromedp.Click(chromedp.ID("tab-run")),
		waitJS(`!document.getElementById("panel-run").hidden`),
		into(&overflow, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`)),
	)
	if overflow {
		t.Error("the page scrolls sideways at 360 px")
	}
	screenshot(t, ctx, "narrow")

	step("a revoked key is refused, with the API's code",
		chromedp.Evaluate[chromedp.Void](`void (document.getElementById("api-key").value = "")`),
		chromedp.SendKeys(chromedp.ID("api-key"), secret),
		chromedp.Click(chromedp.ID("key-save")),
		waitText("#whoami", "Key not accepted: EUNAUTHORIZED"),
	)

	var stored string
	step("forget the key",
		chromedp.Click(chromedp.ID("key-forget")),
		waitText("#whoami", "Paste an API key"),
		into(&stored, chromedp.Evaluate[string](`localStorage.getItem("wasmwiz.apiKey") || ""`)),
	)
	if stored != "" {
		t.Error("the key stays in localStorage after Forget")
	}
	if p := problems(); len(p) > 0 {
		t.Errorf("browser reported problems: %v", p)
	}
}

// TestBrowserAnonymous: with auth off the page runs uploaded files without
// a key, and says what a key would add.
func TestBrowserAnonymous(t *testing.T) {
	ctx, problems := browser(t)
	st := newWebStack(t, false)
	var stdout string
	err := chromedp.Do(ctx,
		chromedp.Navigate(st.ts.URL+"/"),
		waitText("#whoami", "run anonymously"),
		chromedp.SetUploadFiles(chromedp.ID("run-wasm"), []string{testmodule.Path(t, "hello.wasm")}),
		chromedp.Click(chromedp.ID("run-submit")),
		waitText("#result-stdout", "Hello, World!"),
		into(&stdout, chromedp.TextContent(chromedp.ID("result-stdout"))),
		chromedp.Click(chromedp.ID("tab-history")),
		waitText("#history-error", "EUNAUTHORIZED"),
		waitJS(`document.getElementById("tab-admin").hidden`),
	)
	if err != nil {
		t.Fatalf("%v (browser problems: %v)", err, problems())
	}
	if stdout != "Hello, World!\n" {
		t.Errorf("stdout %q", stdout)
	}

	// A run that floods stdout to the free tier's 1 MiB cap: the page shows
	// the first 256 KiB and says so; Download has all of it.
	var flood struct {
		Status, Note string
		Shown        int
	}
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("tab-run")),
		chromedp.SetUploadFiles(chromedp.ID("run-wasm"), []string{testmodule.Path(t, "flood.wasm")}),
		chromedp.Click(chromedp.ID("run-submit")),
		waitText("#result-status", "output_limit"),
		into(&flood.Status, chromedp.TextContent(chromedp.ID("result-status"))),
		into(&flood.Note, chromedp.TextContent(chromedp.ID("result-stdout-note"))),
		into(&flood.Shown, chromedp.Evaluate[int](`document.getElementById("result-stdout").textContent.length`)),
	)
	if err != nil {
		t.Fatalf("flood: %v (browser problems: %v)", err, problems())
	}
	if flood.Note != "(1048576 bytes; the first 262144 characters shown) (truncated at the limit)" || flood.Shown != 262144 {
		t.Errorf("flood: note %q, %d characters shown", flood.Note, flood.Shown)
	}
	if p := problems(); len(p) > 0 {
		t.Errorf("browser reported problems: %v", p)
	}

	// A dark system theme gets the dark colours.
	var light, dark string
	bodyBackground := chromedp.Evaluate[string](`getComputedStyle(document.body).backgroundColor`)
	err = chromedp.Do(ctx,
		into(&light, bodyBackground),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}})
			return err
		}),
		into(&dark, bodyBackground),
	)
	if err != nil {
		t.Fatal(err)
	}
	if light != "rgb(246, 247, 249)" || dark != "rgb(18, 20, 26)" {
		t.Errorf("body background: light %s, dark %s", light, dark)
	}
	screenshot(t, ctx, "dark")

	// The page's CSP holds in the browser: an injected inline script does
	// not run, and the violation is reported (which also shows that the
	// problem collector above sees what it should).
	var ran bool
	err = chromedp.Do(ctx,
		chromedp.Evaluate[chromedp.Void](`{ const s = document.createElement("script"); s.textContent = "window.inlineRan = true"; document.body.append(s); }`),
		into(&ran, chromedp.Evaluate[bool](`window.inlineRan === true`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if ran {
		t.Error("an inline script ran despite the CSP")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !slices.ContainsFunc(problems(), func(p string) bool { return strings.Contains(p, "Content Security Policy") }) {
		if time.Now().After(deadline) {
			t.Fatalf("no CSP violation reported for an inline script; problems: %v", problems())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
