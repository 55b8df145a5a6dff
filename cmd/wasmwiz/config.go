package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wasmwiz/wasmwiz"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/postgres"
	"github.com/wasmwiz/wasmwiz/internal/redis"
)

// Config is the whole configuration, built once from WASMWIZ_* variables by
// LoadConfig, validated before anything starts and passed down.
type Config struct {
	Profile           string // development or production
	Addr              string
	MetricsAddr       string // empty: /metrics on Addr
	DataDir           string
	DatabaseURL       string
	databaseURLSet    bool
	DatabaseTimeout   time.Duration // each wait for the database, at most
	RedisURL          string
	RedisTimeout      time.Duration
	Auth              bool
	TrustedProxies    []netip.Prefix
	MaxAuthFailures   int      // API keys that do not authenticate, per client address and minute; 0 no bound
	MaxUserRequests   int      // one user's requests in flight on this replica, but runs (event streams as they open); 0 no bound
	UserRequestRate   int      // one user's requests a second on this replica (bursts of twice it), but runs; its refused runs in a bucket of their own at this rate; 0 no bound
	PlaintextHosts    []string // hosts the database and Redis may be reached on without TLS (production)
	MetricsToken      string   // when set, /metrics wants it as a bearer token
	CacheDir          string
	CacheMaxBytes     int64 // bound of CacheDir's files; 0 none
	FilesDir          string
	CompileCacheBytes int64

	Workers           int           // guest worker processes
	MaxConcurrentRuns int           // runs in flight on this replica
	QueueSize         int           // runs waiting for a slot before 503
	QueueTimeout      time.Duration // how long one may wait
	MaxTimeout        time.Duration // clamps every tier's wall time
	MaxMemoryBytes    int64         // clamps every tier's memory
	MaxFileWriteBytes int64         // clamps every tier's max_file_write_bytes

	HeaderTimeout   time.Duration // a request's headers must arrive within it; also the grace of bodies and answers
	MinTransferRate int64         // bytes per second a body or an answer must move at after HeaderTimeout
	IdleTimeout     time.Duration // a keep-alive connection without a request is closed after it
	MaxHeaderBytes  int64         // a request's headers, at most
	MaxBodyMemory   int64         // large request bodies held at once, at most (bytes, declared or capped)

	AsyncWorkers int            // background runs this replica runs at once
	WebhookAllow []netip.Prefix // non-public addresses webhooks may reach

	DrainDelay    time.Duration // /readyz answers 503 this long before the listener closes
	ShutdownGrace time.Duration
	Retention     time.Duration
	LogLevel      string
	LogFormat     string
}

// configVar is one WASMWIZ_* variable: its default, its help text, and how it
// is read into Config. The README's table is checked against this list.
type configVar struct {
	Name    string
	Default string
	Help    string
	Secret  bool
	set     func(c *Config, v string) error
	get     func(c *Config) string
}

