package http_test

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
)

// TestOpenAPICoversRoutes fails when a registered route is missing from
// /api/openapi.json, or the document names a route that does not exist.
func TestOpenAPICoversRoutes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	res := f.do(request{method: "GET", path: "/api/openapi.json"})
	if res.status != 200 {
		t.Fatalf("status %d", res.status)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(res.body, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Errorf("openapi = %q, want 3.1.x", doc.OpenAPI)
	}
	registered := map[string]bool{}
	for _, r := range f.srv.Routes() {
		// Explicit rule: the web UI's page and static files (web.go) serve
		// HTML and assets, not the API, so they are not in the API's
		// document. Only the patterns in webRoutes (web_test.go) are excused.
		if webRoutes[r.Method+" "+r.Pattern] {
			continue
		}
		key := strings.ToLower(r.Method) + " " + r.Pattern
		registered[key] = true
		if _, ok := doc.Paths[r.Pattern][strings.ToLower(r.Method)]; !ok {
			t.Errorf("route %s %s is not in /api/openapi.json", r.Method, r.Pattern)
		}
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if !registered[method+" "+path] {
				t.Errorf("/api/openapi.json documents %s %s, which is not a route", strings.ToUpper(method), path)
			}
		}
	}
	if len(registered) < 30 {
		t.Errorf("only %d routes registered", len(registered))
	}
}

// TestRoutesRegistered pins the route list: the API's routes of issue 4
// and the web UI's (webRoutes).
func TestRoutesRegistered(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	have := map[string]bool{}
	for _, r := range f.srv.Routes() {
		have[r.Method+" "+r.Pattern] = true
	}
	for _, want := range []string{
		"POST /api/v1/execute", "POST /api/execute",
		"POST /api/v1/modules", "GET /api/v1/modules", "GET /api/v1/modules/{id}", "DELETE /api/v1/modules/{id}",
		"POST /api/v1/modules/{id}/execute",
		"GET /api/v1/runs", "GET /api/v1/runs/{id}", "GET /api/v1/usage",
		"POST /api/v1/keys", "GET /api/v1/keys", "DELETE /api/v1/keys/{id}",
		"POST /api/v1/admin/users", "GET /api/v1/admin/users", "PATCH /api/v1/admin/users/{id}",
		"GET /api/v1/admin/tiers", "POST /api/v1/admin/tiers", "PUT /api/v1/admin/tiers/{name}",
		"GET /api/v1/admin/keys", "GET /api/v1/admin/stats",
		"GET /healthz", "GET /readyz", "GET /metrics", "GET /api/openapi.json",
	} {
		if !have[want] {
			t.Errorf("route %s not registered", want)
		}
	}
	for want := range webRoutes {
		if !have[want] {
			t.Errorf("web route %s not registered", want)
		}
	}
	sep, err := wwhttp.NewServer(wwhttp.Options{SeparateMetrics: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range sep.Routes() {
		if r.Pattern == "/metrics" {
			t.Error("/metrics registered although served separately")
		}
	}
}

// TestOpenAPIRefsResolve: every $ref in the document names a component that
// exists, and every operation has a success response.
func TestOpenAPIRefsResolve(t *testing.T) {
	t.Parallel()
	raw, err := json.Marshal(wwhttp.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	components, _ := doc["components"].(map[string]any)
	var walk func(v any, where string)
	walk = func(v any, where string) {
		switch x := v.(type) {
		case map[string]any:
			if r, ok := x["$ref"].(string); ok {
				parts := strings.Split(strings.TrimPrefix(r, "#/components/"), "/")
				section, _ := components[parts[0]].(map[string]any)
				if len(parts) != 2 || section[parts[1]] == nil {
					t.Errorf("%s: $ref %q does not resolve", where, r)
				}
			}
			for k, e := range x {
				walk(e, where+"/"+k)
			}
		case []any:
			for _, e := range x {
				walk(e, where)
			}
		}
	}
	walk(doc, "#")
	paths, _ := doc["paths"].(map[string]any)
	for p, item := range paths {
		for m, op := range item.(map[string]any) {
			responses, _ := op.(map[string]any)["responses"].(map[string]any)
			ok := false
			for code := range responses {
				ok = ok || strings.HasPrefix(code, "2")
			}
			if !ok {
				t.Errorf("%s %s has no success response", m, p)
			}
		}
	}
}

// TestOpenAPIForGenerators: what a client generator needs from the
// document: stable, meaningful operation ids; repeatable query parameters
// as arrays; the real parts of multipart bodies; examples of the execute
// bodies.
func TestOpenAPIForGenerators(t *testing.T) {
	t.Parallel()
	raw, err := json.Marshal(wwhttp.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
			Parameters  []struct {
				Name    string         `json:"name"`
				In      string         `json:"in"`
				Explode bool           `json:"explode"`
				Schema  map[string]any `json:"schema"`
			} `json:"parameters"`
			RequestBody struct {
				Content map[string]struct {
					Schema struct {
						Properties map[string]map[string]any `json:"properties"`
						Required   []string                  `json:"required"`
					} `json:"schema"`
					Example any `json:"example"`
				} `json:"content"`
			} `json:"requestBody"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			where := strings.ToUpper(method) + " " + path
			if !regexp.MustCompile(`^[a-z][A-Za-z]*$`).MatchString(op.OperationID) {
				t.Errorf("%s: operationId %q is not a lowerCamelCase name", where, op.OperationID)
			}
			if other, dup := ids[op.OperationID]; dup {
				t.Errorf("operationId %q names %s and %s", op.OperationID, other, where)
			}
			ids[op.OperationID] = where
		}
	}
	for id, where := range map[string]string{"execute": "POST /api/v1/execute", "executeModule": "POST /api/v1/modules/{id}/execute",
		"createModule": "POST /api/v1/modules", "listRuns": "GET /api/v1/runs", "createKey": "POST /api/v1/keys"} {
		if ids[id] != where {
			t.Errorf("operationId %s names %q, want %s", id, ids[id], where)
		}
	}

	execute := doc.Paths["/api/v1/execute"]["post"]
	for _, p := range execute.Parameters {
		if p.In == "query" && (p.Name == "arg" || p.Name == "env") && (p.Schema["type"] != "array" || !p.Explode) {
			t.Errorf("query parameter %s: schema %v explode %v, want an exploded array", p.Name, p.Schema, p.Explode)
		}
	}
	mp := execute.RequestBody.Content["multipart/form-data"].Schema.Properties
	for _, part := range []string{"wasm", "name", "module_id", "stdin", "args", "env", "function", "params", "timeout", "memory"} {
		if mp[part] == nil {
			t.Errorf("the multipart body of execute lacks the part %q", part)
		}
	}
	if mp["wasm"]["format"] != "binary" {
		t.Errorf("the wasm part is %v, want a binary string", mp["wasm"])
	}
	if p := doc.Paths["/api/v1/modules"]["post"].RequestBody.Content["multipart/form-data"].Schema; p.Properties["wasm"] == nil || !slices.Contains(p.Required, "wasm") {
		t.Errorf("the multipart body of createModule: %+v", p)
	}
	if execute.RequestBody.Content["application/json"].Example == nil {
		t.Error("the JSON body of execute has no example")
	}
}
