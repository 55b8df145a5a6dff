package queue_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/internal/queue"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
)

const webhookKind = "wasmwiz_webhook"

// loopback lets the tests' callbacks (httptest servers) be reached.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// receiver is a callback server that answers each request with the next
// status of its list (the last one once the list is spent) and keeps what
// it received.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	got      []received
}

// received is one request a receiver got.
type received struct {
	header http.Header
	method string
	body   []byte
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	t.Helper()
	rc := &receiver{statuses: statuses}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		status := rc.statuses[min(len(rc.got), len(rc.statuses)-1)]
		rc.got = append(rc.got, received{header: r.Header.Clone(), method: r.Method, body: body})
		rc.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.Close)
	return rc
}

// requests returns what the receiver got so far.
func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

// users numbers the users of webhookRun.
var users atomic.Int64

// webhookRun makes a user with a webhook secret and a stored run of theirs
// whose callback is url (no job), and returns the run and the secret.
func webhookRun(t *testing.T, s *store, url string) (*wasmwiz.UsageRecord, string) {
	t.Helper()
	_, ctx := s.user(t, "hooked"+strconv.FormatInt(users.Add(1), 10)+"@example.com")
	secret, err := s.RotateWebhookSecret(ctx)
	if err != nil {
		t.Fatalf("RotateWebhookSecret: %v", err)
	}
	return s.mustQueueRun(t, ctx, url, noJob), secret
}

// deliveries returns the delivery attempts recorded in run id.
func deliveries(t *testing.T, s *store, id string) []wasmwiz.WebhookDelivery {
	t.Helper()
	r, err := s.FindRunByID(wasmwiz.SystemContext(context.Background()), id)
	if err != nil {
		t.Fatalf("FindRunByID: %v", err)
	}
	return r.Deliveries
}

func newWebhooks(s *store, allow []netip.Prefix) *queue.Webhooks {
	return queue.NewWebhooks(queue.WebhookOptions{Runs: s, Allow: allow, Logger: slog.New(slog.DiscardHandler)})
}

// verifySignature checks header as a receiver does, without queue.Sign:
// t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">.
func verifySignature(secret, header string, body []byte) bool {
	ts, v1, ok := strings.Cut(header, ",")
	ts, ok1 := strings.CutPrefix(ts, "t=")
	v1, ok2 := strings.CutPrefix(v1, "v1=")
	if !ok || !ok1 || !ok2 {
		return false
	}
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	want := hex.EncodeToString(mac.Sum(nil))
	return hmac.Equal([]byte(v1), []byte(want))
}

func TestWebhookDeliveryIsSigned(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		rc := newReceiver(t, http.StatusNoContent)
		run, secret := webhookRun(t, s, rc.URL+"/hook")
		w := newWebhooks(s, loopback)
		if err := w.Deliver(context.Background(), run.ID, 3, false); err != nil {
			t.Fatalf("Deliver: %v", err)
		}
		got := rc.requests()
		if len(got) != 1 {
			t.Fatalf("the callback got %d requests, want 1", len(got))
		}
		req := got[0]
		if req.method != http.MethodPost || req.header.Get("Content-Type") != "application/json" ||
			req.header.Get("WasmWiz-Delivery-Attempt") != "3" {
			t.Errorf("request %s with headers %v", req.method, req.header)
		}
		if sig := req.header.Get(queue.SignatureHeader); !verifySignature(secret, sig, req.body) {
			t.Errorf("%s %q does not verify with the user's secret", queue.SignatureHeader, sig)
		}
		if verifySignature(secret+"x", req.header.Get(queue.SignatureHeader), req.body) {
			t.Error("the signature verifies with another secret")
		}
		var body map[string]any
		if err := json.Unmarshal(req.body, &body); err != nil {
			t.Fatalf("body %q: %v", req.body, err)
		}
		if body["id"] != run.ID || body["state"] != string(wasmwiz.RunQueued) || body["callback_url"] != rc.URL+"/hook" {
			t.Errorf("body %s is not the run's record", req.body)
		}
		if _, ok := body["webhook_deliveries"]; ok {
			t.Errorf("body %s lists the deliveries", req.body)
		}
		d := deliveries(t, s, run.ID)
		if len(d) != 1 || d[0].Attempt != 3 || d[0].StatusCode != http.StatusNoContent || d[0].Error != "" {
			t.Fatalf("recorded deliveries %+v, want attempt 3 answered 204", d)
		}
		if st := w.Stats(); st != (queue.WebhookStats{Delivered: 1}) {
			t.Fatalf("stats %+v, want one delivered", st)
		}
	})
}

