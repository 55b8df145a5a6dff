package main

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// TestConfigReportsEveryProblem: a bad configuration names every bad
// variable at once, parse errors and production refusals alike, and a
// variable that did not parse is not blamed twice.
func TestConfigReportsEveryProblem(t *testing.T) {
	t.Parallel()
	vars := map[string]string{
		"WASMWIZ_PROFILE":         "production",
		"WASMWIZ_WORKERS":         "0",
		"WASMWIZ_MAX_MEMORY":      "lots",
		"WASMWIZ_LOG_FORMAT":      "xml",
		"WASMWIZ_AUTH":            "off",
		"WASMWIZ_TRUSTED_PROXIES": "0.0.0.0/0",
	}
	_, err := LoadConfig(func(k string) string { return vars[k] })
	msg := messageOf(err)
	if codeOf(err) != wasmwiz.EINVALID || !strings.HasPrefix(msg, "6 configuration problems:\n") {
		t.Fatalf("error %v", err)
	}
	for _, name := range []string{"WASMWIZ_WORKERS", "WASMWIZ_MAX_MEMORY", "WASMWIZ_LOG_FORMAT", "WASMWIZ_AUTH",
		"WASMWIZ_TRUSTED_PROXIES", "WASMWIZ_DATABASE_URL"} {
		if n := strings.Count(msg, "\n  "+name+": "); n != 1 {
			t.Errorf("%s is named %d times, want once:\n%s", name, n, msg)
		}
	}
	// One problem stays one line; the CLI prints them all.
	if _, err := LoadConfig(func(k string) string { return map[string]string{"WASMWIZ_WORKERS": "x"}[k] }); !strings.HasPrefix(messageOf(err), "WASMWIZ_WORKERS: ") {
		t.Fatalf("one problem: %v", err)
	}
	code, _, errOut := runMain([]string{"config"}, "", map[string]string{"WASMWIZ_WORKERS": "0", "WASMWIZ_LOG_LEVEL": "loud"})
	if code != 1 || !strings.Contains(errOut, "WASMWIZ_WORKERS") || !strings.Contains(errOut, "WASMWIZ_LOG_LEVEL") {
		t.Fatalf("wasmwiz config: exit %d, stderr %q", code, errOut)
	}
}

