package http

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
)

// executeJSON is the JSON body of the execute routes.
type executeJSON = api.ExecuteRequest

// execute is POST /api/v1/execute.
func (s *Server) execute(w http.ResponseWriter, r *http.Request) error {
	return s.runExecute(w, r, "")
}

// executeModule is POST /api/v1/modules/{id}/execute.
func (s *Server) executeModule(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !wasmwiz.ValidModuleID(id) {
		return wasmwiz.Errorf(wasmwiz.ENOTFOUND, "module %q not found", id)
	}
	return s.runExecute(w, r, id)
}

// runExecute parses one of the three bodies (for a stored module: JSON,
// multipart, or any other body as stdin), runs it and answers the result.
func (s *Server) runExecute(w http.ResponseWriter, r *http.Request, moduleID string) error {
	r = withExtras(r)
	format, err := answerFormat(r)
	if err != nil {
		return err
	}
	ctx, c, req, done, err := s.readExecute(w, r, moduleID, s.parseExecute)
	defer done()
	if err != nil {
		return err
	}
	if ext := extrasFrom(r); ext.async || preferAsync(r) {
		return s.executeAsync(w, r, ctx, c, req, ext.callbackURL)
	} else if ext.callbackURL != "" {
		return wasmwiz.Errorf(wasmwiz.EINVALID, "callback_url is for background runs: add \"async\": true")
	}
	if wantsEventStream(r) {
		return s.streamExecute(w, r, ctx, c, req)
	}
	ex, err := s.exec.Execute(ctx, c, req)
	s.observeExecution(ex, err)
	setRateHeaders(w, ex)
	if err != nil {
		return err
	}
	if format != "" {
		return writeRunArchive(w, format, ex)
	}
	writeJSON(w, http.StatusOK, APIResult(ex.ID, ex.Result))
	return nil
}

// executeParser reads an execute body under the caps of limits.
type executeParser func(w http.ResponseWriter, r *http.Request, limits wasmwiz.Limits, tier, moduleID string) (*wasmwiz.RunRequest, error)

// largeBody is the size from which an execute body is read only once its
// caller was admitted (Executor.Admit) and the replica's BodyGate let it
// in; a body of unknown length (chunked) counts as large.
const largeBody = 1 << 20