// A failed delivery is tried again by the queue until it is delivered.
func TestWebhookRetriedUntilDelivered(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		rc := newReceiver(t, http.StatusInternalServerError, http.StatusOK)
		run, secret := webhookRun(t, s, rc.URL)
		w := newWebhooks(s, loopback)
		q := s.startQueue(t, queue.Options{Webhooks: w, PollInterval: 50 * time.Millisecond})
		s.enqueueWebhook(t, q, run)
		testenv.WaitFor(t, "the second attempt's delivery", func() bool { return w.Stats().Delivered == 1 })
		got := rc.requests()
		if len(got) != 2 {
			t.Fatalf("the callback got %d requests, want 2", len(got))
		}
		for i, req := range got {
			if a := req.header.Get("WasmWiz-Delivery-Attempt"); a != strconv.Itoa(i+1) {
				t.Errorf("request %d says attempt %s", i+1, a)
			}
			if !verifySignature(secret, req.header.Get(queue.SignatureHeader), req.body) {
				t.Errorf("request %d is not signed with the user's secret", i+1)
			}
		}
		d := deliveries(t, s, run.ID)
		if len(d) != 2 || d[0].StatusCode != 500 || !contains(d[0].Error, "answered 500") || d[1].StatusCode != 200 || d[1].Error != "" {
			t.Fatalf("recorded deliveries %+v, want 500 then 200", d)
		}
		if st := w.Stats(); st != (queue.WebhookStats{Delivered: 1, Failed: 1}) {
			t.Fatalf("stats %+v, want one failed, one delivered", st)
		}
	})
}

// TestWebhookLeftRunningByADeadReplicaIsDelivered: on each store, a
// webhook job that a replica took an hour ago and never finished (it died
// mid-delivery) is rescued by River and delivered. A job without a timeout
// is never rescued: it stayed running for good, and the callback was never
// called.
func TestWebhookLeftRunningByADeadReplicaIsDelivered(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		rc := newReceiver(t, http.StatusOK)
		run, _ := webhookRun(t, s, rc.URL)
		w := newWebhooks(s, loopback)
		q := s.newQueue(t, queue.Options{Webhooks: w, PollInterval: 50 * time.Millisecond})
		s.enqueueWebhook(t, q, run)
		s.takenLongAgo(t, webhookKind)
		start(t, q)
		testenv.WaitFor(t, "the stuck delivery to be rescued and made", func() bool { return w.Stats().Delivered == 1 })
		if n := len(rc.requests()); n != 1 {
			t.Fatalf("the callback got %d requests, want 1", n)
		}
	})
}

// A delivery that keeps failing is given up after its last attempt.
func TestWebhookGivenUpAfterTheLastAttempt(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		rc := newReceiver(t, http.StatusBadGateway)
		run, _ := webhookRun(t, s, rc.URL)
		w := newWebhooks(s, loopback)
		q := s.startQueue(t, queue.Options{Webhooks: w, WebhookAttempts: 2, PollInterval: 50 * time.Millisecond})
		s.enqueueWebhook(t, q, run)
		testenv.WaitFor(t, "the delivery given up", func() bool { return w.Stats().GivenUp == 1 })
		testenv.WaitFor(t, "River to discard the job", func() bool {
			states := s.states(t, webhookKind)
			return len(states) == 1 && states[0] == "discarded"
		})
		if n := len(rc.requests()); n != 2 {
			t.Fatalf("the callback got %d requests, want 2 (the attempts)", n)
		}
		if d := deliveries(t, s, run.ID); len(d) != 2 || d[1].Attempt != 2 || d[1].StatusCode != http.StatusBadGateway {
			t.Fatalf("recorded deliveries %+v, want two answered 502", d)
		}
		if st := w.Stats(); st != (queue.WebhookStats{Failed: 1, GivenUp: 1}) {
			t.Fatalf("stats %+v, want one failed, one given up", st)
		}
	})
}

