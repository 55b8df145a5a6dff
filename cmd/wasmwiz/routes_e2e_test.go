package main

import (
	"bytes"
	"context"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/testenv"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
)

// TestServeRoutes drives every route through the client, on each backend.
func TestServeRoutes(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, be backend) {
		testRoutes(t, be.serve(t))
	})
}

func testRoutes(t *testing.T, s *e2eServer) {
	ctx := context.Background()
	admin := s.admin()
	hello, echo, add, argsEnv := testmodule.Read(t, "hello.wasm"), testmodule.Read(t, "echo.wasm"), testmodule.Read(t, "add.wasm"), testmodule.Read(t, "args_env.wasm")

	// Operations.
	if err := s.client("").Health(ctx); err != nil {
		t.Fatalf("Health: %v", err)
	}
	rd, err := s.client("").Ready(ctx)
	if err != nil || !rd.Ready || rd.Checks["database"] != "ok" || rd.Checks["workers"] != "ok" {
		t.Fatalf("Ready: %+v, %v", rd, err)
	}
	if _, redis := rd.Checks["redis"]; redis != (s.srv.cfg.RedisURL != "") {
		t.Fatalf("Ready checks %v: redis listed %v, configured %v", rd.Checks, redis, s.srv.cfg.RedisURL != "")
	}
	doc, err := s.client("").OpenAPI(ctx)
	if err != nil || doc["openapi"] == nil {
		t.Fatalf("OpenAPI: %v", err)
	}

	user, me, userKey := s.newUser(wasmwiz.TierBasic)
	gotMe, err := user.Me(ctx)
	if err != nil || gotMe.User.ID != me.ID || gotMe.Tier.Name != wasmwiz.TierBasic || gotMe.Tier.Limits["timeout_ms"] != 10_000 {
		t.Fatalf("Me: %+v %v", gotMe, err)
	}
	// Every limit the server declares, in the tier and described.
	if fs := wasmwiz.TierFields(); len(gotMe.Tier.Limits) != len(fs) || len(gotMe.Limits) != len(fs) {
		t.Fatalf("Me: %d limits in the tier and %d described, want %d", len(gotMe.Tier.Limits), len(gotMe.Limits), len(fs))
	}
	for _, l := range gotMe.Limits {
		if gotMe.Tier.Limits[l.Name] != l.Value || l.Help == "" || l.Text == "" {
			t.Errorf("Me: limit %+v, the tier says %d", l, gotMe.Tier.Limits[l.Name])
		}
	}

	// Execute: each body, inline.
	for _, body := range []struct {
		name string
		kind client.Body
	}{{"json", client.BodyJSON}, {"multipart", client.BodyMultipart}, {"raw", client.BodyRaw}} {
		t.Run("execute/"+body.name, func(t *testing.T) {
			res, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: hello, Body: body.kind})
			if err != nil || res.Status != api.StatusOK || string(res.Stdout) != "Hello, World!\n" || !strings.HasPrefix(res.ID, "run_") {
				t.Fatalf("hello: %+v, %v", res, err)
			}
			res, err = user.Execute(ctx, &client.ExecuteRequest{Wasm: echo, Stdin: []byte("  hi there \n"), Body: body.kind})
			if err != nil || string(res.Stdout) != "hi there" {
				t.Fatalf("echo: %+v, %v", res, err)
			}
			res, err = user.Execute(ctx, &client.ExecuteRequest{Wasm: argsEnv, Name: "prog.wasm", Args: []string{"a b", "c"},
				Env: map[string]string{"K": "V=1"}, Body: body.kind})
			if err != nil {
				t.Fatalf("args_env: %v", err)
			}
			for _, want := range []string{"argv[1]=a b\n", "argv[2]=c\n", "env K=V=1\n"} {
				if !strings.Contains(string(res.Stdout), want) {
					t.Errorf("args_env stdout %q lacks %q", res.Stdout, want)
				}
			}
			res, err = user.Execute(ctx, &client.ExecuteRequest{Wasm: add, Function: "add", Params: []string{"2", "40"}, Body: body.kind})
			if err != nil || len(res.Results) != 1 || res.Results[0].String() != "42" {
				t.Fatalf("add: %+v, %v", res, err)
			}
			_, err = user.Execute(ctx, &client.ExecuteRequest{Wasm: []byte("not wasm at all"), Body: body.kind})
			wantCode(t, "not wasm", err, wasmwiz.EINVALID)
			_, err = user.Execute(ctx, &client.ExecuteRequest{Wasm: add, Function: "nope", Body: body.kind})
			wantCode(t, "unknown function", err, wasmwiz.EINVALID)
		})
	}
	// The original service's route (its contract: internal/http's
	// TestRealEngineLegacyFixtures).
	legacy, err := user.ExecuteLegacy(ctx, echo, "  legacy  ")
	if err != nil || legacy.Output == nil || *legacy.Output != "legacy" || legacy.Error != nil || !strings.HasPrefix(legacy.RunID, "run_") {
		t.Fatalf("ExecuteLegacy: %+v, %v", legacy, err)
	}

	// Modules.
	m, err := user.CreateModule(ctx, client.ModuleUpload{Wasm: echo, Name: "echo", Description: "trims stdin"})
	if err != nil || !strings.HasPrefix(m.ID, "mod_") || m.Inspection == nil || !m.Inspection.WASI || m.Inspection.Entry != "_start" {
		t.Fatalf("CreateModule: %+v, %v", m, err)
	}
	_, err = user.CreateModule(ctx, client.ModuleUpload{Wasm: testmodule.Read(t, "bad_imports.wasm")})
	wantCode(t, "upload with bad imports", err, wasmwiz.EINVALID)
	mods, total, err := user.ListModules(ctx, "", client.Page{})
	if err != nil || total.Count != 1 || len(mods) != 1 || mods[0].ID != m.ID {
		t.Fatalf("ListModules: %v %d %v", mods, total.Count, err)
	}
	got, err := user.GetModule(ctx, m.ID)
	if err != nil || got.Name != "echo" || got.Description != "trims stdin" || got.SHA256 != m.SHA256 {
		t.Fatalf("GetModule: %+v, %v", got, err)
	}
	desc := "trims stdin and stdout"
	if up, err := user.UpdateModule(ctx, m.ID, api.ModuleUpdate{Description: &desc}); err != nil || up.Name != "echo" || up.Description != desc || up.Public {
		t.Fatalf("UpdateModule: %+v, %v", up, err)
	}
	for _, kind := range []client.Body{client.BodyJSON, client.BodyMultipart, client.BodyRaw} {
		ex, err := user.ExecuteModule(ctx, m.ID, &client.ExecuteRequest{Stdin: []byte(" stored "), Body: kind})
		if err != nil || string(ex.Result.Stdout) != "stored" {
			t.Fatalf("ExecuteModule body %d: %+v, %v", kind, ex, err)
		}
		if !ex.RateLimit.Present || ex.RateLimit.Limit != 100 {
			t.Errorf("ExecuteModule rate headers %+v, want the basic tier's 100 per minute", ex.RateLimit)
		}
	}
	res, err := user.Execute(ctx, &client.ExecuteRequest{ModuleID: m.ID, Stdin: []byte("by id")})
	if err != nil || string(res.Stdout) != "by id" {
		t.Fatalf("Execute by module_id: %+v, %v", res, err)
	}

	// History and usage: the usage writer flushes within its interval.
	var runs []*api.Run
	poll(t, "the runs to be written", func() bool {
		runs, total, err = user.ListRuns(ctx, client.RunQuery{})
		return err == nil && total.Count >= 4*3+3+1+1 // and the legacy run
	})
	one, err := user.GetRun(ctx, runs[0].ID)
	if err != nil || one.ID != runs[0].ID || one.UserID != me.ID {
		t.Fatalf("GetRun: %+v, %v", one, err)
	}
	okRuns, okTotal, err := user.ListRuns(ctx, client.RunQuery{Status: api.StatusOK, Page: client.Page{Limit: 2}})
	if err != nil || len(okRuns) != 2 || okTotal.Count < 4 || okRuns[0].Status != api.StatusOK {
		t.Fatalf("ListRuns status=ok limit=2: %d runs, total %d, %v", len(okRuns), okTotal.Count, err)
	}
	// Usage counts the runs that ran (refused requests have no status). The
	// writer may still be flushing (the wait above counts refused records
	// too), so compare once the two agree rather than at one instant.
	ranNow := func() (int, int) {
		all, _, err := user.ListRuns(ctx, client.RunQuery{Page: client.Page{Limit: 1000}})
		if err != nil {
			t.Fatal(err)
		}
		ran := 0
		for _, r := range all {
			if r.Status != "" {
				ran++
			}
		}
		return ran, len(all)
	}
	var us *api.Usage
	var ran, listed int
	poll(t, "usage to count every run that ran", func() bool {
		ran, listed = ranNow()
		us, err = user.Usage(ctx)
		return err == nil && us.RunsToday == int64(ran)
	})
	if us.Tier != wasmwiz.TierBasic || us.RunsPerMinute != 100 || ran == listed {
		t.Fatalf("Usage: %+v (runs %d, of which ran %d)", us, listed, ran)
	}
	poll(t, "the stored module's run count", func() bool {
		got, err := user.GetModule(ctx, m.ID)
		return err == nil && got.RunCount == 4
	})

	// Keys.
	nk, err := user.CreateKey(ctx, "laptop", nil)
	if err != nil || !wasmwiz.LooksLikeAPIKey(nk.Secret) || nk.Key.Name != "laptop" || !strings.HasPrefix(nk.Secret, nk.Key.Prefix) {
		t.Fatalf("CreateKey: %+v, %v", nk, err)
	}
	if _, err := s.client(nk.Secret).Me(ctx); err != nil {
		t.Fatalf("the new key: %v", err)
	}
	keys, ktotal, err := user.ListKeys(ctx, false, client.Page{})
	if err != nil || ktotal.Count != 2 || len(keys) != 2 {
		t.Fatalf("ListKeys: %d %v", ktotal.Count, err)
	}
	if err := user.RevokeKey(ctx, nk.Key.ID); err != nil {
		t.Fatalf("RevokeKey: %v", err)
	}
	_, err = s.client(nk.Secret).Me(ctx)
	wantCode(t, "revoked key", err, wasmwiz.EUNAUTHORIZED)
	if _, ktotal, _ = user.ListKeys(ctx, true, client.Page{}); ktotal.Count != 2 {
		t.Fatalf("ListKeys with revoked: %d, want 2", ktotal.Count)
	}
	if _, ktotal, _ = user.ListKeys(ctx, false, client.Page{}); ktotal.Count != 1 {
		t.Fatalf("ListKeys without revoked: %d, want 1", ktotal.Count)
	}

	// Admin: users.
	users, utotal, err := admin.AdminListUsers(ctx, "", client.Page{})
	if err != nil || utotal.Count != 2 || len(users) != 2 {
		t.Fatalf("AdminListUsers: %d %v", utotal.Count, err)
	}
	byEmail, _, err := admin.AdminListUsers(ctx, strings.ToUpper(me.Email), client.Page{})
	if err != nil || len(byEmail) != 1 || byEmail[0].ID != me.ID {
		t.Fatalf("AdminListUsers by email: %v %v", byEmail, err)
	}
	_, err = admin.AdminCreateUser(ctx, api.UserRequest{Email: strings.ToUpper(me.Email)})
	wantCode(t, "duplicate email", err, wasmwiz.ECONFLICT)
	pro := wasmwiz.TierPro
	up, err := admin.AdminUpdateUser(ctx, me.ID, api.UserUpdate{Tier: &pro})
	if err != nil || up.Tier != pro {
		t.Fatalf("AdminUpdateUser tier: %+v, %v", up, err)
	}
	if now, err := user.Me(ctx); err != nil || now.Tier.Name != pro {
		t.Fatalf("after the tier change the user's tier is %+v, %v", now, err)
	}
	gu, err := admin.AdminGetUser(ctx, me.ID)
	if err != nil || gu.Tier != pro {
		t.Fatalf("AdminGetUser: %+v, %v", gu, err)
	}

	// Admin: tiers.
	tiers, err := admin.AdminListTiers(ctx)
	if err != nil || len(tiers) != 4 {
		t.Fatalf("AdminListTiers: %d, %v", len(tiers), err)
	}
	nt := testTier("team", func(tr *wasmwiz.Tier) { tr.Timeout = 7 * time.Second })
	created, err := admin.AdminCreateTier(ctx, nt)
	if err != nil || created.Limits["timeout_ms"] != 7000 || created.Limits["runs_per_minute"] != nt.Limits["runs_per_minute"] {
		t.Fatalf("AdminCreateTier: %+v, %v", created, err)
	}
	_, err = admin.AdminCreateTier(ctx, nt)
	wantCode(t, "tier exists", err, wasmwiz.ECONFLICT)
	nt.Limits["runs_per_minute"] = 77
	if _, err := admin.AdminPutTier(ctx, nt); err != nil {
		t.Fatalf("AdminPutTier: %v", err)
	}
	gt, err := admin.AdminGetTier(ctx, "team")
	if err != nil || gt.Limits["runs_per_minute"] != 77 || gt.Limits["timeout_ms"] != 7000 {
		t.Fatalf("AdminGetTier: %+v, %v", gt, err)
	}
	_, err = admin.AdminPutTier(ctx, testTier("bad", func(tr *wasmwiz.Tier) { tr.MaxConcurrent = 0 }))
	wantCode(t, "invalid tier", err, wasmwiz.EINVALID)

	// Admin: keys and stats.
	ak, err := admin.AdminCreateKey(ctx, me.ID, "ci", nil)
	if err != nil || ak.Key.UserID != me.ID {
		t.Fatalf("AdminCreateKey: %+v, %v", ak, err)
	}
	akeys, _, err := admin.AdminListKeys(ctx, me.ID, false, client.Page{})
	if err != nil || !slices.ContainsFunc(akeys, func(k *api.APIKey) bool { return k.ID == ak.Key.ID }) {
		t.Fatalf("AdminListKeys: %v, %v", akeys, err)
	}
	if err := admin.AdminRevokeKey(ctx, ak.Key.ID); err != nil {
		t.Fatalf("AdminRevokeKey: %v", err)
	}
	_, err = s.client(ak.Secret).Me(ctx)
	wantCode(t, "key revoked by an admin", err, wasmwiz.EUNAUTHORIZED)
	var st *api.Stats
	poll(t, "admin stats to count every run that ran", func() bool {
		ran, _ = ranNow()
		st, err = admin.AdminStats(ctx)
		return err == nil && st.RunsToday == int64(ran)
	})
	if st.Users != 2 || len(st.TopModules) == 0 {
		t.Fatalf("AdminStats: %+v", st)
	}

	// Delete the module: gone, and its runs stay.
	if err := user.DeleteModule(ctx, m.ID); err != nil {
		t.Fatalf("DeleteModule: %v", err)
	}
	_, err = user.GetModule(ctx, m.ID)
	wantCode(t, "deleted module", err, wasmwiz.ENOTFOUND)
	if _, after, _ := user.ListRuns(ctx, client.RunQuery{}); after.Count < total.Count {
		t.Fatalf("runs after deleting the module: %d, before %d", after.Count, total.Count)
	}

	// Background runs, their events, cancel, the webhook secret, the charts.
	if code, body, _ := testenv.DoJSON(t, "POST", s.url+"/api/v1/webhook-secret", userKey, nil, nil); code != http.StatusCreated {
		t.Fatalf("webhook secret: %d %s", code, body)
	}
	bg := startAsync(t, s.url, userKey, map[string]any{"wasm_base64": b64(testmodule.Read(t, "ticks.wasm"))})
	if code, body, _ := testenv.DoJSON(t, "POST", s.url+"/api/v1/runs/"+bg+"/cancel", userKey, nil, nil); code != http.StatusOK {
		t.Fatalf("cancel: %d %s", code, body)
	}
	evctx, evcancel := context.WithCancel(ctx)
	next(t, follow(t, evctx, s.url+"/api/v1/runs/"+bg+"/events", userKey, "", nil), "result", nil)
	evcancel()
	if code, body, _ := testenv.DoJSON(t, "GET", s.url+"/api/v1/usage/daily?days=7", userKey, nil, nil); code != http.StatusOK ||
		!bytes.Contains(body, []byte(`"by_status":{"ok"`)) {
		t.Fatalf("daily usage: %d %s", code, body)
	}

	// Metrics count what happened. The cancel above killed a worker, and with
	// it the modules it held; one more run leaves a compiled module in a live
	// worker for the cache gauge below.
	if _, err := user.Execute(ctx, &client.ExecuteRequest{Wasm: hello}); err != nil {
		t.Fatalf("Execute after the cancel: %v", err)
	}
	metrics, err := s.client("").Metrics(ctx)
	if err != nil {
		t.Fatalf("Metrics: %v", err)
	}
	for _, want := range []string{`wasmwiz_runs_total{status="ok",tier="basic"}`, "wasmwiz_usage_records_written_total", "go_goroutines",
		`wasmwiz_workers{state="idle"}`, `wasmwiz_worker_module_routing_total{result="hit"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The workers' compile caches: the modules above were compiled, and are held.
	for _, name := range []string{"wasmwiz_compiles_total", "wasmwiz_compile_cache_entries"} {
		m := regexp.MustCompile(`(?m)^` + name + ` ([0-9.e+]+)$`).FindStringSubmatch(metrics)
		if m == nil || m[1] == "0" {
			t.Errorf("%s: %v, want a positive figure", name, m)
		}
	}
	// Request ids in and out, and the security headers, on the real server.
	req, _ := http.NewRequest(http.MethodGet, s.url+"/api/v1/usage", nil)
	req.Header.Set("X-Request-Id", "e2e-req.42")
	resp, _ := testenv.Send(t, req)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("X-Request-Id") != "e2e-req.42" ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("request id and headers: %d %v", resp.StatusCode, resp.Header)
	}

	// The web page and one of its static files.
	pageRes, page := testenv.Do(t, http.MethodGet, s.url+"/", "", "", nil)
	asset := regexp.MustCompile(`/static/[A-Za-z0-9._-]+`).Find(page)
	if pageRes.StatusCode != http.StatusOK || asset == nil {
		t.Fatalf("GET /: %d, no /static/ asset in %.300s", pageRes.StatusCode, page)
	}
	if res, _ := testenv.Do(t, http.MethodGet, s.url+string(asset), "", "", nil); res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", asset, res.StatusCode)
	}
	metrics, err = s.client("").Metrics(ctx)
	if err != nil {
		t.Fatalf("Metrics: %v", err)
	}

	// Every registered route was called above with a 2xx answer, except
	// /metrics itself.
	answered := regexp.MustCompile(`wasmwiz_http_requests_total\{method="[A-Z]+",route="([^"]+)",status="2\d\d"\}`)
	seen := map[string]bool{}
	for _, m := range answered.FindAllStringSubmatch(metrics, -1) {
		seen[m[1]] = true
	}
	for _, r := range s.srv.api.Routes() {
		name := r.Method + " " + r.Pattern
		if name == "GET /metrics" {
			continue
		}
		if !seen[name] {
			t.Errorf("route %s was not answered with a 2xx in this test", name)
		}
	}
}
