package http

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
)

// apiOp documents one operation. The table below is written by hand and is
// deliberately not generated from the router: the OpenAPI test compares the
// two, so a route added without documentation fails it.
type apiOp struct {
	id                         string // operationId: stable, what a generated client's method is called
	method, path, tag, summary string
	auth                       string   // "", "key", "admin", "key-or-anonymous"
	query                      []string // query parameter names
	body                       []string // request media types
	bodySchema                 string   // schema of a JSON body
	status                     string   // success status
	schema                     string   // success schema ("" for no body)
	limited                    bool     // rate-limited: X-RateLimit-* headers
	changes                    bool     // counted against MaxChangesPerMinute: 429
}

var apiOps = []apiOp{
	{id: "health", method: "GET", path: "/healthz", tag: "operations", summary: "Liveness", status: "200", schema: "Health"},
	{id: "ready", method: "GET", path: "/readyz", tag: "operations", summary: "Readiness: database and, when configured, Redis", status: "200", schema: "Ready"},
	{id: "metrics", method: "GET", path: "/metrics", tag: "operations", summary: "Prometheus metrics (text format)", status: "200", schema: "text"},
	{id: "openAPI", method: "GET", path: "/api/openapi.json", tag: "operations", summary: "This document", status: "200", schema: "object"},

	{id: "execute", method: "POST", path: "/api/v1/execute", tag: "execute", summary: "Run a module sent with the request or stored earlier (async: 413 when your stored run output, max_stored_run_bytes, is full)",
		auth: "key-or-anonymous", body: []string{"multipart/form-data", "application/json", "application/wasm"}, bodySchema: "ExecuteRequest",
		query: []string{"stdin", "stdin_base64", "arg", "env", "function", "params", "timeout", "memory", "async", "callback_url"}, status: "200", schema: "Result", limited: true},
	{id: "executeLegacy", method: "POST", path: "/api/execute", tag: "execute", summary: "Legacy execute: multipart wasm + input, answers {output, error}",
		auth: "key-or-anonymous", body: []string{"multipart/form-data"}, status: "200", schema: "LegacyResult", limited: true},

	{id: "createModule", method: "POST", path: "/api/v1/modules", tag: "modules", summary: "Upload a module (inspected first; invalid modules are refused; 413 past your tier's registry quota)",
		auth: "key", body: []string{"multipart/form-data", "application/wasm"}, query: []string{"name", "description", "public"}, status: "201", schema: "Module"},
	{id: "listModules", method: "GET", path: "/api/v1/modules", tag: "modules", summary: "Your modules, newest first", auth: "key",
		query: []string{"name", "limit", "offset"}, status: "200", schema: "ModuleList"},
	{id: "getModule", method: "GET", path: "/api/v1/modules/{id}", tag: "modules", summary: "One module you can see", auth: "key", status: "200", schema: "Module"},
	{id: "updateModule", method: "PATCH", path: "/api/v1/modules/{id}", tag: "modules", summary: "Rename one of your modules, describe it, or make it public or private",
		auth: "key", body: []string{"application/json"}, bodySchema: "ModuleUpdate", status: "200", schema: "Module", changes: true},
	{id: "deleteModule", method: "DELETE", path: "/api/v1/modules/{id}", tag: "modules", summary: "Delete one of your modules", auth: "key", status: "204", changes: true},
	{id: "executeModule", method: "POST", path: "/api/v1/modules/{id}/execute", tag: "execute", summary: "Run a stored module",
		auth: "key", body: []string{"application/json", "multipart/form-data", "application/octet-stream"}, bodySchema: "ExecuteRequest",
		query: []string{"stdin", "stdin_base64", "arg", "env", "function", "params", "timeout", "memory", "async", "callback_url"}, status: "200", schema: "Result", limited: true},

	{id: "listRuns", method: "GET", path: "/api/v1/runs", tag: "usage", summary: "Your runs, newest first", auth: "key",
		query: []string{"status", "since", "until", "limit", "offset"}, status: "200", schema: "RunList"},
	{id: "getRun", method: "GET", path: "/api/v1/runs/{id}", tag: "usage", summary: "One of your runs", auth: "key", status: "200", schema: "Run"},
	{id: "getRunEvents", method: "GET", path: "/api/v1/runs/{id}/events", tag: "usage", summary: "Server-Sent Events of one of your runs: state, stdout, stderr, result (resumable with Last-Event-ID)", auth: "key", status: "200", schema: "events"},
	{id: "cancelRun", method: "POST", path: "/api/v1/runs/{id}/cancel", tag: "usage", summary: "Cancel one of your runs (queued: at once; running: its worker is killed)", auth: "key", status: "200", schema: "Run"},
	{id: "rotateWebhookSecret", method: "POST", path: "/api/v1/webhook-secret", tag: "usage", summary: "A new secret that signs your webhooks (shown once)", auth: "key", status: "201", schema: "WebhookSecret"},
	{id: "getUsage", method: "GET", path: "/api/v1/usage", tag: "usage", summary: "Your usage against your tier's quotas", auth: "key", status: "200", schema: "Usage"},
	{id: "getDailyUsage", method: "GET", path: "/api/v1/usage/daily", tag: "usage", summary: "Your runs per UTC day by status, with duration percentiles", auth: "key",
		query: []string{"days"}, status: "200", schema: "DailyRunsList"},
	{id: "getMe", method: "GET", path: "/api/v1/me", tag: "usage", summary: "You and your tier", auth: "key", status: "200", schema: "Me"},

	{id: "createKey", method: "POST", path: "/api/v1/keys", tag: "keys", summary: "Create a key for yourself (the secret is shown once)", auth: "key",
		body: []string{"application/json"}, bodySchema: "KeyRequest", status: "201", schema: "CreatedKey", changes: true},
	{id: "listKeys", method: "GET", path: "/api/v1/keys", tag: "keys", summary: "Your keys", auth: "key", query: []string{"include_revoked", "limit", "offset"}, status: "200", schema: "KeyList"},
	{id: "revokeKey", method: "DELETE", path: "/api/v1/keys/{id}", tag: "keys", summary: "Revoke one of your keys", auth: "key", status: "204", changes: true},

	{id: "adminCreateUser", method: "POST", path: "/api/v1/admin/users", tag: "admin", summary: "Create a user", auth: "admin",
		body: []string{"application/json"}, bodySchema: "UserRequest", status: "201", schema: "User"},
	{id: "adminListUsers", method: "GET", path: "/api/v1/admin/users", tag: "admin", summary: "List users", auth: "admin", query: []string{"email", "limit", "offset"}, status: "200", schema: "UserList"},
	{id: "adminGetUser", method: "GET", path: "/api/v1/admin/users/{id}", tag: "admin", summary: "One user", auth: "admin", status: "200", schema: "User"},
	{id: "adminUpdateUser", method: "PATCH", path: "/api/v1/admin/users/{id}", tag: "admin", summary: "Change a user's tier, role or disabled flag", auth: "admin",
		body: []string{"application/json"}, bodySchema: "UserUpdate", status: "200", schema: "User"},
	{id: "adminListTiers", method: "GET", path: "/api/v1/admin/tiers", tag: "admin", summary: "List tiers", auth: "admin", status: "200", schema: "TierList"},
	{id: "adminCreateTier", method: "POST", path: "/api/v1/admin/tiers", tag: "admin", summary: "Create a tier", auth: "admin",
		body: []string{"application/json"}, bodySchema: "Tier", status: "201", schema: "Tier"},
	{id: "adminGetTier", method: "GET", path: "/api/v1/admin/tiers/{name}", tag: "admin", summary: "One tier", auth: "admin", status: "200", schema: "Tier"},
	{id: "adminPutTier", method: "PUT", path: "/api/v1/admin/tiers/{name}", tag: "admin", summary: "Create or replace a tier", auth: "admin",
		body: []string{"application/json"}, bodySchema: "Tier", status: "200", schema: "Tier"},
	{id: "adminListKeys", method: "GET", path: "/api/v1/admin/keys", tag: "admin", summary: "List keys of any user", auth: "admin",
		query: []string{"user_id", "include_revoked", "limit", "offset"}, status: "200", schema: "KeyList"},
	{id: "adminCreateKey", method: "POST", path: "/api/v1/admin/keys", tag: "admin", summary: "Create a key for any user", auth: "admin",
		body: []string{"application/json"}, bodySchema: "KeyRequest", status: "201", schema: "CreatedKey"},
	{id: "adminRevokeKey", method: "DELETE", path: "/api/v1/admin/keys/{id}", tag: "admin", summary: "Revoke any key", auth: "admin", status: "204"},
	{id: "adminStats", method: "GET", path: "/api/v1/admin/stats", tag: "admin", summary: "Totals for the whole service", auth: "admin", status: "200", schema: "Stats"},
}

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