// Callbacks reach public addresses only, unless allowed, also through a
// name that resolves to an address that is not public; a refused attempt
// sends nothing, is recorded and counted, and fails (to be tried again).
func TestWebhookRefusesAddressesNotAllowed(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		rc := newReceiver(t, http.StatusOK)
		port := rc.URL[strings.LastIndex(rc.URL, ":")+1:]
		for _, tc := range []struct {
			name string
			url  string
			last bool
			want queue.WebhookStats
		}{
			{"loopback address", rc.URL, false, queue.WebhookStats{Failed: 1, Refused: 1}},
			{"name of a loopback address", "http://localhost:" + port + "/hook", false, queue.WebhookStats{Failed: 1, Refused: 1}},
			{"last attempt", rc.URL, true, queue.WebhookStats{GivenUp: 1, Refused: 1}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				run, _ := webhookRun(t, s, tc.url)
				w := newWebhooks(s, nil)
				err := w.Deliver(context.Background(), run.ID, 1, tc.last)
				if err == nil || !contains(err.Error(), "not public") {
					t.Fatalf("Deliver to %s: %v, want the address refused", tc.url, err)
				}
				if st := w.Stats(); st != tc.want {
					t.Errorf("stats %+v, want %+v", st, tc.want)
				}
				d := deliveries(t, s, run.ID)
				if len(d) != 1 || d[0].StatusCode != 0 || !contains(d[0].Error, "not public") {
					t.Errorf("recorded deliveries %+v, want one refused", d)
				}
			})
		}
		if n := len(rc.requests()); n != 0 {
			t.Fatalf("a refused callback got %d requests", n)
		}
	})
}

func TestWebhookAllowed(t *testing.T) {
	t.Parallel()
	w := queue.NewWebhooks(queue.WebhookOptions{Allow: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}})
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"93.184.216.34", true},
		{"2606:2800:220:1:248:1893:25c8:1946", true},
		{"10.1.2.3", true},                              // private, but allowed
		{"::ffff:10.1.2.3", true},                       // the same, IPv4-mapped
		{"10.2.0.1", false},                             // private
		{"::ffff:10.2.0.1", false},                      // private, IPv4-mapped
		{"172.16.0.1", false},                           // private
		{"192.168.1.1", false},                          // private
		{"127.0.0.1", false},                            // loopback
		{"::1", false},                                  // loopback
		{"169.254.169.254", false},                      // link-local: cloud metadata
		{"fe80::1", false},                              // link-local
		{"fd00::1", false},                              // unique local
		{"100.64.0.1", false},                           // carrier-grade NAT
		{"0.0.0.0", false},                              // unspecified
		{"::", false},                                   // unspecified
		{"224.0.0.1", false},                            // multicast
		{"ff02::1", false},                              // multicast
		{"255.255.255.255", false},                      // broadcast
		{"240.0.0.1", false},                            // reserved
		{"0.1.2.3", false},                              // "this network"
		{"198.18.0.1", false},                           // benchmarking
		{"64:ff9b::7f00:1", false},                      // NAT64 of 127.0.0.1
		{"64:ff9b::a02:1", false},                       // NAT64 of 10.2.0.1
		{"64:ff9b::a01:203", true},                      // NAT64 of 10.1.2.3, allowed
		{"64:ff9b::5db8:d822", true},                    // NAT64 of a public address (DNS64)
		{"2002:7f00:1::1", false},                       // 6to4 of 127.0.0.1
		{"2002:a9fe:a9fe::1", false},                    // 6to4 of 169.254.169.254
		{"2002:5db8:d822::1", true},                     // 6to4 of a public address
		{"64:ff9b:1::7f00:1", false},                    // local-use NAT64
		{"::ffff:0:7f00:1", false},                      // IPv4-translated 127.0.0.1
		{"::ffff:0:5db8:d822", false},                   // IPv4-translated, not judged
		{"fec0::1", false},                              // site-local
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", false}, // Teredo
		{"::7f00:1", false},                             // IPv4-compatible 127.0.0.1
		{"2001:db8::1", false},                          // documentation
	} {
		t.Run(tc.ip, func(t *testing.T) {
			if got := w.Allowed(netip.MustParseAddr(tc.ip)); got != tc.want {
				t.Fatalf("Allowed(%s) = %v, want %v", tc.ip, got, tc.want)
			}
		})
	}
}

