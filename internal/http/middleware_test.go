package http_test

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wasmwiz/wasmwiz"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
)

func TestClientIP(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name   string
		remote string
		xff    string
		want   string
	}{
		{name: "direct", remote: "192.0.2.1:5555", want: "ip:192.0.2.1"},
		{name: "forged from outside", remote: "192.0.2.1:5555", xff: "203.0.113.9", want: "ip:192.0.2.1"},
		{name: "via trusted proxy", remote: "10.1.2.3:80", xff: "203.0.113.9", want: "ip:203.0.113.9"},
		{name: "client forges left of proxy", remote: "10.1.2.3:80", xff: "1.1.1.1, 203.0.113.9", want: "ip:203.0.113.9"},
		{name: "two trusted hops", remote: "10.1.2.3:80", xff: "203.0.113.9, 10.9.9.9", want: "ip:203.0.113.9"},
		{name: "garbage from proxy", remote: "10.1.2.3:80", xff: "not-an-ip", want: "ip:10.1.2.3"},
		{name: "ipv6", remote: "[2001:db8::1]:443", want: "ip:2001:db8::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, func(o *wwhttp.Options) { o.Auth, o.TrustedProxies = false, trusted })
			hdr := map[string]string{}
			if tt.xff != "" {
				hdr["X-Forwarded-For"] = tt.xff
			}
			res := f.do(request{method: "POST", path: "/api/v1/execute", body: bytes.NewReader(wasmHeader),
				contentType: "application/wasm", remoteAddr: tt.remote, header: hdr})
			if res.status != 200 {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			if len(f.rateKeys) != 1 || f.rateKeys[0] != tt.want {
				t.Errorf("rate keys %v, want [%s]", f.rateKeys, tt.want)
			}
		})
	}
}

func TestRequestIDAndHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	res := f.do(request{method: "GET", path: "/healthz", header: map[string]string{"X-Request-Id": "abc-123"}})
	if res.header.Get("X-Request-Id") != "abc-123" {
		t.Errorf("X-Request-Id = %q, want the caller's", res.header.Get("X-Request-Id"))
	}
	res = f.do(request{method: "GET", path: "/api/v1/nothing", header: map[string]string{"X-Request-Id": "bad id\r\nx"}})
	id := res.header.Get("X-Request-Id")
	if id == "" || strings.ContainsAny(id, " \r\n") {
		t.Errorf("X-Request-Id = %q, want a fresh one", id)
	}
	for h, want := range map[string]string{
		"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
		"Cache-Control": "no-store",
	} {
		if got := res.header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if res.status != 404 || res.errorCode(t) != wasmwiz.ENOTFOUND {
		t.Errorf("unknown route: %d %s", res.status, res.body)
	}
	// One access line per request, with the route pattern and the id.
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(f.logBuf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err == nil && m["msg"] == "request" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("%d access lines, want 2: %s", len(lines), f.logBuf.String())
	}
	if lines[0]["route"] != "GET /healthz" || lines[0]["request_id"] != "abc-123" || lines[0]["status"] != float64(200) {
		t.Errorf("access line %v", lines[0])
	}
	if lines[1]["route"] != "unmatched" || lines[1]["status"] != float64(404) {
		t.Errorf("access line %v", lines[1])
	}
}

func TestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	res := f.do(request{method: "PUT", path: "/api/v1/modules", key: userKey})
	if res.status != 405 || !strings.Contains(res.header.Get("Allow"), "GET") || !strings.Contains(res.header.Get("Allow"), "POST") {
		t.Errorf("status %d Allow %q", res.status, res.header.Get("Allow"))
	}
	res.errorCode(t)
}

// TestLongPathIsCut: a path as long as the request line may be (up to the
// 64 KiB header limit) is cut to 256 bytes, on a UTF-8 boundary and with
// a note of the cut, in the access log line and in the 404's message.
func TestLongPathIsCut(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	// "/api/v1/x" then "é"s: byte 256 falls inside one.
	path := "/api/v1/x" + strings.Repeat("%C3%A9", 20000)
	res := f.do(request{method: "GET", path: path, key: userKey})
	if res.status != 404 {
		t.Fatalf("status %d", res.status)
	}
	msg := res.errorMessage(t)
	if len(msg) > 400 || !strings.HasPrefix(msg, "no route for GET /api/v1/xéé") || !strings.Contains(msg, "cut at 256 of 40009 bytes") ||
		strings.ContainsRune(msg, utf8.RuneError) {
		t.Errorf("404 message of %d bytes: %.500s", len(msg), msg)
	}
	var logged string
	for _, l := range strings.Split(strings.TrimSpace(f.logBuf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err == nil && m["msg"] == "request" {
			logged, _ = m["path"].(string)
		}
	}
	if len(logged) > 300 || !strings.HasPrefix(logged, "/api/v1/xéé") || !strings.Contains(logged, "cut at 256") ||
		strings.ContainsRune(logged, utf8.RuneError) {
		t.Errorf("access log path of %d bytes: %.500s", len(logged), logged)
	}
	if len(f.logBuf.String()) > 2000 {
		t.Errorf("the log holds %d bytes for one request", len(f.logBuf.String()))
	}
	// Invalid UTF-8 is cut as well, and replaced.
	res = f.do(request{method: "GET", path: "/api/v1/" + strings.Repeat("%FF", 20000)})
	if msg := res.errorMessage(t); res.status != 404 || len(msg) > 1200 || !utf8.ValidString(msg) {
		t.Errorf("404 of invalid UTF-8: %d, message of %d bytes", res.status, len(msg))
	}
}