func configVars() []configVar {
	return []configVar{
		choiceVar("WASMWIZ_PROFILE", "development", "development or production; production refuses insecure settings",
			func(c *Config) *string { return &c.Profile }, "development", "production"),
		addrVar("WASMWIZ_ADDR", "127.0.0.1:8080", "listen address of the API and web pages",
			func(c *Config) *string { return &c.Addr }),
		addrVar("WASMWIZ_METRICS_ADDR", "", "separate listen address for /metrics (empty: served on WASMWIZ_ADDR)",
			func(c *Config) *string { return &c.MetricsAddr }),
		stringVar("WASMWIZ_DATA_DIR", "wasmwiz-data", "directory for the SQLite file and the compile cache", false,
			func(c *Config) *string { return &c.DataDir }),
		{"WASMWIZ_DATABASE_URL", "", "postgres://… for PostgreSQL; a file path or sqlite: URL for SQLite (default: DATA_DIR/wasmwiz.db)", true,
			func(c *Config, v string) error {
				if v == "" {
					return nil
				}
				if !strings.HasPrefix(v, "postgres://") && !strings.HasPrefix(v, "postgresql://") && strings.Contains(v, "://") {
					return fmt.Errorf("want postgres://…, sqlite:PATH or a file path")
				}
				c.DatabaseURL, c.databaseURLSet = v, true
				return nil
			}, func(c *Config) string { return c.DatabaseURL }},
		durationVar("WASMWIZ_DATABASE_TIMEOUT", "5s", "each wait for the database, PostgreSQL or SQLite (a pooled connection, one statement's answer and rows, a SQLite transaction), at most; past it the request answers 503 with Retry-After; background writes that may take longer on purpose (a background run's final record, 30 s; a usage batch, 10 s) wait under their own deadlines instead",
			func(c *Config) *time.Duration { return &c.DatabaseTimeout }),
		{"WASMWIZ_REDIS_URL", "", "redis://… (or rediss://, or unix:///path for a Redis on the same host) shares rate limits between replicas (empty: in-memory limits)", true,
			func(c *Config, v string) error {
				if v != "" && !strings.HasPrefix(v, "redis://") && !strings.HasPrefix(v, "rediss://") && !strings.HasPrefix(v, "unix://") {
					return fmt.Errorf("want redis://…, rediss://… or unix:///path")
				}
				c.RedisURL = v
				return nil
			}, func(c *Config) string { return c.RedisURL }},
		durationVar("WASMWIZ_REDIS_TIMEOUT", "50ms", "how long a rate-limit call to Redis may take before the in-memory fallback decides",
			func(c *Config) *time.Duration { return &c.RedisTimeout }),
		{"WASMWIZ_AUTH", "on", "on, or off to let anonymous callers run under the free tier (development only)", false,
			func(c *Config, v string) error {
				switch strings.ToLower(v) {
				case "on", "true", "1":
					c.Auth = true
				case "off", "false", "0":
					c.Auth = false
				default:
					return fmt.Errorf("must be on or off")
				}
				return nil
			}, func(c *Config) string {
				if c.Auth {
					return "on"
				}
				return "off"
			}},
		{"WASMWIZ_PLAINTEXT_HOSTS", "", "comma-separated database and Redis hosts on a private network that production may reach without TLS", false,
			func(c *Config, v string) error {
				c.PlaintextHosts = nil
				for _, h := range strings.Split(v, ",") {
					if h = strings.TrimSpace(h); h != "" {
						c.PlaintextHosts = append(c.PlaintextHosts, h)
					}
				}
				return nil
			}, func(c *Config) string { return strings.Join(c.PlaintextHosts, ",") }},
		stringVar("WASMWIZ_METRICS_TOKEN", "", "when set, /metrics wants it as a bearer token (Authorization: Bearer …)", true,
			func(c *Config) *string { return &c.MetricsToken }),
		prefixesVar("WASMWIZ_TRUSTED_PROXIES", "comma-separated CIDRs whose X-Forwarded-For is believed",
			func(c *Config) *[]netip.Prefix { return &c.TrustedProxies }),
		intVar("WASMWIZ_MAX_AUTH_FAILURES", "30", "API keys that do not authenticate one client address (an IPv4 address, an IPv6 /64) may send a minute, and 8 times that its network (an IPv4 /24, an IPv6 /48), counted across replicas; past either that address's keys answer 429 for the rest of the minute without a database lookup, except keys that authenticated on the same replica before; 0: no bound",
			func(c *Config) *int { return &c.MaxAuthFailures }, 0, 1000000),
		intVar("WASMWIZ_MAX_USER_REQUESTS", strconv.Itoa(wwhttp.DefaultMaxUserRequests), "requests one user may have in flight at once on this replica, on every authenticated route but the execute routes (bounded by the tier), all of the user's keys together: each may hold one of the replica's database connections (an event stream, 8 per user, counts until its key is looked up; on SQLite the read-only connections are twice this bound plus one a CPU, at least 4, at most 64); past it the request answers 429 with Retry-After without touching the database; 0: no bound",
			func(c *Config) *int { return &c.MaxUserRequests }, 0, 10000),
		intVar("WASMWIZ_USER_REQUEST_RATE", strconv.Itoa(wwhttp.DefaultUserRequestRate), "requests one user may start a second on this replica, in bursts of twice that, on the routes WASMWIZ_MAX_USER_REQUESTS bounds, and as much in a bucket of their own for execute requests, counted when they are refused (while either setting is on, at most max(8, the tier's max_concurrent) of a user's execute requests wait for their run's admission at once); past it the request (an execute request too) answers 429 with Retry-After without touching the database; 0: no bound",
			func(c *Config) *int { return &c.UserRequestRate }, 0, 1000000),
		stringVar("WASMWIZ_CACHE_DIR", "", "on-disk compile cache shared by workers (default: DATA_DIR/cache)", false,
			func(c *Config) *string { return &c.CacheDir }),
		sizeVar("WASMWIZ_CACHE_MAX", "2GiB", "bound of the on-disk compile cache; past it the least recently used compiled modules are deleted (0: no bound)",
			func(c *Config) *int64 { return &c.CacheMaxBytes }),
		stringVar("WASMWIZ_FILES_DIR", "", "where the workers' runs get their private directories for files (default: the system's temporary directory); room for max_file_write_bytes plus max_files_in_bytes per worker; what a killed server left there is removed at the next start", false,
			func(c *Config) *string { return &c.FilesDir }),
		sizeVar("WASMWIZ_COMPILE_CACHE", "256MiB", "in-memory compiled-code cache per worker, by compiled size",
			func(c *Config) *int64 { return &c.CompileCacheBytes }),
		intVar("WASMWIZ_WORKERS", strconv.Itoa(defaultWorkers()), "guest worker processes (one run each at a time); one more is kept warm as a spare that replaces a killed or crashed worker at once",
			func(c *Config) *int { return &c.Workers }, 1, 1024),
		intVar("WASMWIZ_MAX_CONCURRENT_RUNS", strconv.Itoa(defaultWorkers()), "runs in flight on this replica",
			func(c *Config) *int { return &c.MaxConcurrentRuns }, 1, 10000),
		intVar("WASMWIZ_QUEUE_SIZE", "64", "runs that may wait for a slot; beyond it the answer is 503",
			func(c *Config) *int { return &c.QueueSize }, 0, 100000),
		durationVar("WASMWIZ_QUEUE_TIMEOUT", "5s", "how long a run may wait for a slot before 503",
			func(c *Config) *time.Duration { return &c.QueueTimeout }),
		durationVar("WASMWIZ_MAX_TIMEOUT", "120s", "upper bound on any tier's wall time",
			func(c *Config) *time.Duration { return &c.MaxTimeout }),
		sizeVar("WASMWIZ_MAX_MEMORY", "1GiB", "upper bound on any tier's linear memory",
			func(c *Config) *int64 { return &c.MaxMemoryBytes }),
		sizeVar("WASMWIZ_MAX_FILE_WRITE", "4GiB", "upper bound on any tier's max_file_write_bytes: the disk one run's guest may fill in WASMWIZ_FILES_DIR",
			func(c *Config) *int64 { return &c.MaxFileWriteBytes }),
		durationVar("WASMWIZ_HEADER_TIMEOUT", "10s", "a request's headers must arrive within it; a body and an answer get it too before the minimum transfer rate applies",
			func(c *Config) *time.Duration { return &c.HeaderTimeout }),
		sizeVar("WASMWIZ_MIN_TRANSFER_RATE", "64KiB", "bytes per second a request body must arrive at, and an answer be read at, on average after WASMWIZ_HEADER_TIMEOUT; slower connections are cut, with or without a key",
			func(c *Config) *int64 { return &c.MinTransferRate }),
		durationVar("WASMWIZ_IDLE_TIMEOUT", "60s", "a keep-alive connection that sends no request for this long is closed",
			func(c *Config) *time.Duration { return &c.IdleTimeout }),
		sizeVar("WASMWIZ_MAX_BODY_MEMORY", "256MiB", "the most bytes of large request bodies (over 1MiB, or of unknown length) the server holds at once, from before each is read until its request ends, counted at its declared length, else its route's cap; past it a request waits up to WASMWIZ_QUEUE_TIMEOUT, then answers 503 with Retry-After",
			func(c *Config) *int64 { return &c.MaxBodyMemory }),
		sizeVar("WASMWIZ_MAX_HEADER_BYTES", "64KiB", "the most a request's headers may take; more is 431",
			func(c *Config) *int64 { return &c.MaxHeaderBytes }),
		intVar("WASMWIZ_ASYNC_WORKERS", strconv.Itoa(max(1, defaultWorkers()/2)), "background runs (\"async\": true) this replica runs at once, beside the synchronous ones; 0 runs none (the replica still admits them for others)",
			func(c *Config) *int { return &c.AsyncWorkers }, 0, 1024),
		prefixesVar("WASMWIZ_WEBHOOK_ALLOW", "comma-separated CIDRs of loopback, private or link-local addresses that webhooks may reach (by default only public addresses)",
			func(c *Config) *[]netip.Prefix { return &c.WebhookAllow }),
		durationVar("WASMWIZ_DRAIN_DELAY", "0s", "on shutdown, how long /readyz answers 503 while requests are still served, so that load balancers stop sending first",
			func(c *Config) *time.Duration { return &c.DrainDelay }),
		durationVar("WASMWIZ_SHUTDOWN_GRACE", "30s", "how long in-flight runs may finish on shutdown",
			func(c *Config) *time.Duration { return &c.ShutdownGrace }),
		durationVar("WASMWIZ_RETENTION", "8760h", "no run record is kept longer, whatever its tier's run_retention_ms (which applies below it); 0 keeps every run",
			func(c *Config) *time.Duration { return &c.Retention }),
		choiceVar("WASMWIZ_LOG_LEVEL", "info", "debug, info, warn or error",
			func(c *Config) *string { return &c.LogLevel }, "debug", "info", "warn", "error"),
		choiceVar("WASMWIZ_LOG_FORMAT", "text", "text or json",
			func(c *Config) *string { return &c.LogFormat }, "text", "json"),
	}
}