// readExecute decides the caller (Executor.Caller) and reads the body with
// parse under the caller's limits. The caller may come from the cache: a
// body refused as too large for it is checked against the stores first
// (before reading, by its declared length, when it has one).
//
// A large body is read only after the caller was admitted for its run (a
// concurrency slot and the quota events, which the run then uses) and the
// server's bound on body bytes in flight let it in; done gives back what
// the run did not take over, and must be called when the request ends,
// whatever the error. A request with an archive is admitted too, before
// the archive is unpacked: a small archive may unpack to the tier's whole
// max_files_in_bytes, and a refused caller's never is.
func (s *Server) readExecute(w http.ResponseWriter, r *http.Request, moduleID string, parse executeParser) (ctx context.Context, c *wasmwiz.Caller, req *wasmwiz.RunRequest, done func(), err error) {
	ctx, done = r.Context(), func() {}
	ip := "" // the rate key of an anonymous caller only
	if wasmwiz.UserFromContext(ctx) == nil {
		ip = ClientIP(ctx).String()
	}
	c, err = s.exec.Caller(ctx, ip)
	if err != nil {
		return ctx, nil, nil, done, err
	}
	// The user may have as many requests waiting for their runs as its
	// tier allows runs at once.
	waitingExecuteFrom(ctx).tier(c.Tier.MaxConcurrent)
	limit := executeBodyCap(mediaType(r), moduleID != "", c.Limits)
	if c.Cached() && r.ContentLength > limit {
		if ctx, c, err = s.exec.Recheck(ctx, c); err != nil {
			return ctx, nil, nil, done, err
		}
		limit = executeBodyCap(mediaType(r), moduleID != "", c.Limits)
	}
	parseLimits := c.Limits
	admitted := false
	if r.ContentLength > largeBody && r.ContentLength <= limit || r.ContentLength < 0 {
		if ctx, c, done, err = s.admitBody(w, r, ctx, c, limit); err != nil {
			return ctx, nil, nil, done, err
		}
		parseLimits = c.Limits // confirmed by the admission's cache epoch
		admitted = true
	} else if c.Cached() {
		// A small body, its caller's limits from the cache, not yet
		// confirmed: a field over them may be within the tier's limits
		// as they are now, and a body cannot be read twice. Its fields
		// are held to the body's cap only (it is at most largeBody, as
		// declared); Execute checks the sizes on confirmed limits.
		parseLimits = lenientLimits(c.Limits, limit)
	}
	req, err = parse(w, r, parseLimits, c.Tier.Name, moduleID)
	if err != nil && wasmwiz.ErrorCode(err) == wasmwiz.ETOOLARGE && c.Cached() {
		_, fresh, rerr := s.exec.Recheck(ctx, c)
		if rerr != nil {
			return ctx, nil, nil, done, rerr
		}
		if fresh.Limits.MaxModuleBytes > c.Limits.MaxModuleBytes || fresh.Limits.MaxStdinBytes > c.Limits.MaxStdinBytes ||
			fresh.Limits.MaxFilesInBytes > c.Limits.MaxFilesInBytes || fresh.Limits.MaxFiles > c.Limits.MaxFiles {
			// Refused under limits that had just been raised, and the body
			// is gone: the caller can send it again.
			return ctx, nil, nil, done, wasmwiz.RetryLater(wasmwiz.EUNAVAILABLE, time.Second,
				"your tier's limits changed while the request was read; send it again")
		}
	}
	if err != nil {
		return ctx, c, req, done, err
	}
	if ext := extrasFrom(r); ext.archive != nil {
		archive := ext.archive
		ext.archive = nil
		if !admitted {
			if ctx, c, done, err = s.admit(w, ctx, c); err != nil {
				return ctx, nil, nil, done, err
			}
		}
		if err = unpackArchive(req, archive, c.Limits); err != nil {
			return ctx, nil, nil, done, err
		}
	}
	return ctx, c, req, done, nil
}

// admit admits the caller's run (Executor.Admit) before its request's
// archive is unpacked: a refused caller's archive is never read. done
// gives the admission back unless the run took it over.
func (s *Server) admit(w http.ResponseWriter, ctx context.Context, c *wasmwiz.Caller) (context.Context, *wasmwiz.Caller, func(), error) {
	ctx, c, ex, err := s.exec.Admit(ctx, c, 0)
	if err != nil {
		s.observeExecution(ex, err)
		setRateHeaders(w, ex)
		return ctx, nil, func() {}, err
	}
	return ctx, c, c.Release, nil
}

// unpackArchive reads an execute request's archive (wasmwiz.ReadArchive,
// within l, the limits its admission confirmed) into the entries of its
// files, before the files sent beside it.
func unpackArchive(req *wasmwiz.RunRequest, archive []byte, l wasmwiz.Limits) error {
	entries, err := wasmwiz.ReadArchive(archive, l)
	if err != nil {
		return err
	}
	req.Files.Entries = append(entries, req.Files.Entries...)
	return nil
}

// lenientLimits are limits whose sizes a body's fields are held to when
// they are not confirmed: the module and stdin at least the body's cap
// (they are the body's own bytes, no larger than it). The files keep the
// tier's limits: an archive is unpacked as it is read, and a small one may
// unpack to a great deal.
func lenientLimits(l wasmwiz.Limits, bodyCap int64) wasmwiz.Limits {
	l.MaxModuleBytes = max(l.MaxModuleBytes, bodyCap)
	l.MaxStdinBytes = max(l.MaxStdinBytes, bodyCap)
	return l
}

