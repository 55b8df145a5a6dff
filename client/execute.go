package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/wasmwiz/wasmwiz/api"
)

// Body is how an execute request travels: the three bodies the server
// accepts (docs/API.md, "Execute").
type Body int

// Execute bodies.
const (
	// BodyJSON sends application/json, the module as wasm_base64 and stdin
	// as stdin_base64 (or text when it is valid UTF-8). The default.
	BodyJSON Body = iota
	// BodyMultipart sends multipart/form-data: wasm as a file part, stdin as
	// a file part, args, env and params as JSON fields.
	BodyMultipart
	// BodyRaw sends the module itself as an application/wasm body (for a
	// stored module: stdin as an application/octet-stream body) with every
	// other field in the query string.
	BodyRaw
)

// ExecuteRequest is one run: Wasm, or the id of a stored module (ModuleID),
// never both.
type ExecuteRequest struct {
	Wasm     []byte
	Name     string // the module's name, its argv[0] (every body); default "module.wasm"
	ModuleID string

	Stdin    []byte
	Args     []string
	Env      map[string]string
	Function string   // plain modules: the export to call
	Params   []string // its arguments as decimal numbers ("nan", "inf" for floats)

	// Timeout and Memory ask for lower limits than the tier's; zero keeps
	// the tier's, and a higher value is clamped by the server.
	Timeout time.Duration
	Memory  int64

	// The run's private directory (docs/API.md, "Files"): Files each at its
	// path, and an Archive (.tar, .tar.gz or .zip) unpacked, seen by the
	// guest at Mount (default "/"), its working directory; the files
	// matching Outputs (out/*.png, out/) come back in the result's Files.
	// Not with BodyRaw.
	Files   []File
	Archive []byte
	Mount   string
	Outputs []string

	Body Body

	// async and callbackURL are set by ExecuteAsync on its copy.
	async       bool
	callbackURL string
}

// File is one file sent into a run.
type File struct {
	Path string // its path in the run's directory, e.g. data/in.csv
	Data []byte
}

// Execution is a run's result and the rate-limit headers of its answer.
type Execution struct {
	Result    *api.Result
	RateLimit RateLimit
	RequestID string
}

// Execute runs a module sent with the request, or the stored module
// ModuleID (POST /api/v1/execute), and returns its result; every guest outcome
// (ok, exit, trap, timeout, memory_limit, output_limit) is a result, not an
// error. Errors: EINVALID (not wasm, unknown function, missing import, bad
// params), EUNAUTHORIZED, ETOOLARGE, ENOTFOUND (a module you cannot see),
// ERATELIMIT (quota or concurrency; RetryAfter says when),
// EUNAVAILABLE (saturated, shutting down, or no answer), EINTERNAL.
func (c *Client) Execute(ctx context.Context, req *ExecuteRequest) (*api.Result, error) {
	ex, err := c.ExecuteDetail(ctx, req)
	if err != nil {
		return nil, err
	}
	return ex.Result, nil
}

// ExecuteDetail is Execute, also returning the answer's rate-limit headers
// and request id. Errors as Execute.
func (c *Client) ExecuteDetail(ctx context.Context, req *ExecuteRequest) (*Execution, error) {
	r, err := executeBody(req, false)
	if err != nil {
		return nil, err
	}
	r.method, r.path = http.MethodPost, "/api/v1/execute"
	return c.execute(ctx, r)
}

// ExecuteModule runs the stored module id (POST
// /api/v1/modules/{id}/execute) with req's stdin, args, env, function,
// params, limits and files; req.Wasm and req.ModuleID must be empty. With
// BodyRaw, stdin is the body (and no files go). Errors as Execute.
func (c *Client) ExecuteModule(ctx context.Context, id string, req *ExecuteRequest) (*Execution, error) {
	if req == nil {
		req = &ExecuteRequest{}
	}
	if len(req.Wasm) > 0 || req.ModuleID != "" {
		return nil, errorf(api.EINVALID, nil, "the module is in the path: leave Wasm and ModuleID empty")
	}
	r, err := executeBody(req, true)
	if err != nil {
		return nil, err
	}
	r.method, r.path = http.MethodPost, "/api/v1/modules/"+url.PathEscape(id)+"/execute"
	return c.execute(ctx, r)
}