func defaultWorkers() int { return max(2, runtime.NumCPU()) }

// The constructors below make a configVar of one Config field from one
// accessor, so that a variable names its field once: how it is read and how
// `wasmwiz config` prints it both follow from the field's type.

func stringVar(name, def, help string, secret bool, field func(*Config) *string) configVar {
	return configVar{name, def, help, secret,
		func(c *Config, v string) error { *field(c) = v; return nil },
		func(c *Config) string { return *field(c) }}
}

// addrVar reads host:port; empty (possible only where the default is empty)
// means none.
func addrVar(name, def, help string, field func(*Config) *string) configVar {
	v := stringVar(name, def, help, false, field)
	v.set = func(c *Config, v string) error {
		if v != "" {
			if _, _, err := net.SplitHostPort(v); err != nil {
				return fmt.Errorf("want host:port, e.g. 127.0.0.1:8080 or :8080")
			}
		}
		*field(c) = v
		return nil
	}
	return v
}

// choiceVar reads one of choices, exactly as written; its error names them
// all.
func choiceVar(name, def, help string, field func(*Config) *string, choices ...string) configVar {
	v := stringVar(name, def, help, false, field)
	v.set = func(c *Config, v string) error {
		if !slices.Contains(choices, v) {
			last := len(choices) - 1
			return fmt.Errorf("must be %s or %s", strings.Join(choices[:last], ", "), choices[last])
		}
		*field(c) = v
		return nil
	}
	return v
}