var (
	openAPIOnce sync.Once
	openAPIDoc  map[string]any
)

// OpenAPI returns the OpenAPI 3.1 document of the API.
func OpenAPI() map[string]any {
	openAPIOnce.Do(func() { openAPIDoc = buildOpenAPI() })
	return openAPIDoc
}

func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, OpenAPI())
	return nil
}

func ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }

func buildOpenAPI() map[string]any {
	paths := map[string]any{}
	for _, op := range apiOps {
		item, _ := paths[op.path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[op.path] = item
		}
		o := map[string]any{
			"summary":     op.summary,
			"tags":        []string{op.tag},
			"operationId": op.id,
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(op.path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": pathParamSchema(op.path)})
		}
		for _, q := range op.query {
			params = append(params, queryParam(q))
		}
		if len(params) > 0 {
			o["parameters"] = params
		}
		switch op.auth {
		case "key", "admin":
			o["security"] = []any{map[string]any{"bearer": []string{}}, map[string]any{"apiKey": []string{}}}
		case "key-or-anonymous":
			o["security"] = []any{map[string]any{"bearer": []string{}}, map[string]any{"apiKey": []string{}}, map[string]any{}}
		}
		if len(op.body) > 0 {
			content := map[string]any{}
			for _, mt := range op.body {
				switch mt {
				case "application/json":
					content[mt] = withExample(map[string]any{"schema": ref(op.bodySchema)}, op.bodySchema)
				case "multipart/form-data":
					content[mt] = multipartContent(op)
				default:
					content[mt] = map[string]any{"schema": map[string]any{"type": "string", "format": "binary"}}
				}
			}
			o["requestBody"] = map[string]any{"required": true, "content": content}
		}
		ok := map[string]any{"description": "success", "headers": requestIDHeader()}
		switch op.schema {
		case "":
		case "text":
			ok["content"] = map[string]any{"text/plain": map[string]any{"schema": map[string]any{"type": "string"}}}
		case "events":
			ok["content"] = map[string]any{"text/event-stream": map[string]any{"schema": map[string]any{"type": "string"}}}
		case "object":
			ok["content"] = map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}
		default:
			ok["content"] = map[string]any{"application/json": withExample(map[string]any{"schema": ref(op.schema)}, op.schema)}
		}
		if op.id == "execute" || op.id == "executeModule" {
			// Accept: application/zip or application/x-tar: result.json and
			// the files that came back under files/.
			archive := map[string]any{"schema": map[string]any{"type": "string", "format": "binary"}}
			ok["content"].(map[string]any)[mediaZip] = archive
			ok["content"].(map[string]any)[mediaTar] = archive
		}
		responses := map[string]any{op.status: ok, "default": map[string]any{"$ref": "#/components/responses/Error"}}
		if op.limited {
			ok["headers"] = rateHeaders()
			responses["429"] = map[string]any{"description": "rate or concurrency limit", "headers": rateHeaders(),
				"content": map[string]any{"application/json": map[string]any{"schema": ref("ErrorBody")}}}
			responses["503"] = map[string]any{"description": "replica saturated; see Retry-After",
				"content": map[string]any{"application/json": map[string]any{"schema": ref("ErrorBody")}}}
		}
		if (op.auth == "key" || op.auth == "admin") && !op.limited {
			// Counted by userRequests (WASMWIZ_MAX_USER_REQUESTS,
			// WASMWIZ_USER_REQUEST_RATE): every route that needs a key but
			// the execute routes; event streams as they open.
			desc := "too many of your requests in flight, or per second, on this replica; see Retry-After"
			if op.schema == "events" {
				desc = fmt.Sprintf("%d of your event streams open on this replica, or ", maxEventStreamsPerUser) + desc
			}
			if op.changes {
				desc = fmt.Sprintf("more than %d changes to your keys and modules in a minute, or ", MaxChangesPerMinute) + desc
			}
			responses["429"] = map[string]any{"description": desc,
				"content": map[string]any{"application/json": map[string]any{"schema": ref("ErrorBody")}}}
		}
		if op.auth == "admin" {
			responses["403"] = map[string]any{"$ref": "#/components/responses/Error"}
		}
		if op.id == "execute" || op.id == "executeModule" {
			responses["202"] = map[string]any{"description": "a background run (async): follow it at /api/v1/runs/{id}",
				"headers": requestIDHeader(), "content": map[string]any{"application/json": map[string]any{"schema": ref("Accepted")}}}
			ok["content"].(map[string]any)["text/event-stream"] = map[string]any{"schema": map[string]any{"type": "string",
				"description": "with Accept: text/event-stream: stdout and stderr events (OutputEvent) while the guest runs, then the result"}}
		}
		if op.id == "adminCreateUser" {
			// With create_key the answer carries the new key and its secret.
			ok["content"] = map[string]any{"application/json": map[string]any{"schema": map[string]any{
				"oneOf": []any{ref("User"), ref("CreatedUser")}}}}
		}
		if op.path == "/readyz" {
			responses["503"] = map[string]any{"description": "a dependency is down",
				"content": map[string]any{"application/json": map[string]any{"schema": ref("Ready")}}}
		}
		o["responses"] = responses
		item[strings.ToLower(op.method)] = o
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{"title": "WasmWiz API", "version": "1",
			"description": "Runs WebAssembly for other people. See docs/API.md for the prose version."},
		"paths": paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{
				"bearer": map[string]any{"type": "http", "scheme": "bearer", "description": "Authorization: Bearer ww_…"},
				"apiKey": map[string]any{"type": "apiKey", "in": "header", "name": "X-API-Key"},
			},
			"responses": map[string]any{
				"Error": map[string]any{"description": "error; status from the code table in docs/API.md",
					"headers": requestIDHeader(),
					"content": map[string]any{"application/json": map[string]any{"schema": ref("ErrorBody")}}},
			},
			"schemas": schemas(),
		},
	}
}