// ExecuteArchive is Execute answered as an archive: media is
// "application/zip" or "application/x-tar", and the archive holds
// result.json (the result without the files' content) and every file that
// came back under files/, as they are: for large outputs about half the
// time of base64 inside JSON (docs/PERFORMANCE.md). A stored module goes
// as req.ModuleID. Errors as Execute.
func (c *Client) ExecuteArchive(ctx context.Context, req *ExecuteRequest, media string) ([]byte, error) {
	if media != "application/zip" && media != "application/x-tar" {
		return nil, errorf(api.EINVALID, nil, "an archive is application/zip or application/x-tar, not %q", media)
	}
	r, err := executeBody(req, false)
	if err != nil {
		return nil, err
	}
	r.method, r.path, r.accept = http.MethodPost, "/api/v1/execute", media
	a, err := c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	if ct := a.header.Get("Content-Type"); ct != media {
		return nil, errorf(api.EINTERNAL, nil, "the server answered %q, not %s", ct, media)
	}
	return a.body, nil
}

func (c *Client) execute(ctx context.Context, r request) (*Execution, error) {
	a, err := c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	var res api.Result
	if err := decode(a, &res); err != nil {
		return nil, err
	}
	return &Execution{Result: &res, RateLimit: rateLimitFrom(a.header), RequestID: a.header.Get("X-Request-Id")}, nil
}

// executeBody builds the body of an execute request; stored: the module is
// in the path.
func executeBody(req *ExecuteRequest, stored bool) (request, error) {
	if req == nil {
		return request{}, errorf(api.EINVALID, nil, "no request")
	}
	switch req.Body {
	case BodyJSON:
		return jsonBody(req)
	case BodyMultipart:
		return multipartBody(req)
	case BodyRaw:
		return rawBody(req, stored)
	}
	return request{}, errorf(api.EINVALID, nil, "unknown body kind %d", req.Body)
}

func limitFields(req *ExecuteRequest) (timeout, memory string) {
	if req.Timeout > 0 {
		timeout = req.Timeout.String()
	}
	if req.Memory > 0 {
		memory = strconv.FormatInt(req.Memory, 10) // bytes, exactly
	}
	return timeout, memory
}

func jsonBody(req *ExecuteRequest) (request, error) {
	body := api.ExecuteRequest{ModuleID: req.ModuleID, Name: req.Name, Args: req.Args, Env: req.Env, Function: req.Function}
	if len(req.Wasm) > 0 {
		body.WasmBase64 = base64.StdEncoding.EncodeToString(req.Wasm)
	}
	if req.Stdin != nil {
		body.StdinBase64 = base64.StdEncoding.EncodeToString(req.Stdin)
	}
	for _, p := range req.Params {
		b, err := json.Marshal(p)
		if err != nil {
			return request{}, errorf(api.EINVALID, err, "cannot encode the request: %v", err)
		}
		body.Params = append(body.Params, b)
	}
	body.Timeout, body.Memory = limitFields(req)
	for _, f := range req.Files {
		body.Files = append(body.Files, api.FileIn{Path: f.Path, ContentBase64: base64.StdEncoding.EncodeToString(f.Data)})
	}
	if req.Archive != nil {
		body.ArchiveBase64 = base64.StdEncoding.EncodeToString(req.Archive)
	}
	if req.Mount != "" {
		body.Mount = &req.Mount
	}
	body.Outputs = req.Outputs
	body.Async, body.CallbackURL = req.async, req.callbackURL
	b, err := json.Marshal(body)
	if err != nil {
		return request{}, errorf(api.EINVALID, err, "cannot encode the request: %v", err)
	}
	return request{body: bytes.NewReader(b), ctype: "application/json"}, nil
}