// parsedVar reads a value with one of wasmwiz's parsers (its message is the
// error) and prints it with the matching formatter.
func parsedVar[T any](name, def, help string, field func(*Config) *T, parse func(string) (T, error), format func(T) string) configVar {
	return configVar{name, def, help, false,
		func(c *Config, v string) error {
			x, err := parse(v)
			if err != nil {
				return fmt.Errorf("%s", wasmwiz.ErrorMessage(err))
			}
			*field(c) = x
			return nil
		},
		func(c *Config) string { return format(*field(c)) }}
}

func durationVar(name, def, help string, field func(*Config) *time.Duration) configVar {
	return parsedVar(name, def, help, field, wasmwiz.ParseDuration, time.Duration.String)
}

func sizeVar(name, def, help string, field func(*Config) *int64) configVar {
	return parsedVar(name, def, help, field, wasmwiz.ParseSize, wasmwiz.FormatSize)
}

// intVar reads a whole number from lo to hi.
func intVar(name, def, help string, field func(*Config) *int, lo, hi int) configVar {
	return configVar{name, def, help, false,
		func(c *Config, v string) error {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < lo || n > hi {
				return fmt.Errorf("want a whole number from %d to %d", lo, hi)
			}
			*field(c) = n
			return nil
		},
		func(c *Config) string { return strconv.Itoa(*field(c)) }}
}

