package http

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"sync"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// The web UI: one page (GET /) that is a client of the REST API, and its
// static assets (GET /static/{file}), all embedded in the binary so that the
// page works with no network beyond the server itself.

//go:embed web/index.html web/static
var webFiles embed.FS

// pageCSP is the Content-Security-Policy of the page and its assets. The
// API's policy (default-src 'none') forbids scripts and styles; the page gets
// its own rather than loosening the API's: scripts and styles only from this
// origin (no inline code, no eval), fetch only to this origin, no frames, no
// forms posting anywhere, no <base> tricks.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"

// staticAsset is one embedded file with what its answers need.
type staticAsset struct {
	name        string
	body        []byte
	contentType string
	etag        string // strong ETag: the content hash
	version     string // first 12 hex digits of the hash, the ?v= of its URL
}

// webAssets holds the parsed page template and the static files.
type webAssets struct {
	page   *template.Template
	static map[string]*staticAsset
}

// contentTypes maps the extensions the static directory may hold to their
// types; a file with another extension is refused at start, so no answer
// ever depends on the host's MIME tables or on sniffing.
var contentTypes = map[string]string{
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
	".txt":  "text/plain; charset=utf-8",
	".json": "application/json; charset=utf-8",
	".wasm": "application/wasm",
}

// loadWebAssets parses the page and indexes the static files. It fails only
// when the embedded files are broken, which a unit test catches.
func loadWebAssets() (*webAssets, error) {
	a := &webAssets{static: map[string]*staticAsset{}}
	entries, err := fs.ReadDir(webFiles, "web/static")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		ct, ok := contentTypes[path.Ext(e.Name())]
		if !ok {
			return nil, fmt.Errorf("web/static/%s: no content type for its extension", e.Name())
		}
		body, err := webFiles.ReadFile("web/static/" + e.Name())
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(body)
		h := hex.EncodeToString(sum[:])
		a.static[e.Name()] = &staticAsset{
			name: e.Name(), body: body, contentType: ct,
			etag: `"` + h + `"`, version: h[:12],
		}
	}
	a.page, err = template.New("index.html").Funcs(template.FuncMap{
		// asset returns the URL of a static file with its content version,
		// so that a changed file is a new URL and old ones can be cached
		// for good.
		"asset": func(name string) (string, error) {
			s, ok := a.static[name]
			if !ok {
				return "", fmt.Errorf("no static file %q", name)
			}
			return "/static/" + name + "?v=" + s.version, nil
		},
	}).ParseFS(webFiles, "web/index.html")
	if err != nil {
		return nil, err
	}
	return a, nil
}

// embeddedWebAssets is loadWebAssets once per process: the files are part
// of the binary and never change, and nothing writes to what it returns, so
// every server shares one copy rather than copying and hashing the static
// files' megabytes again (a test binary starts hundreds of servers).
var embeddedWebAssets = sync.OnceValues(loadWebAssets)

// pageData is what the page template receives.
type pageData struct {
	// Auth tells the script whether runs need a key: with auth off it offers
	// anonymous inline runs.
	Auth bool
}

// registerWebRoutes adds the page and its assets. They are wrapped in
// http.CrossOriginProtection (DESIGN rule 10): today they answer GET only,
// which it lets through, but any form-like route added here later is
// protected from the start.
func (s *Server) registerWebRoutes() {
	assets, page, err := buildWeb(pageData{Auth: s.opts.Auth})
	if err != nil {
		// The embedded files are part of the binary, so this is a broken
		// build: the API keeps working and the pages answer 500, with the
		// reason in the log, rather than the server refusing to start.
		s.log.Error("web UI disabled: its embedded files are broken", "err", err)
	}
	cop := http.NewCrossOriginProtection()
	web := func(pattern string, fn handlerFunc) {
		s.routes = append(s.routes, Route{Method: "GET", Pattern: pattern})
		h := s.route("GET "+pattern, func(w http.ResponseWriter, r *http.Request) error {
			if err != nil {
				return wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "web UI files are broken: %v", err)
			}
			w.Header().Set("Content-Security-Policy", pageCSP)
			return fn(w, r)
		})
		s.mux.Handle("GET "+pattern, cop.Handler(h))
	}
	web("/{$}", func(w http.ResponseWriter, r *http.Request) error {
		return servePage(w, r, page)
	})
	web("/static/{file}", func(w http.ResponseWriter, r *http.Request) error {
		return serveStatic(w, r, assets)
	})
}

// buildWeb loads the embedded files and renders the page, which depends
// only on the server's options, once.
func buildWeb(data pageData) (*webAssets, []byte, error) {
	assets, err := embeddedWebAssets()
	if err != nil {
		return nil, nil, err
	}
	var buf bytes.Buffer
	if err := assets.page.Execute(&buf, data); err != nil {
		return nil, nil, fmt.Errorf("rendering the page: %w", err)
	}
	return assets, buf.Bytes(), nil
}

// servePage answers the rendered page. It is never cached without asking:
// it names the current asset versions.
func servePage(w http.ResponseWriter, r *http.Request, page []byte) error {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Length", strconv.Itoa(len(page)))
	if r.Method != http.MethodHead {
		_, _ = w.Write(page)
	}
	return nil
}

// serveStatic answers one embedded file: 404 (ENOTFOUND) for any other
// name. A URL carrying the file's current version (?v=) may be cached for a
// year; any other URL is revalidated with its ETag each time.
func serveStatic(w http.ResponseWriter, r *http.Request, a *webAssets) error {
	name := r.PathValue("file")
	f, ok := a.static[name]
	if !ok {
		return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "no static file %q", name)
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("ETag", f.etag)
	if r.URL.Query().Get("v") == f.version {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	// No modification time: the ETag is the validator.
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
	return nil
}