// admitBody admits the caller's run before its large body is read
// (Executor.Admit: a refused caller's body is never read), then waits for
// the body's bytes (its declared length, else limit) in the server's
// BodyGate. done releases both; the run takes the admission over first.
func (s *Server) admitBody(w http.ResponseWriter, r *http.Request, ctx context.Context, c *wasmwiz.Caller, limit int64) (context.Context, *wasmwiz.Caller, func(), error) {
	size := limit // what may arrive: the declared length, else the cap
	if r.ContentLength >= 0 {
		size = min(r.ContentLength, limit)
	}
	ctx, c, ex, err := s.exec.Admit(ctx, c, s.transfer.bodyTime(size))
	if err != nil {
		s.observeExecution(ex, err)
		setRateHeaders(w, ex)
		return ctx, nil, func() {}, err
	}
	leave, err := s.enterBodyGate(r.WithContext(ctx), limit)
	if err != nil {
		c.Release()
		return ctx, nil, func() {}, err
	}
	return ctx, c, func() { c.Release(); leave() }, nil
}

// enterBodyGate waits for room for r's body in the server's BodyGate when
// it is large (over largeBody, or of unknown length; then counted at
// limit, the route's cap); leave gives the room back.
func (s *Server) enterBodyGate(r *http.Request, limit int64) (leave func(), err error) {
	large := r.ContentLength > largeBody && r.ContentLength <= limit || r.ContentLength < 0
	if s.bodies == nil || !large {
		return func() {}, nil
	}
	n := limit
	if r.ContentLength >= 0 {
		n = r.ContentLength
	}
	return s.bodies.Enter(r.Context(), n)
}

// executeBodyCap is the most an execute body of media type mt may hold
// under limits: the module (unless stored), stdin and the files, framing,
// args and env on top, and a third more for JSON's base64.
func executeBodyCap(mt string, stored bool, limits wasmwiz.Limits) int64 {
	payload := limits.MaxStdinBytes + filesAllowance(limits)
	if !stored {
		payload += limits.MaxModuleBytes
	}
	switch {
	case mt == "multipart/form-data":
		return payload + bodyOverhead + argvTextLimit
	case mt == "application/json":
		return payload/3*4 + 8 + bodyOverhead + argvTextLimit
	case !stored && mt == "application/wasm":
		return limits.MaxModuleBytes
	}
	return limits.MaxStdinBytes
}

func (s *Server) parseExecute(w http.ResponseWriter, r *http.Request, limits wasmwiz.Limits, tier, moduleID string) (*wasmwiz.RunRequest, error) {
	stored := moduleID != ""
	mt := mediaType(r)
	limit := executeBodyCap(mt, stored, limits)
	switch {
	case mt == "multipart/form-data":
		if err := limitBody(w, r, limit); err != nil {
			return nil, err
		}
		return parseExecuteMultipart(r, limits, tier, moduleID)
	case mt == "application/json":
		if err := limitBody(w, r, limit); err != nil {
			return nil, err
		}
		return parseExecuteJSON(r, limits, tier, moduleID)
	case !stored && mt == "application/wasm":
		wasm, req, err := parseRawExecute(w, r, "module", limits.MaxModuleBytes, tier)
		if err != nil {
			return nil, err
		}
		req.Wasm = wasm
		return req, nil
	case stored:
		// Any other body of a stored module's execute is its stdin.
		stdin, req, err := parseRawExecute(w, r, "stdin", limits.MaxStdinBytes, tier)
		if err != nil {
			return nil, err
		}
		if len(stdin) > 0 {
			if req.Stdin != nil {
				return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "stdin given both in the body and in the query")
			}
			req.Stdin = stdin
		}
		req.ModuleID = moduleID
		return req, nil
	default:
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID,
			"unsupported Content-Type %q: send multipart/form-data, application/json or application/wasm", r.Header.Get("Content-Type"))
	}
}