// examples are example values of schemas, shown with the bodies that use
// them.
var examples = map[string]any{
	"ExecuteRequest": map[string]any{"wasm_base64": "AGFzbQEAAAA…", "name": "hello.wasm", "stdin": "hi",
		"args": []string{"-v"}, "env": map[string]string{"NAME": "ww"}, "timeout": "500ms"},
	"Result": map[string]any{"id": "run_…", "status": "ok", "exit_code": 0, "stdout": "Hello, World!\n",
		"stdout_encoding": "utf-8", "stdout_truncated": false, "stderr": "", "stderr_encoding": "utf-8",
		"stderr_truncated": false, "duration_ms": 1.2, "compile_ms": 0, "memory_peak_bytes": 65536,
		"module": map[string]any{"sha256": "…", "size_bytes": 1234, "wasi": true, "entry": "_start"}, "compile_cached": true},
	"KeyRequest":  map[string]any{"name": "ci", "expires_at": "2027-01-01T00:00:00Z"},
	"UserRequest": map[string]any{"email": "ada@example.com", "tier": "basic", "create_key": true},
}

func withExample(content map[string]any, schema string) map[string]any {
	if ex, ok := examples[schema]; ok {
		content["example"] = ex
	}
	return content
}

// queryParams describes the query parameters by name: repeatable ones are
// arrays (form style, exploded: arg=a&arg=b), numbers and flags typed.
var queryParams = map[string]map[string]any{
	"arg": {"description": "one argument of the guest, in order; repeat for more", "style": "form", "explode": true,
		"schema":  map[string]any{"type": "array", "maxItems": wasmwiz.MaxArgs, "items": map[string]any{"type": "string", "maxLength": wasmwiz.MaxArgBytes}},
		"example": []string{"-v", "file.txt"}},
	"env": {"description": "one environment variable of the guest, KEY=VALUE; repeat for more", "style": "form", "explode": true,
		"schema":  map[string]any{"type": "array", "maxItems": wasmwiz.MaxEnvVars, "items": map[string]any{"type": "string", "maxLength": wasmwiz.MaxArgBytes}},
		"example": []string{"NAME=ww"}},
	"name":            {"description": "the module's name (argv[0] of a run)", "schema": map[string]any{"type": "string"}, "example": "hello.wasm"},
	"stdin":           {"description": "the guest's stdin, as text", "schema": map[string]any{"type": "string"}},
	"stdin_base64":    {"description": "the guest's stdin, base64", "schema": map[string]any{"type": "string", "contentEncoding": "base64"}},
	"function":        {"description": "plain modules: the export to call", "schema": map[string]any{"type": "string"}, "example": "add"},
	"params":          {"description": "its arguments: 1,2 or a JSON array", "schema": map[string]any{"type": "string"}, "example": "2,3"},
	"timeout":         {"description": "a lower wall time than the tier's", "schema": map[string]any{"type": "string"}, "example": "500ms"},
	"memory":          {"description": "a lower memory cap than the tier's", "schema": map[string]any{"type": "string"}, "example": "16MiB"},
	"limit":           {"schema": map[string]any{"type": "integer", "minimum": 0}},
	"offset":          {"description": "items to skip; for items further down, narrow the filter", "schema": map[string]any{"type": "integer", "minimum": 0, "maximum": wasmwiz.MaxListOffset}},
	"user_id":         {"schema": map[string]any{"type": "integer", "format": "int64"}},
	"status":          {"description": "runs that ended so", "schema": ref("Status")},
	"public":          {"schema": map[string]any{"type": "boolean"}},
	"include_revoked": {"schema": map[string]any{"type": "boolean"}},
	"async":           {"description": "run in the background: the answer is 202 Accepted (also Prefer: respond-async)", "schema": map[string]any{"type": "boolean"}},
	"callback_url":    {"description": "a background run's record is POSTed here when it ends (signed; see POST /api/v1/webhook-secret)", "schema": map[string]any{"type": "string"}},
	"days":            {"description": "how many UTC days, ending today (default 30)", "schema": map[string]any{"type": "integer", "minimum": 1, "maximum": 90}},
	"since":           {"schema": map[string]any{"type": "string", "format": "date-time"}},
	"until":           {"schema": map[string]any{"type": "string", "format": "date-time"}},
}

