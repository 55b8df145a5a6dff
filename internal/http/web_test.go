package http_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
)

// webRoutes are the web UI's routes, which /api/openapi.json leaves out
// (TestOpenAPICoversRoutes excuses exactly these; TestRoutesRegistered
// checks that they are routes).
var webRoutes = map[string]bool{"GET /{$}": true, "GET /static/{file}": true}

var (
	assetURL  = regexp.MustCompile(`(?:src|href)="(/static/[^"]+)"`)
	scriptTag = regexp.MustCompile(`<script\b[^>]*>`)
	inlineOn  = regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	styleAttr = regexp.MustCompile(`(?i)\sstyle\s*=`)
)

// TestWebPage: GET / renders the page with its own strict CSP, keeps the
// middleware's other security headers, holds no inline script or style (the
// CSP would block them), and tells the script whether auth is on.
func TestWebPage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		auth     bool
		wantAuth string
	}{
		{name: "auth on", auth: true, wantAuth: `data-auth="on"`},
		{name: "auth off", auth: false, wantAuth: `data-auth="off"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, func(o *wwhttp.Options) { o.Auth = tt.auth })
			res := f.do(request{method: "GET", path: "/"})
			if res.status != http.StatusOK {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			if ct := res.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			if cc := res.header.Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("Cache-Control %q, want no-cache (the page names asset versions)", cc)
			}
			csp := res.header.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'",
				"connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("CSP %q lacks %q", csp, want)
				}
			}
			for _, bad := range []string{"unsafe-inline", "unsafe-eval", "*", "http:", "https:"} {
				if strings.Contains(csp, bad) {
					t.Errorf("CSP %q allows %q", csp, bad)
				}
			}
			for h, want := range map[string]string{
				"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
			} {
				if got := res.header.Get(h); got != want {
					t.Errorf("%s = %q, want %q", h, got, want)
				}
			}
			page := string(res.body)
			if !strings.Contains(page, tt.wantAuth) {
				t.Errorf("page lacks %s", tt.wantAuth)
			}
			for _, tag := range scriptTag.FindAllString(page, -1) {
				if !strings.Contains(tag, `src="/static/`) {
					t.Errorf("inline or foreign script %s", tag)
				}
			}
			if inlineOn.MatchString(page) {
				t.Errorf("page has an inline event handler: %s", inlineOn.FindString(page))
			}
			if styleAttr.MatchString(page) || strings.Contains(page, "<style") {
				t.Error("page has inline style")
			}
			assets := assetURL.FindAllStringSubmatch(page, -1)
			if len(assets) < 3 {
				t.Fatalf("page references %d static assets, want the script, the stylesheet and the icon", len(assets))
			}
			for _, a := range assets {
				url := strings.ReplaceAll(a[1], "&amp;", "&")
				r := f.do(request{method: "GET", path: url})
				if r.status != http.StatusOK {
					t.Errorf("GET %s: status %d", url, r.status)
				}
				if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
					t.Errorf("GET %s: Cache-Control %q, want immutable for a versioned URL", url, cc)
				}
			}
		})
	}
}

// TestWebStatic: static files with their content types and cache headers,
// conditional requests, and 404 in the error shape for anything else.
func TestWebStatic(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	tests := []struct {
		name        string
		method      string
		path        string
		status      int
		contentType string
		cache       string
		code        string
	}{
		{name: "script", method: "GET", path: "/static/app.js", status: 200, contentType: "text/javascript; charset=utf-8", cache: "no-cache"},
		{name: "stylesheet", method: "GET", path: "/static/app.css", status: 200, contentType: "text/css; charset=utf-8", cache: "no-cache"},
		{name: "icon", method: "GET", path: "/static/favicon.svg", status: 200, contentType: "image/svg+xml", cache: "no-cache"},
		{name: "stale version is revalidated", method: "GET", path: "/static/app.js?v=000000000000", status: 200, contentType: "text/javascript; charset=utf-8", cache: "no-cache"},
		{name: "head", method: "HEAD", path: "/static/app.css", status: 200, contentType: "text/css; charset=utf-8", cache: "no-cache"},
		{name: "page head", method: "HEAD", path: "/", status: 200, contentType: "text/html; charset=utf-8", cache: "no-cache"},
		{name: "unknown file", method: "GET", path: "/static/nope.js", status: 404, code: "ENOTFOUND"},
		{name: "encoded traversal", method: "GET", path: "/static/..%2fweb.go", status: 404, code: "ENOTFOUND"},
		{name: "the page template is not static", method: "GET", path: "/static/index.html", status: 404, code: "ENOTFOUND"},
		{name: "subdirectory", method: "GET", path: "/static/a/app.js", status: 404, code: "ENOTFOUND"},
		{name: "directory", method: "GET", path: "/static/", status: 404, code: "ENOTFOUND"},
		{name: "other page", method: "GET", path: "/index.html", status: 404, code: "ENOTFOUND"},
		{name: "post to the page", method: "POST", path: "/", status: 405, code: "EINVALID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := f.do(request{method: tt.method, path: tt.path})
			if res.status != tt.status {
				t.Fatalf("status %d, want %d: %s", res.status, tt.status, res.body)
			}
			if tt.code != "" {
				if got := res.errorCode(t); got != tt.code {
					t.Errorf("code %s, want %s", got, tt.code)
				}
				return
			}
			if got := res.header.Get("Content-Type"); got != tt.contentType {
				t.Errorf("Content-Type %q, want %q", got, tt.contentType)
			}
			if got := res.header.Get("Cache-Control"); got != tt.cache {
				t.Errorf("Cache-Control %q, want %q", got, tt.cache)
			}
			if res.header.Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no nosniff")
			}
			if tt.method == "HEAD" && len(res.body) != 0 {
				t.Errorf("HEAD answered %d body bytes", len(res.body))
			}
			if tt.method == "GET" {
				want, err := os.ReadFile(filepath.Join("web", "static", strings.TrimPrefix(strings.SplitN(tt.path, "?", 2)[0], "/static/")))
				if err != nil {
					t.Fatal(err)
				}
				if string(res.body) != string(want) {
					t.Errorf("body is not the file (%d bytes, want %d)", len(res.body), len(want))
				}
			}
		})
	}
	t.Run("405 allows GET", func(t *testing.T) {
		t.Parallel()
		res := f.do(request{method: "POST", path: "/"})
		if allow := res.header.Get("Allow"); !strings.Contains(allow, "GET") {
			t.Errorf("Allow %q", allow)
		}
	})
	t.Run("etag revalidation", func(t *testing.T) {
		t.Parallel()
		first := f.do(request{method: "GET", path: "/static/app.js"})
		etag := first.header.Get("ETag")
		if etag == "" {
			t.Fatal("no ETag")
		}
		again := f.do(request{method: "GET", path: "/static/app.js", header: map[string]string{"If-None-Match": etag}})
		if again.status != http.StatusNotModified {
			t.Errorf("If-None-Match: status %d, want 304", again.status)
		}
		other := f.do(request{method: "GET", path: "/static/app.css", header: map[string]string{"If-None-Match": etag}})
		if other.status != http.StatusOK {
			t.Errorf("another file's ETag: status %d, want 200", other.status)
		}
	})
}

