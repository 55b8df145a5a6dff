package http

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// middleware composes every middleware in one place, outermost first:
// request id → access log, metrics and the answer's write deadline → body
// read deadlines → security headers → Connection: close while draining →
// panic recovery → client IP → load shedding → authentication → routes.
func (s *Server) middleware(next http.Handler) http.Handler {
	h := next
	h = s.authenticate(h)
	h = s.shedLoad(h)
	h = s.clientIP(h)
	h = s.recoverPanics(h)
	h = s.closeWhenDraining(h)
	h = securityHeaders(h)
	h = s.transferDeadlines(h)
	h = s.observe(h)
	h = requestID(h)
	return h
}

type ctxKey int

const routeInfoKey ctxKey = iota + 1

// routeInfo is filled in by inner layers and read by observe after the
// request: the mux works on copies of the request, so a pointer in the
// context is the one way back out.
type routeInfo struct {
	pattern   string
	clientIP  netip.Addr
	userID    int64
	errorCode string
}

func routeInfoFrom(ctx context.Context) *routeInfo {
	ri, _ := ctx.Value(routeInfoKey).(*routeInfo)
	return ri
}

// ClientIP returns the client address the server decided on for this
// request (see WASMWIZ_TRUSTED_PROXIES), or the zero Addr.
func ClientIP(ctx context.Context) netip.Addr {
	if ri := routeInfoFrom(ctx); ri != nil {
		return ri.clientIP
	}
	return netip.Addr{}
}

// requestID takes a sane X-Request-Id from the caller or makes one, puts it
// in the context and answers it.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			var b [12]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(wasmwiz.NewContextWithRequestID(r.Context(), id)))
	})
}

func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for _, c := range []byte(id) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == ':' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// unavailableRetryAfter is the Retry-After of a 503 whose cause gave no
// better hint (a dependency down, a shutdown): long enough that clients
// do not hammer a replica in trouble, short enough to notice its return.
const unavailableRetryAfter = 5 * time.Second

// statusWriter remembers the status and size of an answer, and gives every
// 503 a Retry-After.
type statusWriter struct {
	http.ResponseWriter
	status   int
	bytes    int64
	deadline answerDeadline // the answer's write deadline
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		w.deadline.begin(w.ResponseWriter)
		if code == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
			// Every 503 says when to come back, whoever wrote it: a
			// caller told nothing retries at once, which a replica in
			// trouble can least afford.
			w.Header().Set("Retry-After", retryAfterSeconds(unavailableRetryAfter))
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
		w.deadline.begin(w.ResponseWriter)
	}
	w.deadline.write(w.ResponseWriter, w.bytes, int64(len(b)))
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe writes one access log line per request and the request metrics.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &routeInfo{}
		sw := &statusWriter{ResponseWriter: w, deadline: answerDeadline{t: s.transfer}}
		s.metrics.inFlight.Inc()
		defer func() {
			s.metrics.inFlight.Dec()
			if sw.status == 0 {
				sw.status = http.StatusOK
			}
			elapsed := time.Since(start)
			route := ri.pattern
			if route == "" {
				route = "unmatched"
			}
			s.metrics.observeRequest(r.Method, route, sw.status, elapsed)
			if !s.log.Enabled(r.Context(), slog.LevelInfo) {
				return // the access log is off: build nothing for it
			}
			attrs := []slog.Attr{
				slog.String("method", loggedText(r.Method, maxLoggedMethod)),
				slog.String("route", route),
				slog.String("path", loggedText(r.URL.Path, maxLoggedPath)),
				slog.Int("status", sw.status),
				slog.Int64("bytes", sw.bytes),
				slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
				slog.String("request_id", wasmwiz.RequestIDFromContext(r.Context())),
				slog.String("client_ip", ri.clientIP.String()),
			}
			if ri.userID != 0 {
				attrs = append(attrs, slog.Int64("user_id", ri.userID))
			}
			if ri.errorCode != "" {
				attrs = append(attrs, slog.String("error_code", ri.errorCode))
			}
			s.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
		}()
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), routeInfoKey, ri)))
	})
}

// maxLoggedPath and maxLoggedMethod bound the path and the method a log
// line or an error message carries: both are the client's, as long as the
// request line may be (the server's header limit, 64 KiB), and a flood of
// 404s would otherwise log that much a request.
const (
	maxLoggedPath   = 256
	maxLoggedMethod = 32
)

// loggedText returns s cut at max bytes on a UTF-8 boundary (with a note
// of the cut), its invalid UTF-8 replaced: what a log line and an answer
// may carry of a client's text. s valid and short is returned as it is.
func loggedText(s string, max int) string {
	return strings.ToValidUTF8(wasmwiz.CutText(s, max), "\uFFFD")
}

// Values of the headers every answer carries, made once: assigning a shared
// one-element slice (capacity 1, so an Add elsewhere copies rather than
// writes into it) saves an allocation per header per request over Set.
var (
	hvNosniff  = []string{"nosniff"}
	hvDeny     = []string{"DENY"}
	hvNoRef    = []string{"no-referrer"}
	hvCSP      = []string{"default-src 'none'; frame-ancestors 'none'"}
	hvCORP     = []string{"same-origin"}
	hvNoStore  = []string{"no-store"}
	hvHSTS     = []string{"max-age=63072000; includeSubDomains"}
	hvJSONType = []string{"application/json; charset=utf-8"}
)