// parseRawExecute reads a body that is all one thing (what: the module or
// stdin, at most max: its executeBodyCap), and the request's other fields
// from the query.
func parseRawExecute(w http.ResponseWriter, r *http.Request, what string, max int64, tier string) ([]byte, *wasmwiz.RunRequest, error) {
	if err := limitBody(w, r, max); err != nil {
		return nil, nil, sizeRefusal(what, max, tier, err)
	}
	b, err := readAll(r)
	if err != nil {
		return nil, nil, sizeRefusal(what, max, tier, err)
	}
	req, err := parseExecuteQuery(r)
	return b, req, err
}

// sizeRefusal words a body-size failure of a raw body that is all module
// (or all stdin) as that limit's refusal, in wasmwiz.SizeError's words.
func sizeRefusal(what string, limit int64, tier string, err error) error {
	if wasmwiz.ErrorCode(err) == wasmwiz.ETOOLARGE {
		return wasmwiz.SizeError(what, -1, limit, tier)
	}
	return err
}

func executeParts(limits wasmwiz.Limits, tier string, stored bool) map[string]partLimit {
	small := func() partLimit { return partLimit{max: fieldLimit, tooBig: "form field over 64KiB"} }
	parts := map[string]partLimit{
		"stdin":        {max: limits.MaxStdinBytes, tooBig: wasmwiz.ErrorMessage(wasmwiz.SizeError("stdin", -1, limits.MaxStdinBytes, tier))},
		"args":         {max: argvTextLimit, tooBig: "args are over " + wasmwiz.FormatSize(argvTextLimit) + " as JSON text"},
		"env":          {max: argvTextLimit, tooBig: "env is over " + wasmwiz.FormatSize(argvTextLimit) + " as JSON text"},
		"function":     small(),
		"params":       small(),
		"timeout":      small(),
		"memory":       small(),
		"async":        small(),
		"callback_url": small(),
	}
	files := "the files are over the " + wasmwiz.FormatSize(limits.MaxFilesInBytes) + " limit, or more than " +
		strconv.FormatInt(limits.MaxFiles, 10) + " (the tier's max_files_in_bytes and max_files)"
	parts["file"] = partLimit{max: limits.MaxFilesInBytes, tooBig: files, repeated: true, maxCount: limits.MaxFiles, total: limits.MaxFilesInBytes}
	parts["archive"] = partLimit{max: filesAllowance(limits), tooBig: "the archive is over the " + wasmwiz.FormatSize(filesAllowance(limits)) + " limit of the tier's files"}
	parts["mount"] = small()
	parts["outputs"] = partLimit{max: fieldLimit, tooBig: "outputs are over 64KiB", repeated: true, maxCount: 100, total: fieldLimit}
	if !stored {
		parts["name"] = small()
		parts["wasm"] = partLimit{max: limits.MaxModuleBytes, tooBig: wasmwiz.ErrorMessage(wasmwiz.SizeError("module", -1, limits.MaxModuleBytes, tier))}
		parts["module_id"] = small()
	}
	return parts
}