func multipartBody(req *ExecuteRequest) (request, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	field := func(name, value string) {
		_ = mw.WriteField(name, value) // writes to a bytes.Buffer cannot fail
	}
	file := func(name, filename string, data []byte) {
		w, _ := mw.CreateFormFile(name, filename)
		_, _ = w.Write(data)
	}
	if len(req.Wasm) > 0 {
		name := req.Name
		if name == "" {
			name = "module.wasm"
		}
		file("wasm", name, req.Wasm)
	}
	if req.ModuleID != "" {
		field("module_id", req.ModuleID)
	}
	if req.Stdin != nil {
		file("stdin", "stdin", req.Stdin)
	}
	if len(req.Args) > 0 {
		b, _ := json.Marshal(req.Args)
		field("args", string(b))
	}
	if len(req.Env) > 0 {
		b, _ := json.Marshal(req.Env)
		field("env", string(b))
	}
	if req.Function != "" {
		field("function", req.Function)
	}
	if len(req.Params) > 0 {
		b, _ := json.Marshal(req.Params)
		field("params", string(b))
	}
	timeout, memory := limitFields(req)
	if timeout != "" {
		field("timeout", timeout)
	}
	if memory != "" {
		field("memory", memory)
	}
	for _, f := range req.Files {
		file("file", f.Path, f.Data)
	}
	if req.Archive != nil {
		file("archive", "files", req.Archive)
	}
	if req.Mount != "" {
		field("mount", req.Mount)
	}
	if req.Outputs != nil {
		b, _ := json.Marshal(req.Outputs)
		field("outputs", string(b))
	}
	if req.async {
		field("async", "true")
	}
	if req.callbackURL != "" {
		field("callback_url", req.callbackURL)
	}
	if err := mw.Close(); err != nil {
		return request{}, errorf(api.EINTERNAL, err, "cannot encode the request: %v", err)
	}
	return request{body: &buf, ctype: mw.FormDataContentType()}, nil
}

func rawBody(req *ExecuteRequest, stored bool) (request, error) {
	if req.Files != nil || req.Archive != nil || req.Mount != "" || req.Outputs != nil {
		return request{}, errorf(api.EINVALID, nil, "a raw body carries no files: use BodyJSON or BodyMultipart")
	}
	q := url.Values{}
	r := request{query: q}
	if stored {
		r.body, r.ctype = bytes.NewReader(req.Stdin), "application/octet-stream"
	} else {
		if req.ModuleID != "" {
			return request{}, errorf(api.EINVALID, nil, "a raw body carries the module itself; use ExecuteModule for a stored module")
		}
		r.body, r.ctype = bytes.NewReader(req.Wasm), "application/wasm"
		if req.Name != "" {
			q.Set("name", req.Name)
		}
		if req.Stdin != nil {
			q.Set("stdin_base64", base64.StdEncoding.EncodeToString(req.Stdin))
		}
	}
	for _, a := range req.Args {
		q.Add("arg", a)
	}
	keys := make([]string, 0, len(req.Env))
	for k := range req.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		q.Add("env", k+"="+req.Env[k])
	}
	if req.Function != "" {
		q.Set("function", req.Function)
	}
	if len(req.Params) > 0 {
		b, _ := json.Marshal(req.Params)
		q.Set("params", string(b))
	}
	timeout, memory := limitFields(req)
	if timeout != "" {
		q.Set("timeout", timeout)
	}
	if memory != "" {
		q.Set("memory", memory)
	}
	if req.async {
		q.Set("async", "true")
	}
	if req.callbackURL != "" {
		q.Set("callback_url", req.callbackURL)
	}
	return r, nil
}

// LegacyResult is the answer of the original service's route (Output is
// the guest's stdout when it finished with status ok; otherwise Error says
// what happened) and the run's id.
type LegacyResult struct {
	api.LegacyResult
	RunID string // X-Run-Id
}

// ExecuteLegacy calls POST /api/execute, the original service's contract,
// with a multipart wasm file and input. A guest outcome other than ok is a
// LegacyResult with Error set, not an error. Errors as Execute; their
// messages come from the legacy body's error field.
func (c *Client) ExecuteLegacy(ctx context.Context, wasm []byte, input string) (*LegacyResult, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, _ := mw.CreateFormFile("wasm", "module.wasm")
	_, _ = w.Write(wasm)
	_ = mw.WriteField("input", input)
	if err := mw.Close(); err != nil {
		return nil, errorf(api.EINTERNAL, err, "cannot encode the request: %v", err)
	}
	a, err := c.send(ctx, request{method: http.MethodPost, path: "/api/execute", body: &buf, ctype: mw.FormDataContentType()})
	if err != nil {
		return nil, err
	}
	var res LegacyResult
	if err := decode(a, &res.LegacyResult); err != nil {
		return nil, err
	}
	res.RunID = a.header.Get("X-Run-Id")
	return &res, nil
}