// prefixesVar reads comma-separated CIDRs or single addresses; its default
// is none.
func prefixesVar(name, help string, field func(*Config) *[]netip.Prefix) configVar {
	return configVar{name, "", help, false,
		func(c *Config, v string) error {
			ps, err := parsePrefixes(v)
			if err != nil {
				return err
			}
			*field(c) = ps
			return nil
		},
		func(c *Config) string { return formatPrefixes(*field(c)) }}
}

// LoadConfig reads every WASMWIZ_* variable through getenv, applies defaults
// and validates the result. It reports every problem at once, each naming
// its variable, in one EINVALID error.
func LoadConfig(getenv func(string) string) (*Config, error) {
	c := &Config{}
	var problems []string
	unread := map[string]bool{}
	for _, v := range configVars() {
		val := getenv(v.Name)
		if val == "" {
			val = v.Default
		}
		if err := v.set(c, val); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", v.Name, err))
			unread[v.Name] = true
		}
	}
	if c.DatabaseURL == "" {
		c.DatabaseURL = filepath.Join(c.DataDir, "wasmwiz.db")
	}
	if c.CacheDir == "" {
		c.CacheDir = filepath.Join(c.DataDir, "cache")
	}
	for _, p := range c.validate() {
		if name, _, _ := strings.Cut(p, ":"); !unread[name] {
			problems = append(problems, p)
		}
	}
	switch len(problems) {
	case 0:
		return c, nil
	case 1:
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "%s", problems[0])
	}
	return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "%d configuration problems:\n  %s", len(problems), strings.Join(problems, "\n  "))
}

