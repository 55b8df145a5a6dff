package queue

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// SignatureHeader carries a delivery's signature: "t=<unix seconds>,
// v1=<hex HMAC-SHA256 of "<t>.<body>" under the user's webhook secret>", as
// Stripe signs its webhooks. A receiver recomputes it and refuses an old t.
const SignatureHeader = "WasmWiz-Signature"

// Sign returns the SignatureHeader value of body sent at t under secret.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// WebhookOptions configure Webhooks.
type WebhookOptions struct {
	// Runs reads runs and secrets and records attempts.
	Runs wasmwiz.RunStore
	// Allow lists the otherwise refused addresses (loopback, private,
	// link-local, …) a callback may reach: WASMWIZ_WEBHOOK_ALLOW.
	Allow []netip.Prefix
	// Timeout bounds one attempt, connection to last byte read (10s).
	Timeout time.Duration
	// MaxResponseBytes is how much of an answer is read (64 KiB); the rest
	// is not.
	MaxResponseBytes int64
	// Logger gets failed deliveries (slog.Default()).
	Logger *slog.Logger
}

// WebhookStats count deliveries by outcome.
type WebhookStats struct {
	Delivered uint64 // a 2xx answer
	Failed    uint64 // an attempt that failed and will be tried again
	GivenUp   uint64 // the last attempt failed
	Refused   uint64 // attempts to an address that is not allowed (counted in Failed or GivenUp too)
	Deferred  uint64 // deliveries put off because another of the same user's was in flight here
}

// Webhooks delivers run records to callback URLs, signed. It connects only
// to public addresses unless Allow says otherwise, checked on the address
// it is about to connect to (after resolution, at every redirect-free
// attempt), so a name that resolves to a private address is refused too.
//
// The webhook workers of a replica are shared by every user, and a
// receiver that answers slowly, or never, holds one for an attempt's
// Timeout, six attempts per run: a user's deliveries are made one at a
// time on each replica (begin), so that its receivers hold at most one
// worker and the others' deliveries go on. The deliveries put off meanwhile
// come back one after the other, each at its own turn (defer), not all at
// once every few seconds.
type Webhooks struct {
	opts   WebhookOptions
	client *http.Client

	mu    sync.Mutex
	users map[int64]*userDeliveries // users with a delivery in flight or put off here
	swept time.Time                 // when users was last swept
	now   func() time.Time

	delivered, failed, givenUp, refused, deferred atomic.Uint64
}

// errAddressRefused is the dial error of a callback to an address that is
// not allowed.
var errAddressRefused = errors.New("the callback's address is not public and not allowed by WASMWIZ_WEBHOOK_ALLOW")

// NewWebhooks returns a sender.
func NewWebhooks(opts WebhookOptions) *Webhooks {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = 64 << 10
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	w := &Webhooks{opts: opts, users: map[int64]*userDeliveries{}, now: time.Now}
	dialer := &net.Dialer{Timeout: opts.Timeout, Control: w.control}
	w.client = &http.Client{
		Timeout: opts.Timeout,
		Transport: &http.Transport{
			Proxy:                 nil, // a proxy would connect for us, past the address check
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   opts.Timeout,
			ResponseHeaderTimeout: opts.Timeout,
			// Only the status is read: a receiver's headers need not hold
			// net/http's default 10 MiB in memory per delivery.
			MaxResponseHeaderBytes: 64 << 10,
			MaxIdleConns:           16,
			IdleConnTimeout:        30 * time.Second,
		},
		// A redirect is not followed: the receiver is the URL given.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return w
}

// control refuses a connection to an address that is not public, unless
// allowed; it runs on the resolved address just before connecting.
func (w *Webhooks) control(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return err
	}
	if !w.Allowed(ip) {
		return errAddressRefused
	}
	return nil
}

// notPublic are the unicast ranges, beyond the private, loopback and
// link-local ones the netip predicates name, that are not the public
// internet (IANA's special-purpose registries): shared and reserved IPv4
// space, documentation and benchmarking ranges, and IPv6 prefixes that
// carry an IPv4 address in a form that cannot be judged (Teredo's is
// obscured, local-use NAT64's placement varies, IPv4-compatible and
// IPv4-translated are deprecated), and the deprecated site-local prefix.
// NAT64 and 6to4 addresses are judged by the IPv4 address they carry
// (embeddedIPv4).
var notPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT (RFC 6598)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved
	netip.MustParsePrefix("::/96"),           // IPv4-compatible
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated (RFC 2765)
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated, still routed inside some sites)
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001::/32"),       // Teredo
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052: the IPv4 address in the last 32 bits
	sixToFour = netip.MustParsePrefix("2002::/16")    // RFC 3056: the IPv4 address in bits 16 to 48
)