// securityHeaders sets the headers every answer carries.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["X-Content-Type-Options"] = hvNosniff
		h["X-Frame-Options"] = hvDeny
		h["Referrer-Policy"] = hvNoRef
		h["Content-Security-Policy"] = hvCSP
		h["Cross-Origin-Resource-Policy"] = hvCORP
		if strings.HasPrefix(r.URL.Path, "/api/") {
			h["Cache-Control"] = hvNoStore
		}
		if r.TLS != nil {
			h["Strict-Transport-Security"] = hvHSTS
		}
		next.ServeHTTP(w, r)
	})
}

// recoverPanics turns a panic in a handler into a logged 500, so that one
// bug does not take the connection's answer with it.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.writeError(w, r, wasmwiz.WrapError(wasmwiz.EINTERNAL,
					errors.New("panic: "+strings.TrimSpace(toString(v))+"\n"+string(debug.Stack())), "internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func toString(v any) string {
	switch x := v.(type) {
	case error:
		return x.Error()
	case string:
		return x
	}
	return "non-error panic value"
}

// clientIP decides the client's address: the connection's, unless it comes
// from a trusted proxy, when the right-most X-Forwarded-For address that is
// not itself a trusted proxy is the client.
func (s *Server) clientIP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ri := routeInfoFrom(r.Context()); ri != nil {
			ri.clientIP = s.clientAddr(r)
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.opts.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (s *Server) clientAddr(r *http.Request) netip.Addr {
	remote, err := netip.ParseAddrPort(r.RemoteAddr)
	var addr netip.Addr
	if err == nil {
		addr = remote.Addr().Unmap()
	} else if a, err := netip.ParseAddr(r.RemoteAddr); err == nil {
		addr = a.Unmap()
	}
	if !addr.IsValid() || !s.trusted(addr) {
		return addr
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			// Garbage from beyond our proxies: trust nothing further left.
			return addr
		}
		a = a.Unmap()
		addr = a
		if !s.trusted(a) {
			return a
		}
	}
	return addr
}

// labelRoute records, for the metrics and the access log, the route pattern
// a request would reach, before a middleware answers it instead of the
// route (a failed authentication): otherwise it would count as "unmatched".
// The route adapter overwrites it with the same pattern when it runs.
// It returns the pattern ("" for none).
func (s *Server) labelRoute(r *http.Request) string {
	_, pattern := s.mux.Handler(r)
	if pattern == "/" {
		pattern = ""
	}
	if ri := routeInfoFrom(r.Context()); ri != nil && pattern != "" {
		ri.pattern = pattern
	}
	return pattern
}

// credentials returns the API key a request carries, and whether it carries
// one at all.
func credentials(r *http.Request) (string, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", true
		}
		return strings.TrimSpace(token), true
	}
	if k := r.Header.Get("X-API-Key"); k != "" {
		return strings.TrimSpace(k), true
	}
	return "", false
}