// TestConfigBounds: each variable below its bound is one problem, which
// names the bound and, where there is one, the reason for it.
func TestConfigBounds(t *testing.T) {
	t.Parallel()
	c, err := LoadConfig(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	c.MaxMemoryBytes, c.MaxTimeout, c.MaxFileWriteBytes, c.DatabaseTimeout = 64*wasmwiz.KiB-1, 0, 1, -time.Second
	c.HeaderTimeout, c.MinTransferRate, c.IdleTimeout, c.MaxBodyMemory = 0, 1023, 0, 16*wasmwiz.MiB-1
	want := []string{
		"WASMWIZ_MAX_MEMORY: must be at least 64KiB",
		"WASMWIZ_MAX_TIMEOUT: must be positive",
		"WASMWIZ_MAX_FILE_WRITE: must be at least 64KiB",
		"WASMWIZ_DATABASE_TIMEOUT: must be positive",
		"WASMWIZ_HEADER_TIMEOUT: must be positive",
		"WASMWIZ_MIN_TRANSFER_RATE: must be at least 1KiB: a slower bound lets a trickle hold a connection for hours",
		"WASMWIZ_IDLE_TIMEOUT: must be positive",
		"WASMWIZ_MAX_BODY_MEMORY: must be at least 16MiB: a smaller bound leaves room for hardly one large body",
	}
	if got := c.validate(); !reflect.DeepEqual(got, want) {
		t.Fatalf("problems\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	c.MaxMemoryBytes, c.MaxTimeout, c.MaxFileWriteBytes, c.DatabaseTimeout = 64*wasmwiz.KiB, 1, 64*wasmwiz.KiB, 1
	c.HeaderTimeout, c.MinTransferRate, c.IdleTimeout, c.MaxBodyMemory = 1, 1024, 1, 16*wasmwiz.MiB
	if got := c.validate(); len(got) != 0 {
		t.Fatalf("problems at the bounds: %q", got)
	}
}

// TestConfigPrintsWhatItReads: what `wasmwiz config` prints for every
// variable reads back as the same configuration, with the defaults and with
// a value other than the default for each variable (each row's reading and
// printing are made from one field, so a row cannot read one field and
// print another).
func TestConfigPrintsWhatItReads(t *testing.T) {
	t.Parallel()
	others := map[string]string{
		"WASMWIZ_PROFILE": "production", "WASMWIZ_ADDR": "0.0.0.0:9000", "WASMWIZ_METRICS_ADDR": "10.0.0.1:9090",
		"WASMWIZ_DATA_DIR": "/srv/w", "WASMWIZ_DATABASE_URL": "postgres://w@db.internal/w?sslmode=verify-full",
		"WASMWIZ_DATABASE_TIMEOUT": "7s", "WASMWIZ_REDIS_URL": "rediss://cache.internal:6380/1",
		"WASMWIZ_REDIS_TIMEOUT": "80ms", "WASMWIZ_AUTH": "on", "WASMWIZ_PLAINTEXT_HOSTS": "a.internal,b.internal",
		"WASMWIZ_METRICS_TOKEN": "t0ken", "WASMWIZ_TRUSTED_PROXIES": "10.1.0.0/16,192.168.1.7", "WASMWIZ_MAX_AUTH_FAILURES": "12",
		"WASMWIZ_MAX_USER_REQUESTS": "6", "WASMWIZ_USER_REQUEST_RATE": "50",
		"WASMWIZ_CACHE_DIR": "/var/cache/w", "WASMWIZ_CACHE_MAX": "3GiB", "WASMWIZ_FILES_DIR": "/srv/files",
		"WASMWIZ_COMPILE_CACHE": "96MiB", "WASMWIZ_WORKERS": "7", "WASMWIZ_MAX_CONCURRENT_RUNS": "9",
		"WASMWIZ_QUEUE_SIZE": "11", "WASMWIZ_QUEUE_TIMEOUT": "2s", "WASMWIZ_MAX_TIMEOUT": "90s",
		"WASMWIZ_MAX_MEMORY": "512MiB", "WASMWIZ_MAX_FILE_WRITE": "1GiB", "WASMWIZ_HEADER_TIMEOUT": "4s", "WASMWIZ_MIN_TRANSFER_RATE": "32KiB",
		"WASMWIZ_IDLE_TIMEOUT": "45s", "WASMWIZ_MAX_BODY_MEMORY": "128MiB", "WASMWIZ_MAX_HEADER_BYTES": "32KiB",
		"WASMWIZ_ASYNC_WORKERS": "3", "WASMWIZ_WEBHOOK_ALLOW": "10.9.0.0/24", "WASMWIZ_DRAIN_DELAY": "3s",
		"WASMWIZ_SHUTDOWN_GRACE": "20s", "WASMWIZ_RETENTION": "48h", "WASMWIZ_LOG_LEVEL": "debug",
		"WASMWIZ_LOG_FORMAT": "json",
	}
	for _, v := range configVars() {
		if _, ok := others[v.Name]; !ok {
			t.Errorf("%s has no other value in this test", v.Name)
		}
	}
	// Production wants auth on: its other value is read in development.
	authOff := map[string]string{"WASMWIZ_AUTH": "off"}
	for name, vars := range map[string]map[string]string{"defaults": {}, "others": others, "auth off": authOff} {
		c, err := LoadConfig(func(k string) string { return vars[k] })
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		printed := map[string]string{}
		for _, v := range configVars() {
			printed[v.Name] = v.get(c)
			if want, ok := vars[v.Name]; ok && want != v.Default && v.get(c) == v.Default {
				t.Errorf("%s=%s printed as the default %q", v.Name, want, v.get(c))
			}
		}
		again, err := LoadConfig(func(k string) string { return printed[k] })
		if err != nil {
			t.Fatalf("%s: reading back what was printed: %v", name, err)
		}
		again.databaseURLSet = c.databaseURLSet // the printed default path reads as a set one
		if !reflect.DeepEqual(again, c) {
			t.Errorf("%s: read back\n%+v\nwant\n%+v", name, again, c)
		}
	}
}

// TestLogDurationsAsText: the JSON log writes durations as text with a unit.
func TestLogDurationsAsText(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		newLogger(&Config{LogLevel: "info", LogFormat: format}, &buf).Info("x", "grace", 1500*time.Millisecond)
		if !strings.Contains(buf.String(), `"grace":"1.5s"`) && !strings.Contains(buf.String(), `grace=1.5s`) {
			t.Errorf("%s log: %s", format, buf.String())
		}
	}
}

// TestProductionChecksWhatTheDriversDo: the production profile reads the
// database and Redis URLs with the drivers' own parsers and refuses what
// could send a password in clear, wide trusted-proxy ranges and a public
// /metrics, every problem at once and each naming its variable.
func TestProductionChecksWhatTheDriversDo(t *testing.T) {
	t.Parallel()
	safe := map[string]string{
		"WASMWIZ_PROFILE":         "production",
		"WASMWIZ_ADDR":            "0.0.0.0:8080",
		"WASMWIZ_METRICS_ADDR":    "10.1.2.3:9090",
		"WASMWIZ_DATABASE_URL":    "postgres://app:pw@db.internal:5432/wasmwiz?sslmode=verify-full",
		"WASMWIZ_REDIS_URL":       "rediss://:pw@redis.internal:6380/0",
		"WASMWIZ_TRUSTED_PROXIES": "10.0.0.0/8,fd00::/32",
	}
	with := func(changes map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range safe {
			m[k] = v
		}
		for k, v := range changes {
			m[k] = v
		}
		return m
	}
	if _, err := LoadConfig(func(k string) string { return safe[k] }); err != nil {
		t.Fatalf("a safe production configuration: %v", err)
	}
	tests := []struct {
		name    string
		changes map[string]string
		want    map[string]string // variable → words in its problem; empty: accepted
	}{
		{"no user part", map[string]string{"WASMWIZ_DATABASE_URL": "postgres://db.internal/wasmwiz?sslmode=require"},
			map[string]string{"WASMWIZ_DATABASE_URL": "names no user"}},
		{"host in a host= parameter", map[string]string{"WASMWIZ_DATABASE_URL": "postgres://app:pw@localhost/wasmwiz?host=db.example.com&sslmode=disable"},
			map[string]string{"WASMWIZ_DATABASE_URL": "host db.example.com may be reached without TLS"}},
		{"no sslmode (prefer falls back to plain text)", map[string]string{"WASMWIZ_DATABASE_URL": "postgres://app:pw@db.internal/wasmwiz"},
			map[string]string{"WASMWIZ_DATABASE_URL": "host db.internal may be reached without TLS"}},
		{"a second host without TLS", map[string]string{"WASMWIZ_DATABASE_URL": "postgres://app:pw@db1.internal,db2.internal/wasmwiz?sslmode=allow"},
			map[string]string{"WASMWIZ_DATABASE_URL": "host db1.internal"}},
		{"loopback and sockets need no TLS", map[string]string{"WASMWIZ_DATABASE_URL": "postgres://app@127.0.0.1/wasmwiz?sslmode=disable&host=/run/postgresql",
			"WASMWIZ_REDIS_URL": "redis://localhost:6379/0"}, nil},
		{"a Redis socket on this host", map[string]string{"WASMWIZ_REDIS_URL": "unix:///run/redis/redis.sock?db=2"}, nil},
		{"a Redis URL of another scheme", map[string]string{"WASMWIZ_REDIS_URL": "http://redis.internal:6379"},
			map[string]string{"WASMWIZ_REDIS_URL": "unix:///path"}},
		{"plain Redis to a remote host", map[string]string{"WASMWIZ_REDIS_URL": "redis://:pw@redis.internal:6379/0"},
			map[string]string{"WASMWIZ_REDIS_URL": "use rediss://"}},
		{"hosts on a private network, named", map[string]string{"WASMWIZ_DATABASE_URL": "postgres://app:pw@postgres/wasmwiz?sslmode=disable",
			"WASMWIZ_REDIS_URL": "redis://redis:6379/0", "WASMWIZ_PLAINTEXT_HOSTS": "postgres, redis"}, nil},
		{"halves of the Internet", map[string]string{"WASMWIZ_TRUSTED_PROXIES": "0.0.0.0/1,128.0.0.0/1"},
			map[string]string{"WASMWIZ_TRUSTED_PROXIES": "wider than a /8"}},
		{"a /16 of IPv6", map[string]string{"WASMWIZ_TRUSTED_PROXIES": "2001::/16"},
			map[string]string{"WASMWIZ_TRUSTED_PROXIES": "wider than a /32"}},
		{"public /metrics", map[string]string{"WASMWIZ_METRICS_ADDR": ""},
			map[string]string{"WASMWIZ_METRICS_ADDR": "served to anyone"}},
		{"public /metrics with a token", map[string]string{"WASMWIZ_METRICS_ADDR": "", "WASMWIZ_METRICS_TOKEN": "s3cret"}, nil},
		{"all at once", map[string]string{"WASMWIZ_DATABASE_URL": "postgres://db.internal/x", "WASMWIZ_REDIS_URL": "redis://r.internal",
			"WASMWIZ_METRICS_ADDR": "", "WASMWIZ_TRUSTED_PROXIES": "0.0.0.0/0"},
			map[string]string{"WASMWIZ_DATABASE_URL": "names no user", "WASMWIZ_REDIS_URL": "rediss", "WASMWIZ_METRICS_ADDR": "anyone",
				"WASMWIZ_TRUSTED_PROXIES": "0.0.0.0/0"}},
	}
	for _, tt := range tests {
		vars := with(tt.changes)
		_, err := LoadConfig(func(k string) string { return vars[k] })
		if len(tt.want) == 0 {
			if err != nil {
				t.Errorf("%s: refused: %v", tt.name, err)
			}
			continue
		}
		msg := messageOf(err)
		if codeOf(err) != wasmwiz.EINVALID {
			t.Errorf("%s: %v, want EINVALID", tt.name, err)
			continue
		}
		for name, words := range tt.want {
			found := false
			for _, line := range strings.Split(msg, "\n") {
				line = strings.TrimSpace(line)
				if strings.HasPrefix(line, name+": ") && strings.Contains(line, words) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: no %s problem with %q in\n%s", tt.name, name, words, msg)
			}
		}
		if strings.Contains(msg, "pw@") {
			t.Errorf("%s: the message shows a password: %s", tt.name, msg)
		}
	}
}