func queryParam(name string) map[string]any {
	p := map[string]any{"name": name, "in": "query", "required": false, "schema": map[string]any{"type": "string"}}
	for k, v := range queryParams[name] {
		p[k] = v
	}
	return p
}

// multipartContent is the multipart/form-data body of op: its parts, with
// files as binary and the JSON-valued fields as JSON text.
func multipartContent(op apiOp) map[string]any {
	file := map[string]any{"type": "string", "format": "binary"}
	text := func(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }
	var props map[string]any
	required := []string{}
	switch op.id {
	case "execute", "executeModule":
		props = map[string]any{
			"stdin":        map[string]any{"type": "string", "format": "binary", "description": "the guest's stdin (a file part or a text field)"},
			"args":         text(`JSON array of strings, e.g. ["-v","x"]`),
			"env":          text(`JSON object of strings, e.g. {"NAME":"ww"}`),
			"function":     text("plain modules: the export to call"),
			"params":       text("its arguments: a JSON array or 1,2"),
			"timeout":      text("a lower wall time than the tier's, e.g. 500ms"),
			"memory":       text("a lower memory cap than the tier's, e.g. 16MiB"),
			"async":        text("true: run in the background (202 Accepted)"),
			"callback_url": text("a background run's record is POSTed here when it ends"),
			"file": map[string]any{"type": "array", "items": map[string]any{"type": "string", "format": "binary"},
				"description": "repeatable: a file for the run's directory; its filename is its path there, e.g. data/in.csv"},
			"archive": map[string]any{"type": "string", "format": "binary", "description": "a .tar, .tar.gz or .zip unpacked into the run's directory"},
			"mount":   text("where the guest sees the run's directory, its working directory (default /)"),
			"outputs": text(`repeatable: a pattern of files to send back, relative to the mount (out/*.png, out/), or a JSON array of them`),
		}
		if op.id == "execute" {
			props["wasm"] = map[string]any{"type": "string", "format": "binary", "description": "the module; its file name is argv[0]"}
			props["name"] = text("the module's name, argv[0], instead of the file name")
			props["module_id"] = text("a stored module (mod_…) instead of wasm")
		}
	case "executeLegacy":
		props = map[string]any{"wasm": file, "input": text("the guest's stdin")}
		required = []string{"wasm"}
	case "createModule":
		props = map[string]any{"wasm": file, "name": text("default: the file name"), "description": text(""),
			"public": map[string]any{"type": "boolean"}}
		required = []string{"wasm"}
	default:
		props = map[string]any{}
	}
	schema := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		schema["required"] = required
	}
	return map[string]any{"schema": schema}
}