func parseExecuteMultipart(r *http.Request, limits wasmwiz.Limits, tier, moduleID string) (*wasmwiz.RunRequest, error) {
	parts, err := readMultipart(r, executeParts(limits, tier, moduleID != ""), false)
	if err != nil {
		return nil, err
	}
	req := &wasmwiz.RunRequest{ModuleID: moduleID}
	if p, ok := parts["wasm"]; ok {
		req.Wasm = p.data
		if p.filename != "" {
			req.Name = p.filename
		}
	}
	if p, ok := parts["name"]; ok && len(p.data) > 0 {
		req.Name = string(p.data)
	}
	if p, ok := parts["module_id"]; ok {
		req.ModuleID = strings.TrimSpace(string(p.data))
	}
	if p, ok := parts["stdin"]; ok {
		req.Stdin = p.data
	}
	var argv wasmwiz.ArgvBudget
	if p, ok := parts["args"]; ok && len(p.data) > 0 {
		if req.Args, err = decodeWhole(p.data, &argv, decodeArgs, errArgsShape); err != nil {
			return nil, err
		}
	}
	if p, ok := parts["env"]; ok && len(p.data) > 0 {
		if req.Env, err = decodeWhole(p.data, &argv, decodeEnv, errEnvShape); err != nil {
			return nil, err
		}
	}
	if p, ok := parts["function"]; ok {
		req.Function = strings.TrimSpace(string(p.data))
	}
	if p, ok := parts["params"]; ok {
		if req.Params, err = parseParamsText(string(p.data)); err != nil {
			return nil, err
		}
	}
	if err := applyLimitFields(req, string(parts["timeout"].data), string(parts["memory"].data)); err != nil {
		return nil, err
	}
	var in runFilesIn
	if p, ok := parts["archive"]; ok {
		in.archive = p.data
	}
	for _, p := range parts["file"].all() {
		if p.path == "" {
			return nil, wasmwiz.Errorf(wasmwiz.EINVALID, `a "file" part needs a filename: its path in the guest, e.g. data/in.csv`)
		}
		in.files = append(in.files, wasmwiz.FileEntry{Path: p.path, Data: p.data})
	}
	if p, ok := parts["mount"]; ok {
		m := strings.TrimSpace(string(p.data))
		in.mount = &m
	}
	for _, p := range parts["outputs"].all() {
		v := strings.TrimSpace(string(p.data))
		if strings.HasPrefix(v, "[") {
			var list []string
			if err := json.Unmarshal([]byte(v), &list); err != nil {
				return nil, wasmwiz.Errorf(wasmwiz.EINVALID, `outputs must be a pattern per field, or a JSON array of them, e.g. ["out/*.png"]`)
			}
			in.outputs = append(in.outputs, list...)
		} else if v != "" {
			in.outputs = append(in.outputs, v)
		}
	}
	req.Files = in.runFiles(r)
	if err := applyAsyncFields(r, string(parts["async"].data), string(parts["callback_url"].data)); err != nil {
		return nil, err
	}
	return req, nil
}

// executeExtras are the fields of an execute request that are not the
// run's: whether to run it in the background, and where to send its
// record. The parsers set them on the request's context value.
type executeExtras struct {
	async       bool
	callbackURL string
	// archive is the archive the body carried, unpacked only once the
	// caller was admitted (readExecute); the parsers leave it packed.
	archive []byte
}

type extrasKey struct{}

// withExtras gives r a place for the parsers to put executeExtras.
func withExtras(r *http.Request) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), extrasKey{}, &executeExtras{}))
}

// extrasFrom returns r's executeExtras (an empty one when r has none).
func extrasFrom(r *http.Request) *executeExtras {
	if e, ok := r.Context().Value(extrasKey{}).(*executeExtras); ok {
		return e
	}
	return &executeExtras{}
}

// applyAsyncFields reads async ("true", "1", "false", "0" or empty) and
// callback_url from a form or query.
func applyAsyncFields(r *http.Request, async, callback string) error {
	ext := extrasFrom(r)
	switch strings.ToLower(strings.TrimSpace(async)) {
	case "", "false", "0":
	case "true", "1":
		ext.async = true
	default:
		return wasmwiz.Errorf(wasmwiz.EINVALID, "async must be true or false")
	}
	if cb := strings.TrimSpace(callback); cb != "" {
		ext.callbackURL = cb
	}
	return nil
}

// preferAsync reports a Prefer: respond-async header (RFC 7240).
func preferAsync(r *http.Request) bool {
	for _, v := range r.Header.Values("Prefer") {
		for _, p := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), "respond-async") {
				return true
			}
		}
	}
	return false
}