// authenticate puts the user and key of a request's credentials in its
// context. On the execute routes they may come from the Directory's cache
// (Executor.Execute confirms them with the run's admission); everywhere
// else they are read from the store. Credentials that do not authenticate answer 401 on /api/ routes,
// labelled with the route they were for, and count against the client's
// address (authFailures: past Options.MaxAuthFailures a minute its keys
// answer 429 without a lookup); requests without credentials go on without
// a user (routes decide). On the routes userRequests counts, a request is
// counted to its user (Options.MaxUserRequests, Options.UserRequestRate)
// before the lookup and held until it answers (an event stream: until the
// lookup answers); past the bound it answers 429 without one. An execute
// request takes nothing of that bound but counts in its user's execute
// bucket (userRequests.admitExecute): among the user's execute requests
// waiting for admission from before its lookup until the Executor admits
// its run or it answers, and a token of the bucket's rate when it is
// refused (a 4xx); past either it answers 429 without a lookup. A request
// no route matches answers 404 or 405 without a lookup.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, present := credentials(r)
		if !present || !strings.HasPrefix(r.URL.Path, "/api/") || r.URL.Path == "/api/openapi.json" {
			next.ServeHTTP(w, r)
			return
		}
		pattern := s.labelRoute(r)
		if pattern == "" {
			// No route: 404 or 405 whoever asks, so the key is not
			// looked up (nothing would bound that lookup).
			next.ServeHTTP(w, r)
			return
		}
		if !wasmwiz.LooksLikeAPIKey(key) {
			s.writeError(w, r, wasmwiz.Errorf(wasmwiz.EUNAUTHORIZED, "invalid API key"))
			return
		}
		if s.opts.Keys == nil {
			s.writeError(w, r, wasmwiz.Errorf(wasmwiz.EINTERNAL, "no key store configured"))
			return
		}
		ip := ClientIP(r.Context())
		// The key's digest, once for both guards that remember keys.
		bounded := s.userReqs != nil && s.bounded[pattern]
		execute := s.userReqs != nil && s.admitted[pattern]
		var digest [sha256.Size]byte
		if s.authFail != nil || bounded || execute {
			digest = sha256.Sum256([]byte(key))
		}
		if err := s.authFail.refused(r.Context(), ip, digest); err != nil {
			s.writeError(w, r, err)
			return
		}
		// An execute request waits for its run's admission in its user's
		// execute bucket, taken before the key's lookup; refused there (too
		// many waiting, or its refusals spent the bucket) it looks nothing up.
		var (
			waiting *waitingExecute
			execWho requester
		)
		if execute {
			b, who, err := s.userReqs.admitExecute(digest)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			waiting, execWho = &waitingExecute{g: s.userReqs, b: b}, who
			defer waiting.admitted()
		}
		// The user's bound, on the routes it counts, is taken before the
		// key's lookup: the lookup is the first database work.
		var (
			slot *userBucket
			who  requester
		)
		if bounded {
			var err error
			if slot, who, err = s.userReqs.admitKey(digest); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		ctx, err := s.authenticateKey(r.Context(), key, s.admitted[pattern])
		if err == nil {
			if u := wasmwiz.UserFromContext(ctx); u == nil || u.Disabled {
				err = wasmwiz.Errorf(wasmwiz.EUNAUTHORIZED, "invalid API key")
			}
		}
		if err != nil {
			if wasmwiz.ErrorCode(err) == wasmwiz.EUNAUTHORIZED {
				s.authFail.failed(r.Context(), ip, digest)
				err = wasmwiz.WrapError(wasmwiz.EUNAUTHORIZED, err, "invalid API key")
				if slot != nil {
					s.userReqs.unauthenticated(slot, digest)
				}
				if waiting != nil {
					waiting.once.Do(func() { s.userReqs.unauthenticated(waiting.b, digest) })
				}
			} else if slot != nil {
				s.userReqs.done(slot)
			}
			s.writeError(w, r, err)
			return
		}
		u := wasmwiz.UserFromContext(ctx)
		s.authFail.succeeded(r.Context(), ip, digest)
		if slot != nil {
			if slot, err = s.userReqs.authenticated(slot, who, digest, u.ID); err != nil {
				s.writeError(w, r, err)
				return
			}
			if s.streamed[pattern] {
				s.userReqs.done(slot) // took its token; a stream holds its stream slot instead
			} else {
				defer s.userReqs.done(slot)
			}
		}
		if waiting != nil {
			b, err := s.userReqs.executeAuthenticated(waiting.b, execWho, digest, u.ID)
			if err != nil {
				waiting.once.Do(func() {}) // given back by executeAuthenticated
				s.writeError(w, r, err)
				return
			}
			waiting.b = b
			ctx = context.WithValue(wasmwiz.NewContextWithAdmitted(ctx, waiting.admitted), waitingExecuteKey, waiting)
		}
		ri := routeInfoFrom(r.Context())
		if ri != nil {
			ri.userID = u.ID
		}
		next.ServeHTTP(w, r.WithContext(ctx))
		if waiting != nil && ri != nil && ri.errorCode != "" && ErrorStatus(ri.errorCode) < 500 {
			// Refused: the caller's doing. A 5xx (the replica saturated,
			// a dependency down) is not, and costs it nothing.
			s.userReqs.refused(u.ID)
		}
	})
}

// shedLoad refuses a run at once while the replica's run gate is full:
// before authentication, before the body is read and before the rate
// limiter is asked, because then the answer (503, Retry-After) is the same
// for every caller. A saturated replica then spends almost nothing per
// refusal and keeps its CPU, database and Redis for the runs it admitted.
func (s *Server) shedLoad(next http.Handler) http.Handler {
	if s.gate == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && runsGuest(r.URL.Path) && s.gate.Full() {
			s.labelRoute(r)
			s.writeError(w, r, s.gate.Shed())
			return
		}
		next.ServeHTTP(w, r)
	})
}

// runsGuest reports whether path is one of the execute routes.
func runsGuest(path string) bool {
	if path == "/api/v1/execute" || path == legacyExecutePath {
		return true
	}
	rest, ok := strings.CutPrefix(path, "/api/v1/modules/")
	return ok && strings.HasSuffix(rest, "/execute") && strings.Count(rest, "/") == 1
}

// authenticateKey returns ctx with the user and key of plaintext: through
// the Directory, from its cache only for the routes whose runs are
// admitted (cached), or straight from the key store.
func (s *Server) authenticateKey(ctx context.Context, plaintext string, cached bool) (context.Context, error) {
	if s.dir != nil {
		return s.dir.Authenticate(ctx, plaintext, cached)
	}
	u, k, err := s.opts.Keys.Authenticate(ctx, plaintext)
	if err != nil {
		return ctx, err
	}
	if u == nil {
		return ctx, wasmwiz.Errorf(wasmwiz.EUNAUTHORIZED, "invalid API key")
	}
	return wasmwiz.NewContextWithAPIKey(wasmwiz.NewContextWithUser(ctx, u), k), nil
}