// The receiver is the URL given: a redirect is an answer that is not 2xx,
// and is not followed.
func TestWebhookDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		target := newReceiver(t, http.StatusOK)
		redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusFound))
		t.Cleanup(redirect.Close)
		run, _ := webhookRun(t, s, redirect.URL)
		w := newWebhooks(s, loopback)
		err := w.Deliver(context.Background(), run.ID, 1, false)
		if err == nil || !contains(err.Error(), "answered 302") {
			t.Fatalf("Deliver to a redirect: %v, want answered 302", err)
		}
		if n := len(target.requests()); n != 0 {
			t.Fatalf("the redirect's target got %d requests", n)
		}
		if d := deliveries(t, s, run.ID); len(d) != 1 || d[0].StatusCode != http.StatusFound {
			t.Fatalf("recorded deliveries %+v, want one answered 302", d)
		}
	})
}

// An attempt is bounded by the timeout, and a failure's message, which is
// recorded and logged, does not hold the callback URL (its query may hold
// a token).
func TestWebhookFailures(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		closed := httptest.NewServer(http.NotFoundHandler())
		closed.Close()
		var answer *testenv.Gate
		hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _ = answer.Wait(r.Context()) }))
		t.Cleanup(hang.Close)
		answer = testenv.NewGate(t) // after the server: opens before it closes
		for _, tc := range []struct {
			name, url string
		}{
			{"nobody listening", closed.URL + "/hook?token=s3cret"},
			{"no answer within the timeout", hang.URL + "/hook?token=s3cret"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				run, _ := webhookRun(t, s, tc.url)
				w := queue.NewWebhooks(queue.WebhookOptions{Runs: s, Allow: loopback, Timeout: 100 * time.Millisecond,
					Logger: slog.New(slog.DiscardHandler)})
				err := w.Deliver(context.Background(), run.ID, 1, false)
				if err == nil || !contains(err.Error(), "no answer") || contains(err.Error(), "s3cret") {
					t.Fatalf("Deliver: %v, want no answer, without the URL", err)
				}
				d := deliveries(t, s, run.ID)
				if len(d) != 1 || d[0].StatusCode != 0 || d[0].Error != err.Error() {
					t.Fatalf("recorded deliveries %+v, want the failure %q", d, err)
				}
				if st := w.Stats(); st != (queue.WebhookStats{Failed: 1}) {
					t.Fatalf("stats %+v, want one failed", st)
				}
			})
		}
	})
}

// A receiver chooses its answer: a status line of tens of kilobytes, which
// the HTTP client quotes whole in its error, is recorded, logged and handed
// to the queue cut to a few hundred bytes; headers past 64 KiB are not
// read at all.
func TestWebhookLongFailureIsCut(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		for _, tc := range []struct {
			size int
			want string
		}{
			{60 << 10, "cut at 512"},
			{1 << 20, "exceeded 65536 bytes"},
		} {
			addr := testenv.ServeTCP(t, func(c net.Conn) {
				defer c.Close()
				_, _ = c.Read(make([]byte, 64<<10))
				_, _ = c.Write(append(bytes.Repeat([]byte{0xff}, tc.size), "\r\n\r\n"...))
			})
			run, _ := webhookRun(t, s, "http://"+addr+"/hook")
			w := newWebhooks(s, loopback)
			err := w.Deliver(context.Background(), run.ID, 1, false)
			if err == nil || len(err.Error()) > 1024 {
				t.Fatalf("Deliver (%d bytes of status): an error of %d bytes, want one of at most 1 KiB", tc.size, len(fmt.Sprint(err)))
			}
			d := deliveries(t, s, run.ID)
			if len(d) != 1 || d[0].Error != err.Error() || !utf8.ValidString(d[0].Error) || !contains(d[0].Error, tc.want) {
				t.Fatalf("recorded deliveries %+v (%d bytes of status), want the failure to say %q", d, tc.size, tc.want)
			}
		}
	})
}