// embeddedIPv4 returns the IPv4 address that a NAT64 or 6to4 address
// reaches through its gateway: a callback to it is a callback to that
// address (on an IPv6-only network with DNS64, every IPv4 host's name
// resolves to one).
func embeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	b := ip.As16()
	switch {
	case nat64.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// Allowed reports whether a callback may connect to ip: a public unicast
// address, or one in Allow.
func (w *Webhooks) Allowed(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range w.opts.Allow {
		if p.Contains(ip) {
			return true
		}
	}
	if v4, ok := embeddedIPv4(ip); ok {
		return w.Allowed(v4)
	}
	if !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLinkLocalUnicast() {
		return false
	}
	for _, p := range notPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// Stats returns the delivery counters.
func (w *Webhooks) Stats() WebhookStats {
	return WebhookStats{Delivered: w.delivered.Load(), Failed: w.failed.Load(), GivenUp: w.givenUp.Load(),
		Refused: w.refused.Load(), Deferred: w.deferred.Load()}
}

// userDeliveries is a user's deliveries on this replica: the one in
// flight, and those put off until it ends.
type userDeliveries struct {
	busy    bool
	started time.Time
	// attempt is how long the user's last attempt took here: a turn.
	attempt time.Duration
	// waiting are the deliveries put off, by job, each with the time it
	// was told to come back; last is the latest of those times given.
	waiting map[int64]time.Time
	last    time.Time
}

// The turns of deliveries put off: a turn is as long as the user's last
// attempt took, or the one in flight has taken so far if longer (firstTurn
// before any ended), and at least minTurn; a delivery put off comes back
// one turn after the last of the user's others put off, at most
// maxDeferral from now. Every sweepEvery the users whose deliveries put
// off all came back elsewhere are forgotten.
const (
	minTurn     = 50 * time.Millisecond
	firstTurn   = time.Second
	maxDeferral = 5 * time.Minute
	sweepEvery  = time.Minute
)

// begin takes user's one place for a delivery in flight on this replica
// for job; ok is false while another of the user's deliveries holds it,
// and then wait is how long job is put off (counted as deferred). User 0
// (unknown) is not bounded. Call end when the attempt is over.
//
// Each delivery put off is given its own turn, one after the other: a
// user's receiver that answers in milliseconds has a burst of deliveries
// made back to back, and one that never answers has its backlog come back
// at most every maxDeferral, instead of every delivery being tried again
// every few seconds (a store round trip each, counted to no one). A turn
// is never shorter than the attempt in flight has lasted, so a receiver
// that answered once at once and then hangs does not bring its backlog
// back every minTurn.
func (w *Webhooks) begin(user, job int64) (wait time.Duration, ok bool) {
	if user == 0 {
		return 0, true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	if now.Sub(w.swept) >= sweepEvery {
		w.sweep(now)
	}
	u := w.users[user]
	if u == nil {
		u = &userDeliveries{attempt: firstTurn, waiting: map[int64]time.Time{}}
		w.users[user] = u
	}
	delete(u.waiting, job)
	if !u.busy {
		u.busy, u.started = true, now
		return 0, true
	}
	w.deferred.Add(1)
	turn := max(u.attempt, now.Sub(u.started), minTurn)
	from := now
	if u.last.After(now) {
		from = u.last
	}
	wait = min(from.Add(turn).Sub(now), maxDeferral)
	u.waiting[job] = now.Add(wait)
	if u.waiting[job].After(u.last) {
		u.last = u.waiting[job]
	}
	return wait, false
}

// end gives user's place back after the attempt begin allowed.
func (w *Webhooks) end(user int64) {
	if user == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	u := w.users[user]
	if u == nil || !u.busy {
		return
	}
	now := w.now()
	u.busy, u.attempt = false, now.Sub(u.started)
	if u.prune(now, w.opts.Timeout) {
		delete(w.users, user)
	}
}

// sweep forgets the users with nothing in flight whose deliveries put off
// are all past their turn (they came back to other replicas, or were
// deleted): without it, a user whose jobs all went elsewhere would be kept
// until its next delivery here. Called with w.mu held, once a sweepEvery.
func (w *Webhooks) sweep(now time.Time) {
	w.swept = now
	for user, u := range w.users {
		if u.prune(now, w.opts.Timeout) {
			delete(w.users, user)
		}
	}
}

// prune forgets the deliveries put off that are past their turn by more
// than grace: they came back to another replica, or were deleted. It
// reports whether nothing is left of u (nothing in flight, none put off).
func (u *userDeliveries) prune(now time.Time, grace time.Duration) bool {
	for job, at := range u.waiting {
		if now.Sub(at) > grace {
			delete(u.waiting, job)
		}
	}
	return !u.busy && len(u.waiting) == 0
}

// maxDeliveryErrorBytes bounds the text of a failed attempt kept in its
// run, the log and the queue.
const maxDeliveryErrorBytes = 512

// Deliver makes one attempt to POST run id's record to its callback URL and
// records it in the run. It returns an error when the attempt failed, so
// that the queue tries again later, unless the run was deleted meanwhile;
// last says no attempt follows.
func (w *Webhooks) Deliver(ctx context.Context, id string, attempt int, last bool) error {
	sys := wasmwiz.SystemContext(ctx)
	rec, err := w.opts.Runs.FindRunByID(sys, id)
	if wasmwiz.ErrorCode(err) == wasmwiz.ENOTFOUND {
		return nil // deleted meanwhile: nothing to deliver
	}
	if err != nil {
		return err
	}
	if rec.CallbackURL == "" {
		return nil
	}
	secret, err := w.opts.Runs.WebhookSecret(sys, rec.UserID)
	if err != nil {
		return err
	}
	rec.Deliveries = nil
	body, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	start := time.Now()
	d := &wasmwiz.WebhookDelivery{RunID: id, Attempt: attempt, At: start.UTC()}
	code, sendErr := w.send(ctx, rec.CallbackURL, secret, attempt, body)
	d.StatusCode = code
	d.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	refused := errors.Is(sendErr, errAddressRefused)
	if sendErr != nil {
		// The receiver chooses what its answer holds: a status line of
		// megabytes makes the client's error as long (quoted, four times
		// that). Cut, it is stored, logged and handed to the queue.
		d.Error = wasmwiz.CutText(sendErr.Error(), maxDeliveryErrorBytes)
		sendErr = errors.New(d.Error)
	}
	err = w.opts.Runs.AddWebhookDelivery(context.WithoutCancel(sys), d)
	gone := wasmwiz.ErrorCode(err) == wasmwiz.ENOTFOUND
	if err != nil && !gone {
		w.opts.Logger.Warn("webhook attempt not recorded", "run_id", id, "attempt", attempt, "err", err)
	}
	switch {
	case sendErr == nil:
		w.delivered.Add(1)
		return nil
	case gone:
		return nil // deleted during the attempt: nothing to deliver again
	case last:
		w.givenUp.Add(1)
	default:
		w.failed.Add(1)
	}
	if refused {
		w.refused.Add(1)
	}
	w.opts.Logger.Info("webhook delivery failed", "run_id", id, "attempt", attempt, "last", last, "err", sendErr)
	return sendErr
}

// send POSTs body and returns the answer's status; an error for no answer
// or one that is not 2xx.
func (w *Webhooks) send(ctx context.Context, url, secret string, attempt int, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, w.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "WasmWiz-Webhook/1")
	req.Header.Set("WasmWiz-Delivery-Attempt", strconv.Itoa(attempt))
	req.Header.Set(SignatureHeader, Sign(secret, time.Now(), body))
	resp, err := w.client.Do(req)
	if err != nil {
		if errors.Is(err, errAddressRefused) {
			return 0, errAddressRefused
		}
		return 0, fmt.Errorf("no answer: %w", unwrapURLError(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, w.opts.MaxResponseBytes))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("answered %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}

// unwrapURLError drops the URL from a client error: it is in the run
// already, and its query may hold what its owner did not mean to log.
func unwrapURLError(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}