// executeAsync admits a background run: 202, Location of its record.
func (s *Server) executeAsync(w http.ResponseWriter, _ *http.Request, ctx context.Context, c *wasmwiz.Caller, req *wasmwiz.RunRequest, callbackURL string) error {
	ex, err := s.exec.ExecuteAsync(ctx, c, req, callbackURL)
	setRateHeaders(w, ex)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/runs/"+ex.ID)
	w.Header().Set("Preference-Applied", "respond-async")
	writeJSON(w, http.StatusAccepted, api.Accepted{ID: ex.ID, State: api.RunQueued})
	return nil
}

// parseExecuteJSON reads a JSON execute body as a stream, field by field,
// each under its own cap (the tier's sizes in base64 for the module, stdin
// and files; the argv caps for args and env, counted as they come; 64KiB
// for the others): a field past its cap is refused when its cap is reached,
// and no list is built past its cap.
func parseExecuteJSON(r *http.Request, limits wasmwiz.Limits, tier, moduleID string) (*wasmwiz.RunRequest, error) {
	body, err := decodeExecuteJSON(r.Body, r.ContentLength, limits, tier)
	if err != nil {
		return nil, err
	}
	if moduleID != "" && (body.ModuleID != "" || body.hasWasm) {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "the module is in the path: leave out module_id and wasm_base64")
	}
	req := &wasmwiz.RunRequest{
		ModuleID: body.ModuleID, Name: body.Name, Args: body.Args, Env: body.Env, Function: strings.TrimSpace(body.Function),
	}
	if err := applyAsyncFields(r, strconv.FormatBool(body.Async), body.CallbackURL); err != nil {
		return nil, err
	}
	if moduleID != "" {
		req.ModuleID = moduleID
	}
	if body.hasWasm {
		req.Wasm = body.wasm
	}
	switch {
	case body.hasStdinText && body.hasStdin:
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "send stdin or stdin_base64, not both")
	case body.hasStdinText:
		req.Stdin = body.stdinText
	case body.hasStdin:
		req.Stdin = body.stdin
	}
	for _, p := range body.Params {
		var s string
		if err := json.Unmarshal(p, &s); err == nil {
			req.Params = append(req.Params, s)
			continue
		}
		var n json.Number
		if err := json.Unmarshal(p, &n); err != nil {
			return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "params must be numbers or strings")
		}
		req.Params = append(req.Params, n.String())
	}
	if err := applyLimitFields(req, body.Timeout, body.Memory); err != nil {
		return nil, err
	}
	in := runFilesIn{mount: body.Mount, outputs: body.Outputs}
	if body.hasArchive {
		in.archive = body.archive
	}
	in.files = body.files
	req.Files = in.runFiles(r)
	return req, nil
}

// filesAllowance is what a tier's files may add to an execute body: their
// bytes, and room for a header per file (multipart, tar).
func filesAllowance(l wasmwiz.Limits) int64 {
	return l.MaxFilesInBytes + l.MaxFiles*1024
}

// runFilesIn is what an execute body says about the run's files.
type runFilesIn struct {
	archive []byte
	files   []wasmwiz.FileEntry
	mount   *string
	outputs []string
}

// runFiles returns the run's files, nil when the body names none: the
// files, and the archive left packed in r's executeExtras, for
// readExecute to unpack before them once the caller is admitted. The
// executor checks the whole (RunFiles.Check).
func (in runFilesIn) runFiles(r *http.Request) *wasmwiz.RunFiles {
	if in.archive == nil && in.files == nil && in.mount == nil && in.outputs == nil {
		return nil
	}
	f := &wasmwiz.RunFiles{Outputs: in.outputs, Entries: in.files}
	if f.Outputs == nil {
		f.Outputs = []string{}
	}
	if in.mount != nil {
		f.Mount = *in.mount
	}
	if in.archive != nil {
		extrasFrom(r).archive = in.archive
	}
	return f
}