// A run without a callback, or no longer stored, has nothing to deliver:
// the attempt succeeds without a request.
func TestWebhookNothingToDeliver(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		run, _ := webhookRun(t, s, "")
		w := newWebhooks(s, loopback)
		for _, id := range []string{run.ID, wasmwiz.NewRunID(time.Now())} {
			if err := w.Deliver(context.Background(), id, 1, false); err != nil {
				t.Fatalf("Deliver(%s): %v", id, err)
			}
		}
		if d := deliveries(t, s, run.ID); len(d) != 0 {
			t.Fatalf("recorded deliveries %+v for a run without a callback", d)
		}
		if st := w.Stats(); st != (queue.WebhookStats{}) {
			t.Fatalf("stats %+v, want none", st)
		}
	})
}

// A run deleted while its webhook is being delivered (retention of a tier
// that keeps runs for moments) is not delivered again: its failed attempt,
// which the store refuses to record, is no error to try again.
func TestWebhookRunDeletedDuringTheAttempt(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		sys := wasmwiz.SystemContext(context.Background())
		var run *wasmwiz.UsageRecord
		hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := s.CancelRun(sys, run.ID, nil); err != nil {
				t.Errorf("CancelRun: %v", err)
			}
			if n, err := s.DeleteRunsBefore(sys, time.Now().Add(time.Hour), "", 10); err != nil || n != 1 {
				t.Errorf("DeleteRunsBefore: %d runs, %v; want the one", n, err)
			}
			w.WriteHeader(http.StatusInternalServerError)
		}))
		t.Cleanup(hook.Close)
		run, _ = webhookRun(t, s, hook.URL)
		w := newWebhooks(s, loopback)
		if err := w.Deliver(context.Background(), run.ID, 1, false); err != nil {
			t.Fatalf("Deliver: %v, want nothing to try again (the run is gone)", err)
		}
		if st := w.Stats(); st != (queue.WebhookStats{}) {
			t.Fatalf("stats %+v, want none", st)
		}
	})
}