func rateHeaders() map[string]any {
	h := requestIDHeader()
	for _, n := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"} {
		h[n] = map[string]any{"schema": map[string]any{"type": "integer"}}
	}
	return h
}

// requestIDHeader is on every answer. A caller may send its own
// X-Request-Id (docs/API.md); it is not a parameter of each operation, so
// that a generated client's calls take only what they are about.
func requestIDHeader() map[string]any {
	return map[string]any{"X-Request-Id": map[string]any{"description": "the request's id, as the server logs it",
		"schema": map[string]any{"type": "string"}}}
}

// pathParamSchema is the schema of a path's {id} or {name}: users and keys
// have numeric ids; modules (mod_…), runs (run_…) and tiers are named by
// strings.
func pathParamSchema(path string) map[string]any {
	if strings.HasPrefix(path, "/api/v1/keys/") || strings.HasPrefix(path, "/api/v1/admin/keys/") || strings.HasPrefix(path, "/api/v1/admin/users/") {
		return map[string]any{"type": "integer", "format": "int64"}
	}
	return map[string]any{"type": "string"}
}

// prop is the schema of one property, written "type": integer and number
// are 64-bit (int64, double); "?T" is T or null; "[]T" an array; "time" a
// date-time string; "bytes" a base64 string; "map" an object of strings;
// "limits" and "counts" objects of integers; "any" any JSON value; a
// capitalised name refers to that schema.
func prop(typ string) map[string]any {
	if t, ok := strings.CutPrefix(typ, "?"); ok {
		p := prop(t)
		if _, isRef := p["$ref"]; isRef {
			return map[string]any{"anyOf": []any{p, map[string]any{"type": "null"}}}
		}
		p["type"] = []any{p["type"], "null"}
		return p
	}
	if item, ok := strings.CutPrefix(typ, "[]"); ok {
		return map[string]any{"type": "array", "items": prop(item)}
	}
	switch typ {
	case "string", "boolean", "object":
		return map[string]any{"type": typ}
	case "integer":
		return map[string]any{"type": "integer", "format": "int64"}
	case "number":
		return map[string]any{"type": "number", "format": "double"}
	case "time":
		return map[string]any{"type": "string", "format": "date-time"}
	case "bytes":
		return map[string]any{"type": "string", "contentEncoding": "base64"}
	case "map":
		return map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "string"}}
	case "limits", "counts":
		return map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "integer", "format": "int64"}}
	case "any":
		return map[string]any{}
	}
	return ref(typ)
}