// TestWebKeepsAPIHeaders: giving the page its own CSP leaves the API's
// strict policy alone.
func TestWebKeepsAPIHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	for _, path := range []string{"/api/openapi.json", "/healthz", "/nope"} {
		res := f.do(request{method: "GET", path: path})
		if csp := res.header.Get("Content-Security-Policy"); csp != "default-src 'none'; frame-ancestors 'none'" {
			t.Errorf("%s: CSP %q", path, csp)
		}
	}
}

// TestWebScriptMatchesPage: every element the script looks up by a literal
// id exists in the page, so a renamed id cannot silently break a panel.
func TestWebScriptMatchesPage(t *testing.T) {
	t.Parallel()
	js, err := os.ReadFile(filepath.Join("web", "static", "app.js"))
	if err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join("web", "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, m := range regexp.MustCompile(`\sid="([^"]+)"`).FindAllStringSubmatch(string(page), -1) {
		if ids[m[1]] {
			t.Errorf("id %q appears twice in the page", m[1])
		}
		ids[m[1]] = true
	}
	used := regexp.MustCompile(`\$\("([A-Za-z0-9_-]+)"\)`).FindAllStringSubmatch(string(js), -1)
	if len(used) < 40 {
		t.Fatalf("found only %d id lookups in app.js", len(used))
	}
	for _, m := range used {
		if !ids[m[1]] {
			t.Errorf("app.js looks up #%s, which the page does not have", m[1])
		}
	}
	// Labels point at real controls.
	for _, m := range regexp.MustCompile(`<label[^>]*\sfor="([^"]+)"`).FindAllStringSubmatch(string(page), -1) {
		if !ids[m[1]] {
			t.Errorf("label for=%q names no element", m[1])
		}
	}
}

// TestWebPageAccessible: every form control has a label (a <label for> or
// an enclosing <label>), and every button says its type, so that none
// submits a form by accident.
func TestWebPageAccessible(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("web", "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	labelled := map[string]bool{}
	for _, m := range regexp.MustCompile(`<label[^>]*\sfor="([^"]+)"`).FindAllStringSubmatch(page, -1) {
		labelled[m[1]] = true
	}
	control := regexp.MustCompile(`<(input|select|textarea)\b[^>]*>`)
	id := regexp.MustCompile(`\sid="([^"]+)"`)
	enclosed := regexp.MustCompile(`<label[^>]*>\s*$`)
	n := 0
	for _, loc := range control.FindAllStringIndex(page, -1) {
		tag := page[loc[0]:loc[1]]
		n++
		m := id.FindStringSubmatch(tag)
		if m == nil {
			t.Errorf("control without an id: %s", tag)
			continue
		}
		if !labelled[m[1]] && !enclosed.MatchString(page[:loc[0]]) {
			t.Errorf("control #%s has no label", m[1])
		}
	}
	if n < 20 {
		t.Errorf("found only %d form controls", n)
	}
	for _, tag := range regexp.MustCompile(`<button\b[^>]*>`).FindAllString(page, -1) {
		if !strings.Contains(tag, ` type="`) {
			t.Errorf("button without a type: %s", tag)
		}
	}
}

// BenchmarkWebPage: the page and a versioned asset through every
// middleware (docs/PERFORMANCE.md, "Web UI").
func BenchmarkWebPage(b *testing.B) {
	srv, err := wwhttp.NewServer(wwhttp.Options{Auth: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	js := regexp.MustCompile(`/static/app\.js\?v=[0-9a-f]+`).FindString(rec.Body.String())
	if js == "" {
		b.Fatal("no versioned app.js in the page")
	}
	for _, c := range []struct{ name, path string }{{"page", "/"}, {"app.js", js}} {
		path := c.path
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}