// A user's deliveries put off while one is in flight take turns: each comes
// back one attempt's duration after the one put off before it, at most
// five minutes later; another user's are not put off, and a user with
// nothing in flight or put off is forgotten.
func TestWebhookDeferredTakeTurns(t *testing.T) {
	t.Parallel()
	w := queue.NewWebhooks(queue.WebhookOptions{Timeout: 10 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	now := time.Unix(1_000_000, 0)
	w.SetNow(func() time.Time { return now })
	const alice, bob = 1, 2

	if _, ok := w.Begin(alice, 1); !ok {
		t.Fatal("alice's first delivery is put off")
	}
	// Before any attempt ended, a turn is a second.
	if wait, ok := w.Begin(alice, 2); ok || wait != time.Second {
		t.Fatalf("alice's second delivery: wait %v, ok %v; want put off for 1s", wait, ok)
	}
	if wait, ok := w.Begin(alice, 3); ok || wait != 2*time.Second {
		t.Fatalf("alice's third delivery: wait %v, ok %v; want put off for 2s", wait, ok)
	}
	if _, ok := w.Begin(bob, 10); !ok {
		t.Fatal("bob's delivery is put off by alice's")
	}
	// Alice's first attempt took 200ms: that is her turn from now on.
	now = now.Add(200 * time.Millisecond)
	w.End(alice)
	if _, ok := w.Begin(alice, 4); !ok {
		t.Fatal("alice's fourth delivery is put off with nothing in flight")
	}
	// Job 5 waits behind jobs 2 and 3:
	// job 3's turn (2s from the start) plus one 200ms turn.
	if wait, ok := w.Begin(alice, 5); ok || wait != 2*time.Second {
		t.Fatalf("alice's fifth delivery: wait %v, ok %v; want put off for 2s (1.8s behind job 3, one 200ms turn)", wait, ok)
	}
	// Job 2 comes back at its turn while job 4 is still in flight: it goes
	// to the end of the line, a turn being as long as job 4 has taken so
	// far (800ms), longer than the last attempt.
	now = now.Add(800 * time.Millisecond)
	if wait, ok := w.Begin(alice, 2); ok || wait != 2*time.Second {
		t.Fatalf("job 2 back while one is in flight: wait %v, ok %v; want put off for 2s, 800ms after job 5", wait, ok)
	}
	if st := w.Stats(); st.Deferred != 4 {
		t.Fatalf("deferred %d, want 4", st.Deferred)
	}

	// A receiver that never answers: turns of 10s, and no delivery is put
	// off for more than five minutes however long the line.
	now = now.Add(10 * time.Second)
	w.End(alice)
	if _, ok := w.Begin(alice, 100); !ok {
		t.Fatal("alice's delivery is put off with nothing in flight")
	}
	var longest time.Duration
	for job := int64(101); job < 200; job++ {
		wait, ok := w.Begin(alice, job)
		if ok || wait <= 0 || wait > 5*time.Minute {
			t.Fatalf("job %d: wait %v, ok %v; want put off for at most 5m", job, wait, ok)
		}
		longest = max(longest, wait)
	}
	if longest != 5*time.Minute {
		t.Fatalf("the longest wait is %v, want 5m", longest)
	}

	// Deliveries whose turn is long past (they came back to another
	// replica) are forgotten, and so is a user with none left.
	now = now.Add(time.Hour)
	w.End(alice)
	w.End(bob)
	if n := w.UsersTracked(); n != 0 {
		t.Fatalf("%d users tracked after every delivery ended, want 0", n)
	}

	// A receiver that answered once at once, then hangs: the deliveries
	// put off meanwhile wait at least as long as the hanging attempt has
	// lasted, not the 1ms of the last one.
	if _, ok := w.Begin(alice, 300); !ok {
		t.Fatal("alice's delivery is put off with nothing in flight")
	}
	now = now.Add(time.Millisecond)
	w.End(alice)
	if _, ok := w.Begin(alice, 301); !ok {
		t.Fatal("alice's delivery is put off with nothing in flight")
	}
	now = now.Add(9 * time.Second)
	if wait, ok := w.Begin(alice, 302); ok || wait != 9*time.Second {
		t.Fatalf("a delivery put off while one hangs for 9s: wait %v, ok %v; want 9s", wait, ok)
	}
	if wait, ok := w.Begin(alice, 303); ok || wait != 18*time.Second {
		t.Fatalf("the next one: wait %v, ok %v; want 18s", wait, ok)
	}

	// A user whose deliveries put off all came back to other replicas is
	// forgotten by the next sweep, whoever's delivery brings it.
	now = now.Add(10 * time.Second)
	w.End(alice) // jobs 302 and 303 are not past their turn by the timeout (10s)
	if n := w.UsersTracked(); n != 1 {
		t.Fatalf("%d users tracked with deliveries put off, want 1", n)
	}
	now = now.Add(time.Hour)
	if _, ok := w.Begin(bob, 11); !ok {
		t.Fatal("bob's delivery is put off")
	}
	w.End(bob)
	if n := w.UsersTracked(); n != 0 {
		t.Fatalf("%d users tracked an hour later, want 0 (alice swept)", n)
	}
}

// A burst of one user's deliveries through the queue: each is made once,
// one at a time, the ones put off coming back at their turns.
func TestWebhookBurstOfOneUser(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s *store) {
		rc := newReceiver(t, http.StatusOK)
		_, ctx := s.user(t, "burst"+strconv.FormatInt(users.Add(1), 10)+"@example.com")
		if _, err := s.RotateWebhookSecret(ctx); err != nil {
			t.Fatalf("RotateWebhookSecret: %v", err)
		}
		w := newWebhooks(s, loopback)
		q := s.startQueue(t, queue.Options{Webhooks: w, PollInterval: 50 * time.Millisecond})
		const n = 12
		want := map[string]bool{}
		for range n {
			run := s.mustQueueRun(t, ctx, rc.URL, noJob)
			want[run.ID] = true
			s.enqueueWebhook(t, q, run)
		}
		testenv.WaitFor(t, "every delivery", func() bool { return w.Stats().Delivered == n })
		got := map[string]int{}
		for _, req := range rc.requests() {
			var rec wasmwiz.UsageRecord
			if err := json.Unmarshal(req.body, &rec); err != nil {
				t.Fatalf("a delivery's body: %v", err)
			}
			got[rec.ID]++
		}
		for id := range want {
			if got[id] != 1 {
				t.Errorf("run %s delivered %d times, want once", id, got[id])
			}
		}
		if len(got) != n {
			t.Errorf("%d runs delivered, want %d", len(got), n)
		}
		if st := w.Stats(); st.Failed != 0 || st.GivenUp != 0 {
			t.Errorf("stats %+v, want no failure", st)
		}
	})
}