// parseExecuteQuery reads the execute fields from the query string (raw
// module bodies and stored modules with a raw stdin body).
func parseExecuteQuery(r *http.Request) (*wasmwiz.RunRequest, error) {
	q := r.URL.Query()
	for name := range q {
		switch name {
		case "stdin", "stdin_base64", "arg", "env", "function", "params", "timeout", "memory", "name", "async", "callback_url":
		default:
			return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "unknown query parameter %q", name)
		}
	}
	req := &wasmwiz.RunRequest{Args: q["arg"], Name: q.Get("name"), Function: strings.TrimSpace(q.Get("function"))}
	switch {
	case q.Has("stdin") && q.Has("stdin_base64"):
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "send stdin or stdin_base64, not both")
	case q.Has("stdin"):
		req.Stdin = []byte(q.Get("stdin"))
	case q.Has("stdin_base64"):
		stdin, err := base64.StdEncoding.DecodeString(q.Get("stdin_base64"))
		if err != nil {
			return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "stdin_base64 is not valid base64")
		}
		req.Stdin = stdin
	}
	for _, kv := range q["env"] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "env must be KEY=VALUE, got %q", kv)
		}
		if req.Env == nil {
			req.Env = map[string]string{}
		}
		req.Env[k] = v
	}
	if q.Has("params") {
		var err error
		if req.Params, err = parseParamsText(q.Get("params")); err != nil {
			return nil, err
		}
	}
	if err := applyLimitFields(req, q.Get("timeout"), q.Get("memory")); err != nil {
		return nil, err
	}
	if err := applyAsyncFields(r, q.Get("async"), q.Get("callback_url")); err != nil {
		return nil, err
	}
	return req, nil
}

// parseParamsText reads params as a JSON array or as comma-separated values.
func parseParamsText(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if strings.HasPrefix(s, "[") {
		var raw []json.RawMessage
		if err := json.Unmarshal([]byte(s), &raw); err != nil {
			return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "params must be a JSON array or comma-separated numbers")
		}
		out := make([]string, 0, len(raw))
		for _, p := range raw {
			var str string
			if err := json.Unmarshal(p, &str); err == nil {
				out = append(out, str)
				continue
			}
			var n json.Number
			if err := json.Unmarshal(p, &n); err != nil {
				return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "params must be numbers or strings")
			}
			out = append(out, n.String())
		}
		return out, nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		out = append(out, strings.TrimSpace(p))
	}
	return out, nil
}

// applyLimitFields reads the caller's lower timeout and memory into the
// request's Limits.
func applyLimitFields(req *wasmwiz.RunRequest, timeout, memory string) (err error) {
	req.Limits, err = wasmwiz.ParseLowerLimits(timeout, memory)
	return err
}

// setRateHeaders writes the X-RateLimit-* headers of a decision.
func setRateHeaders(w http.ResponseWriter, ex *wasmwiz.Execution) {
	if ex == nil || ex.RateLimit == nil {
		return
	}
	d := ex.RateLimit
	// By their canonical names and in one slice of three (each value capped
	// at one element, so an Add elsewhere copies): Set would canonicalize
	// "X-RateLimit-…" into a new string and allocate a slice per header, on
	// every execute.
	v := []string{strconv.FormatInt(d.Limit, 10), strconv.FormatInt(max(d.Remaining, 0), 10), ceilSeconds(d.ResetAfter)}
	h := w.Header()
	h[hnRateLimit] = v[0:1:1]
	h[hnRateRemaining] = v[1:2:2]
	h[hnRateReset] = v[2:3:3]
}

// The X-RateLimit-* headers' canonical names (textproto.CanonicalMIMEHeaderKey).
const (
	hnRateLimit     = "X-Ratelimit-Limit"
	hnRateRemaining = "X-Ratelimit-Remaining"
	hnRateReset     = "X-Ratelimit-Reset"
)

func ceilSeconds(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}

// legacyJSON is the original service's answer.
type legacyJSON = api.LegacyResult