// validate returns the problems of values that are each fine alone but not
// together, or not in production; a variable that did not parse is left out.
func (c *Config) validate() []string {
	var problems []string
	bad := func(name, format string, args ...any) {
		problems = append(problems, name+": "+fmt.Sprintf(format, args...))
	}
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			bad(name, "must be positive")
		}
	}
	// atLeast's why, if any, says why the bound is there.
	atLeast := func(name string, n, least int64, why string) {
		if n < least {
			msg := "must be at least " + wasmwiz.FormatSize(least)
			if why != "" {
				msg += ": " + why
			}
			bad(name, "%s", msg)
		}
	}
	atLeast("WASMWIZ_MAX_MEMORY", c.MaxMemoryBytes, 64*wasmwiz.KiB, "")
	positive("WASMWIZ_MAX_TIMEOUT", c.MaxTimeout)
	atLeast("WASMWIZ_MAX_FILE_WRITE", c.MaxFileWriteBytes, 64*wasmwiz.KiB, "")
	positive("WASMWIZ_DATABASE_TIMEOUT", c.DatabaseTimeout)
	positive("WASMWIZ_HEADER_TIMEOUT", c.HeaderTimeout)
	atLeast("WASMWIZ_MIN_TRANSFER_RATE", c.MinTransferRate, 1*wasmwiz.KiB, "a slower bound lets a trickle hold a connection for hours")
	positive("WASMWIZ_IDLE_TIMEOUT", c.IdleTimeout)
	atLeast("WASMWIZ_MAX_BODY_MEMORY", c.MaxBodyMemory, 16*wasmwiz.MiB, "a smaller bound leaves room for hardly one large body")
	if c.MaxHeaderBytes < 4*wasmwiz.KiB || c.MaxHeaderBytes > 1*wasmwiz.MiB {
		bad("WASMWIZ_MAX_HEADER_BYTES", "must be from 4KiB to 1MiB")
	}
	if c.Profile != "production" {
		return problems
	}
	if !c.databaseURLSet {
		bad("WASMWIZ_DATABASE_URL", "production needs an explicit database URL")
	}
	if !c.Auth {
		bad("WASMWIZ_AUTH", "auth cannot be off in production")
	}
	for _, p := range c.TrustedProxies {
		if widest := map[bool]int{true: 8, false: 32}[p.Addr().Is4()]; p.Bits() < widest {
			bad("WASMWIZ_TRUSTED_PROXIES", "%s is wider than a /%d: name your proxies' ranges", p, widest)
		}
	}
	// What the drivers will do, read by their own parsers.
	if c.IsPostgres() {
		for _, p := range postgres.ProductionProblems(c.DatabaseURL, c.PlaintextHosts) {
			bad("WASMWIZ_DATABASE_URL", "%s", p)
		}
	}
	if c.RedisURL != "" {
		for _, p := range redis.ProductionProblems(c.RedisURL, c.PlaintextHosts) {
			bad("WASMWIZ_REDIS_URL", "%s", p)
		}
	}
	if c.MetricsAddr == "" && c.MetricsToken == "" && !isLoopbackAddr(c.Addr) {
		bad("WASMWIZ_METRICS_ADDR", "/metrics would be served to anyone on %s: set WASMWIZ_METRICS_ADDR to a private address, or WASMWIZ_METRICS_TOKEN", c.Addr)
	}
	return problems
}

// isLoopbackAddr reports whether a listen address binds loopback only.
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && host != "" && isLoopbackHost(host)
}

func isLoopbackHost(h string) bool {
	if h == "localhost" || h == "" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

// IsPostgres reports whether the database is PostgreSQL (else SQLite).
func (c *Config) IsPostgres() bool {
	return strings.HasPrefix(c.DatabaseURL, "postgres://") || strings.HasPrefix(c.DatabaseURL, "postgresql://")
}

// SQLitePath returns the SQLite file path of a non-Postgres DatabaseURL.
func (c *Config) SQLitePath() string {
	return strings.TrimPrefix(strings.TrimPrefix(c.DatabaseURL, "sqlite://"), "sqlite:")
}

// redact hides the password of a URL.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "REDACTED")
	}
	return u.String()
}

func cmdConfig(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "config", `usage: wasmwiz config

Prints every WASMWIZ_* variable serve reads, with the value it would use
(the default where unset), secrets redacted, after the same validation as
serve's: every problem is reported, each naming its variable.`)
	if err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	c, err := LoadConfig(env.Getenv)
	if err != nil {
		return err
	}
	for _, v := range configVars() {
		val := v.get(c)
		if v.Secret {
			val = redact(val)
		}
		fmt.Fprintf(env.Stdout, "%s=%s\n", v.Name, val)
	}
	return nil
}

// MaxLimits returns the server's upper bounds on every tier's per-run limits.
func (c *Config) MaxLimits() wasmwiz.Limits {
	return wasmwiz.Limits{Timeout: c.MaxTimeout, MaxMemoryBytes: c.MaxMemoryBytes, MaxFileWriteBytes: c.MaxFileWriteBytes}
}

// parsePrefixes reads comma-separated CIDRs or single addresses.
func parsePrefixes(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not a CIDR or address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func formatPrefixes(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}