// obj is the schema of the JSON object that sample, a value of an api type,
// is written as, with the given properties ("name:type", see prop). The
// properties its zero value writes (those without omitempty) are
// required: the server always sends them. TestOpenAPISchemasAreTheAPITypes
// holds the properties to what the type writes.
func obj(sample any, props ...string) map[string]any {
	p := map[string]any{}
	for _, s := range props {
		name, typ, _ := strings.Cut(s, ":")
		p[name] = prop(typ)
	}
	schema := map[string]any{"type": "object", "properties": p}
	if req := alwaysWritten(sample); len(req) > 0 {
		for _, name := range req {
			if p[name] == nil {
				panic("openapi: " + reflect.TypeOf(sample).String() + " writes " + name + ", which its schema lacks")
			}
		}
		schema["required"] = req
	}
	return schema
}

// alwaysWritten returns the members the JSON of a zero sample has, sorted.
func alwaysWritten(sample any) []string {
	if sample == nil {
		return nil
	}
	b, err := json.Marshal(sample)
	if err != nil {
		panic("openapi: " + err.Error())
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		panic("openapi: " + err.Error())
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

func enum[T ~string](desc string, values ...T) map[string]any {
	return map[string]any{"type": "string", "description": desc, "enum": values}
}

// list is the schema of a page of a list: its items, and their total
// counted up to wasmwiz.MaxListTotal.
func list(sample any, field, item string) map[string]any {
	schema := obj(sample, field+":[]"+item, "total:integer", "total_capped:boolean")
	p := schema["properties"].(map[string]any)
	p["total"] = map[string]any{"type": "integer", "format": "int64", "minimum": 0, "maximum": wasmwiz.MaxListTotal,
		"description": fmt.Sprintf("how many match, counted up to %d", wasmwiz.MaxListTotal)}
	p["total_capped"] = map[string]any{"type": "boolean",
		"description": fmt.Sprintf("more than %d match: total is %d", wasmwiz.MaxListTotal, wasmwiz.MaxListTotal)}
	return schema
}

// schemaTypes names the api type of each schema: the test holds them
// together, and obj takes the required members from them.
var schemaTypes = map[string]any{
	"ErrorBody": api.ErrorBody{}, "ErrorDetail": api.ErrorDetail{}, "Health": api.Health{}, "Ready": api.Ready{},
	"ExecuteRequest": api.ExecuteRequest{}, "Result": api.Result{}, "Value": api.Value{}, "ModuleInfo": api.ModuleInfo{},
	"LegacyResult": api.LegacyResult{}, "Module": api.Module{}, "ModuleUpdate": api.ModuleUpdate{}, "Inspection": api.Inspection{},
	"Import": api.Import{}, "Export": api.Export{}, "FuncSignature": api.FuncSignature{}, "MemoryInfo": api.MemoryInfo{},
	"ModuleList": api.ModuleList{}, "FileIn": api.FileIn{}, "FileOut": api.File{},
	"Run": api.Run{}, "RunList": api.RunList{}, "Usage": api.Usage{}, "Me": api.Me{},
	"User": api.User{}, "UserList": api.UserList{}, "UserRequest": api.UserRequest{}, "CreatedUser": api.CreatedUser{},
	"UserUpdate": api.UserUpdate{}, "Tier": api.Tier{}, "TierLimit": api.TierLimit{}, "TierList": api.TierList{},
	"APIKey": api.APIKey{}, "KeyList": api.KeyList{}, "KeyRequest": api.KeyRequest{}, "CreatedKey": api.CreatedKey{},
	"Stats": api.Stats{}, "DailyCount": api.DailyCount{}, "ModuleCount": api.ModuleCount{},
	"RunValue": api.RunValue{}, "WebhookDelivery": api.WebhookDelivery{}, "Accepted": api.Accepted{},
	"OutputEvent": api.OutputEvent{}, "StateEvent": api.StateEvent{}, "WebhookSecret": api.WebhookSecret{},
	"DailyRuns": api.DailyRuns{}, "DailyRunsList": api.DailyRunsList{},
}

func schemas() map[string]any {
	t := schemaTypes
	s := map[string]any{
		"ErrorBody":   obj(t["ErrorBody"], "error:ErrorDetail"),
		"ErrorDetail": obj(t["ErrorDetail"], "code:ErrorCode", "message:string"),
		"ErrorCode":   enum("what went wrong; each code has one HTTP status (docs/API.md)", api.Codes...),
		"Health":      obj(t["Health"], "status:string"),
		"Ready":       obj(t["Ready"], "status:string", "checks:map", "error:ErrorDetail"),
		"ExecuteRequest": obj(t["ExecuteRequest"], "module_id:string", "wasm_base64:bytes", "name:string", "stdin:string", "stdin_base64:bytes",
			"args:[]string", "env:map", "function:string", "params:[]any", "timeout:string", "memory:string",
			"async:boolean", "callback_url:string",
			"files:[]FileIn", "archive_base64:string", "mount:string", "outputs:[]string"),
		"FileIn":  obj(t["FileIn"], "path:string", "content_base64:string"),
		"FileOut": obj(t["FileOut"], "path:string", "size:integer", "sha256:string", "content_base64:string", "omitted:boolean"),
		"Status":  enum("how a guest's run ended; every status is a successful answer", api.Statuses...),
		"Result": obj(t["Result"], "id:string", "status:Status", "exit_code:?integer", "stdout:string", "stdout_encoding:Encoding",
			"stdout_truncated:boolean", "stderr:string", "stderr_encoding:Encoding", "stderr_truncated:boolean",
			"trap:string", "results:[]Value", "duration_ms:number", "compile_ms:number", "memory_peak_bytes:integer",
			"module:ModuleInfo", "compile_cached:boolean", "files:[]FileOut"),
		"Encoding":     enum("utf-8 when the output is valid UTF-8 (sent as text), else base64", "utf-8", "base64"),
		"Value":        obj(t["Value"], "type:string", "value:any"),
		"ModuleInfo":   obj(t["ModuleInfo"], "sha256:string", "size_bytes:integer", "wasi:boolean", "entry:string"),
		"LegacyResult": obj(t["LegacyResult"], "output:?string", "error:?string"),
		"Module": obj(t["Module"], "id:string", "owner_id:integer", "name:string", "description:string", "sha256:string",
			"size_bytes:integer", "inspection:Inspection", "public:boolean", "created_at:time", "last_run_at:time", "run_count:integer"),
		"ModuleUpdate": obj(t["ModuleUpdate"], "name:string", "description:string", "public:boolean"),
		"Inspection": obj(t["Inspection"], "sha256:string", "size_bytes:integer", "wasi:boolean", "entry:string",
			"imports:[]Import", "exports:[]Export", "memory:MemoryInfo", "imports_omitted:integer", "exports_omitted:integer"),
		"Import":        obj(t["Import"], "module:string", "name:string", "kind:string", "signature:FuncSignature"),
		"Export":        obj(t["Export"], "name:string", "kind:string", "signature:FuncSignature"),
		"FuncSignature": obj(t["FuncSignature"], "params:[]string", "results:[]string"),
		"MemoryInfo":    obj(t["MemoryInfo"], "min_pages:integer", "max_pages:integer"),
		"ModuleList":    list(t["ModuleList"], "modules", "Module"),
		"Run": obj(t["Run"], "id:string", "user_id:integer", "api_key_id:integer", "module_id:string", "module_sha256:string",
			"tier:string", "status:string", "exit_code:?integer", "duration_ms:number", "compile_ms:number", "memory_peak_bytes:integer",
			"stdin_bytes:integer", "output_bytes:integer", "error_code:string", "created_at:time",
			"state:RunState", "started_at:time", "finished_at:time", "async:boolean", "name:string", "args:[]string",
			"env_names:[]string", "function:string", "params:[]string", "stdin_sha256:string", "limits:limits",
			"cpu_ms:number", "trap:string", "results:[]RunValue", "stdout_truncated:boolean",
			"stderr_truncated:boolean", "detail_truncated:boolean", "message:string", "callback_url:string", "stdout:string", "stdout_encoding:Encoding",
			"stderr:string", "stderr_encoding:Encoding", "files:[]FileOut", "webhook_deliveries:[]WebhookDelivery"),
		"RunState":        enum("where a run is in its life; the guest's outcome is its status", api.RunStates...),
		"RunValue":        obj(t["RunValue"], "type:string", "value:string"),
		"WebhookDelivery": obj(t["WebhookDelivery"], "attempt:integer", "at:time", "status_code:integer", "error:string", "duration_ms:number"),
		"RunList":         list(t["RunList"], "runs", "Run"),
		"Accepted":        obj(t["Accepted"], "id:string", "state:RunState"),
		"OutputEvent":     obj(t["OutputEvent"], "offset:integer", "data:string", "encoding:Encoding"),
		"StateEvent":      obj(t["StateEvent"], "state:RunState"),
		"WebhookSecret":   obj(t["WebhookSecret"], "secret:string", "signature:string"),
		"DailyRuns": obj(t["DailyRuns"], "day:string", "by_status:counts", "p50_duration_ms:number", "p95_duration_ms:number",
			"p99_duration_ms:number"),
		"DailyRunsList": obj(t["DailyRunsList"], "days:[]DailyRuns"),
		"Usage":         obj(t["Usage"], "tier:string", "runs_today:integer", "runs_per_day:integer", "runs_this_minute:integer", "runs_per_minute:integer", "stored_modules:integer", "max_stored_modules:integer", "stored_module_bytes:integer", "max_stored_module_bytes:integer", "stored_run_bytes:integer", "max_stored_run_bytes:integer"),
		"Me":            obj(t["Me"], "user:User", "tier:Tier", "limits:[]TierLimit"),
		"Role":          enum("what a user may do", api.RoleUser, api.RoleAdmin),
		"User":          obj(t["User"], "id:integer", "email:string", "role:Role", "tier:string", "created_at:time", "disabled:boolean"),
		"UserList":      list(t["UserList"], "users", "User"),
		"UserRequest":   obj(t["UserRequest"], "email:string", "role:Role", "tier:string", "create_key:boolean"),
		"CreatedUser":   obj(t["CreatedUser"], "user:User", "key:APIKey", "secret:string"),
		"UserUpdate":    obj(t["UserUpdate"], "tier:string", "role:Role", "disabled:boolean"),
		"Tier":          tierSchema(),
		"TierLimit":     obj(t["TierLimit"], "name:string", "help:string", "value:integer", "text:string"),
		"TierList":      obj(t["TierList"], "tiers:[]Tier"),
		"APIKey": obj(t["APIKey"], "id:integer", "user_id:integer", "name:string", "prefix:string", "created_at:time",
			"last_used_at:time", "expires_at:time", "revoked_at:time"),
		"KeyList":    list(t["KeyList"], "keys", "APIKey"),
		"KeyRequest": obj(t["KeyRequest"], "user_id:integer", "name:string", "expires_at:time"),
		"CreatedKey": obj(t["CreatedKey"], "key:APIKey", "secret:string"),
		"Stats": obj(t["Stats"], "users:integer", "active_keys:integer", "runs_today:integer", "active_users_today:integer",
			"success_rate:number", "mean_duration_ms:number", "p95_duration_ms:number", "runs_per_day:[]DailyCount", "top_modules:[]ModuleCount"),
		"DailyCount":  obj(t["DailyCount"], "day:string", "runs:integer"),
		"ModuleCount": obj(t["ModuleCount"], "module_sha256:string", "module_id:string", "runs:integer"),
	}
	s["Value"].(map[string]any)["properties"].(map[string]any)["value"] = map[string]any{
		"description": `a JSON number, or the string "nan", "inf" or "-inf", which JSON numbers cannot hold`}
	s["Run"].(map[string]any)["properties"].(map[string]any)["status"] = map[string]any{"type": "string",
		"description": "a Status; empty when the run was refused (error_code says why)"}
	// The argv caps (wasmwiz.CheckArgv); their total, 1MiB, has no keyword.
	ex := s["ExecuteRequest"].(map[string]any)["properties"].(map[string]any)
	ex["args"] = map[string]any{"type": "array", "maxItems": wasmwiz.MaxArgs,
		"items":       map[string]any{"type": "string", "maxLength": wasmwiz.MaxArgBytes},
		"description": "argv after argv[0]: at most 4096, 128KiB each, 1MiB with env (each string with its NUL)"}
	ex["env"] = map[string]any{"type": "object", "maxProperties": wasmwiz.MaxEnvVars,
		"additionalProperties": map[string]any{"type": "string"},
		"description":          "the guest's whole environment: at most 4096 variables, 128KiB each as K=V, 1MiB with args"}
	return s
}

// tierSchema describes a tier from wasmwiz.TierFields: every limit with its
// unit and range, so that a new limit is documented where it is declared.
// Every limit is required: a tier sent without one is refused.
func tierSchema() map[string]any {
	t := obj(api.Tier{}, "name:string", "updated_at:time")
	props := t["properties"].(map[string]any)
	required := t["required"].([]string)
	for _, f := range wasmwiz.TierFields() {
		unit, text := "", ""
		switch f.Kind {
		case wasmwiz.LimitBytes:
			unit, text = "bytes", `; in requests also a size string such as "128MiB"`
		case wasmwiz.LimitDuration:
			unit, text = "milliseconds", `; in requests also a duration string such as "5s", under this name or without "_ms"`
		}
		desc := f.Help
		if unit != "" {
			desc += ", in " + unit
		}
		desc += ", from " + f.Format(f.Min)
		if f.Max > 0 {
			desc += " to " + f.Format(f.Max)
		}
		props[f.Name] = map[string]any{"type": "integer", "format": "int64", "description": desc + text}
		required = append(required, f.Name)
	}
	sort.Strings(required)
	t["required"] = required
	return t
}