// legacyExecutePath is the original service's execute route. Its errors are
// written in legacyJSON's shape by writeError.
const legacyExecutePath = "/api/execute"

// legacyExecute is POST /api/execute, the original service's contract.
func (s *Server) legacyExecute(w http.ResponseWriter, r *http.Request) error {
	ctx, c, req, done, err := s.readExecute(w, r, "", parseLegacyExecute)
	defer done()
	if err != nil {
		return err
	}
	ex, err := s.exec.Execute(ctx, c, req)
	s.observeExecution(ex, err)
	setRateHeaders(w, ex)
	if err != nil {
		return err
	}
	res := ex.Result
	w.Header().Set("X-Run-Id", ex.ID)
	if res.Status == wasmwiz.StatusOK {
		out := string(res.Stdout)
		writeJSON(w, http.StatusOK, legacyJSON{Output: &out})
		return nil
	}
	msg := legacyOutcome(res, ex.Limits)
	writeJSON(w, http.StatusOK, legacyJSON{Error: &msg})
	return nil
}

// parseLegacyExecute reads the original service's body: multipart, the
// module as wasm (or wasm_file), its stdin as input (or input_data).
func parseLegacyExecute(w http.ResponseWriter, r *http.Request, limits wasmwiz.Limits, tier, _ string) (*wasmwiz.RunRequest, error) {
	if mediaType(r) != "multipart/form-data" {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "send multipart/form-data with a wasm file and input")
	}
	if err := limitBody(w, r, executeBodyCap("multipart/form-data", false, limits)); err != nil {
		return nil, err
	}
	wasmLimit := partLimit{max: limits.MaxModuleBytes, tooBig: wasmwiz.ErrorMessage(wasmwiz.SizeError("module", -1, limits.MaxModuleBytes, tier))}
	inputLimit := partLimit{max: limits.MaxStdinBytes, tooBig: wasmwiz.ErrorMessage(wasmwiz.SizeError("input", -1, limits.MaxStdinBytes, tier))}
	parts, err := readMultipart(r, map[string]partLimit{
		"wasm": wasmLimit, "wasm_file": {max: wasmLimit.max, tooBig: wasmLimit.tooBig, aliasOf: "wasm"},
		"input": inputLimit, "input_data": {max: inputLimit.max, tooBig: inputLimit.tooBig, aliasOf: "input"},
	}, true)
	if err != nil {
		return nil, err
	}
	wasm, ok := parts["wasm"]
	if !ok || len(wasm.data) == 0 {
		return nil, wasmwiz.Errorf(wasmwiz.EINVALID, "no wasm file: send it as the wasm field")
	}
	return &wasmwiz.RunRequest{Wasm: wasm.data, Name: wasm.filename, Stdin: parts["input"].data}, nil
}

// legacyOutcome words a guest outcome other than ok for the legacy answer.
func legacyOutcome(res *wasmwiz.Result, limits wasmwiz.Limits) string {
	switch res.Status {
	case wasmwiz.StatusExit:
		msg := fmt.Sprintf("module exited with code %d", res.ExitCode)
		if len(res.Stderr) > 0 {
			msg += ": " + strings.TrimSpace(string(res.Stderr))
		}
		return msg
	case wasmwiz.StatusTrap:
		return "module trapped: " + res.Trap
	case wasmwiz.StatusTimeout:
		return "module ran past its time limit of " + limits.Timeout.String()
	case wasmwiz.StatusMemoryLimit:
		return "module ran out of memory: limit " + wasmwiz.FormatSize(limits.MaxMemoryBytes)
	case wasmwiz.StatusOutputLimit:
		return "module output over the limit of " + wasmwiz.FormatSize(limits.MaxOutputBytes)
	}
	return "module ended with status " + string(res.Status)
}

// observeExecution counts a run in the metrics.
func (s *Server) observeExecution(ex *wasmwiz.Execution, err error) {
	s.metrics.observeExecution(ex, err)
}
