package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
)

const execHelp = `usage: wasmwiz exec [flags] module.wasm [args...]
       wasmwiz exec [flags] - [args...]              (the module from stdin)
       wasmwiz exec [flags] --module-id mod_… [args...]

Runs a module on a WasmWiz server and prints what wasmwiz run would print
on this machine: the guest's stdout and stderr (or --json, the server's
result), and exits with the guest's status. The server's tier limits apply;
--timeout and --memory can only lower them. argv[0] is the module's name:
the file's base name, or the stored module's name.

Files: --file and --archive fill the run's private directory, which the
guest sees at --mount (default /) as its working directory; the files
matching --output come back into --out-dir, at their paths there.

Background: --async queues the run on the server and prints its id (--json:
its id and state); the run goes on without this command. With --follow it
prints the guest's output as the run goes, then exits as a run does.`

// cmdExec is `wasmwiz exec`: `wasmwiz run` on a server. It prints what run
// prints (the guest's stdout and stderr, or --json) and exits as run does.
func cmdExec(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "exec", execHelp)
	fs.after = "exit status: as wasmwiz run's (wasmwiz help run)."
	var (
		server   = fs.String("server", env.Getenv("WASMWIZ_SERVER"), "server URL (default $WASMWIZ_SERVER or http://127.0.0.1:8080)")
		key      = fs.String("key", "", "API key (default $WASMWIZ_API_KEY)")
		moduleID = fs.String("module-id", "", "run this stored module instead of a file")
		timeout  = fs.String("timeout", "", "a lower wall-time limit than the tier's, e.g. 500ms")
		memory   = fs.String("memory", "", "a lower memory limit than the tier's, e.g. 16MiB")
		call     = fs.String("call", "", "export to call instead of the default entry point")
		params   = fs.String("params", "", "comma-separated numeric params for --call, e.g. 1,2")
		asJSON   = fs.Bool("json", false, "print the server's JSON result instead of the guest's output")
		follow   = fs.Bool("follow", false, "print the guest's output as it comes, while it runs")
		async    = fs.Bool("async", false, "run in the background: print the run's id and return (with --follow: follow it to its end)")
		archive  = fs.String("archive", "", "a .tar, .tar.gz or .zip `FILE` unpacked into the run's directory")
		mount    = fs.String("mount", "", "where the guest sees the run's directory, its working directory (default /)")
		outDir   = fs.String("out-dir", "", "write the files that come back (--output) into `DIR`, at their paths")
		envVars  = map[string]string{}
		files    []client.File
		outputs  []string
	)
	envFlag(fs.FlagSet, envVars, "set a guest environment variable `K=V` (repeatable)")
	fs.Func("file", "send a file into the run's directory: `PATH[:GUESTPATH]` (repeatable; GUESTPATH defaults to\n"+
		"the base name of PATH, relative to the mount)", func(s string) error {
		path, guest := s, ""
		if i := strings.LastIndexByte(s, ':'); i > 0 {
			path, guest = s[:i], s[i+1:]
		}
		if guest == "" {
			guest = filepath.Base(path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files = append(files, client.File{Path: guest, Data: data})
		return nil
	})
	fs.Func("output", "a `PATTERN` of files to bring back, relative to the mount: out/*.png, report.txt, out/ for\n"+
		"everything under out (repeatable; needs --out-dir, or --json)", func(s string) error {
		outputs = append(outputs, s)
		return nil
	})
	if err := fs.parse(args); err != nil {
		return err
	}
	if *moduleID == "" && fs.NArg() < 1 {
		return fs.usageError("no module: name a .wasm file, - to read it from stdin, or --module-id mod_…")
	}
	if len(outputs) > 0 && *outDir == "" && !*asJSON {
		return fs.usageError("--output needs --out-dir DIR to write the files into (or --json to print them)")
	}
	if *async && *follow && *asJSON {
		return fs.usageError("--async --follow prints the guest's output; --async --json prints the run's id and state")
	}
	fail := func(err error) error { return execFailure(env, *asJSON, err) }
	if *server == "" {
		*server = "http://127.0.0.1:8080"
	}
	if *key == "" {
		*key = env.Getenv("WASMWIZ_API_KEY")
	}
	c, err := client.New(*server, *key, client.WithUserAgent("wasmwiz-exec/"+version))
	if err != nil {
		return fail(fromClient(err))
	}

	req := &client.ExecuteRequest{Env: envVars, Function: *call, Body: client.BodyMultipart,
		Files: files, Mount: *mount, Outputs: outputs}
	if *archive != "" {
		if req.Archive, err = os.ReadFile(*archive); err != nil {
			return fail(wasmwiz.WrapError(wasmwiz.EINVALID, err, "cannot read the archive: %v", err))
		}
	}
	lim, err := wasmwiz.ParseLowerLimits(*timeout, *memory)
	if err != nil {
		return fail(err)
	}
	req.Timeout, req.Memory = lim.Timeout, lim.MaxMemoryBytes
	if *params != "" {
		req.Params = strings.Split(*params, ",")
	}
	rest := fs.Args()
	fromStdin := false
	if *moduleID == "" {
		if req.Wasm, req.Name, err = readModule(env, rest[0]); err != nil {
			return fail(err)
		}
		fromStdin, rest = rest[0] == "-", rest[1:]
	}
	req.Args = rest
	// The server refuses them too; refused here, nothing is sent.
	if err := wasmwiz.CheckArgv(req.Name, req.Args, req.Env); err != nil {
		return fail(err)
	}
	if !fromStdin {
		if req.Stdin, err = readStdin(env.Stdin); err != nil {
			return fail(wasmwiz.WrapError(wasmwiz.EINVALID, err, "reading stdin: %v", err))
		}
	}
	// Without a key, a server with auth on answers 401: say how to pass one.
	fail = func(err error) error {
		err = fromClient(err)
		if *key == "" && wasmwiz.ErrorCode(err) == wasmwiz.EUNAUTHORIZED {
			err = wasmwiz.WrapError(wasmwiz.EUNAUTHORIZED, err,
				"%s: this server wants an API key: pass --key ww_… or set WASMWIZ_API_KEY", wasmwiz.ErrorMessage(err))
		}
		if ctx.Err() != nil {
			return context.Cause(ctx) // interrupted: Main says so
		}
		return execFailure(env, *asJSON, err)
	}

	if *async {
		req.ModuleID = *moduleID
		return execAsync(ctx, env, c, req, *follow, *asJSON, *outDir, lim, fail)
	}

	var sent *api.Result
	following := *follow && !*asJSON
	switch {
	case following:
		req.ModuleID = *moduleID
		sent, err = c.ExecuteFollow(ctx, req, env.writeOutput)
		if err != nil {
			return fail(err)
		}
	case *outDir != "" && !*asJSON:
		req.ModuleID = *moduleID
		if sent, err = executeTar(ctx, c, req); err != nil {
			return fail(err)
		}
	case *moduleID != "":
		ex, err := c.ExecuteModule(ctx, *moduleID, req)
		if err != nil {
			return fail(err)
		}
		sent = ex.Result
	default:
		if sent, err = c.Execute(ctx, req); err != nil {
			return fail(err)
		}
	}
	res, err := runResult(sent)
	if err != nil {
		return fail(err)
	}

	if *outDir != "" {
		if err := writeOutputs(env, *outDir, res.Files); err != nil {
			return execFailure(env, *asJSON, err)
		}
	}
	if *asJSON {
		return printJSONResult(env, sent, res)
	}
	if !following { // --follow printed the guest's output as it came
		_, _ = env.Stdout.Write(res.Stdout)
		_, _ = env.Stderr.Write(res.Stderr)
	}
	// A limit the caller did not lower is the tier's: the server says which.
	if res.Status == wasmwiz.StatusTimeout || res.Status == wasmwiz.StatusMemoryLimit || res.Status == wasmwiz.StatusOutputLimit {
		lim = serverLimits(ctx, c, lim)
	}
	return finishRun(env, "exec", res, lim)
}

// executeTar runs req answered as a tar (Accept: application/x-tar):
// result.json, and the files that came back as they are under files/,
// instead of base64 inside JSON, which takes about twice as long for large
// files (docs/PERFORMANCE.md, "Files"). It returns the result with each
// file's content from the tar; writeOutputs checks them against their
// digests.
func executeTar(ctx context.Context, c *client.Client, req *client.ExecuteRequest) (*api.Result, error) {
	b, err := c.ExecuteArchive(ctx, req, "application/x-tar")
	if err != nil {
		return nil, err
	}
	bad := func(err error) error {
		return wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "the server's tar answer: %v", err)
	}
	var res *api.Result
	content := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, bad(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, bad(err)
		}
		if h.Name == "result.json" {
			res = &api.Result{}
			if err := json.Unmarshal(data, res); err != nil {
				return nil, bad(err)
			}
		} else if p, ok := strings.CutPrefix(h.Name, "files/"); ok {
			content[p] = data
		}
	}
	if res == nil {
		return nil, bad(errors.New("no result.json"))
	}
	for i := range res.Files {
		if !res.Files[i].Omitted {
			res.Files[i].Content = content[res.Files[i].Path]
		}
	}
	return res, nil
}

// writeOutputs writes the files that came back into dir, at their paths
// (made), through an os.Root: a path from the server cannot leave dir. A
// file whose content did not match its digest is an error; one the server
// left out (over the tier's max_files_out_bytes) is named on stderr.
func writeOutputs(env *Env, dir string, files []wasmwiz.OutputFile) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return wasmwiz.WrapError(wasmwiz.EINVALID, err, "--out-dir: %v", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return wasmwiz.WrapError(wasmwiz.EINVALID, err, "--out-dir: %v", err)
	}
	defer root.Close()
	for _, f := range files {
		if f.Omitted {
			fmt.Fprintf(env.Stderr, "wasmwiz exec: %s (%s) did not come back: it did not fit in what was left of the tier's max_files_out_bytes\n",
				f.Path, wasmwiz.FormatSize(f.Size))
			continue
		}
		if sha256Hex(f.Data) != f.SHA256 {
			return wasmwiz.Errorf(wasmwiz.EINTERNAL, "%s came back damaged: its content does not match its sha256", f.Path)
		}
		p, err := wasmwiz.CleanFilePath(f.Path)
		if err != nil {
			return err
		}
		if d := filepath.Dir(p); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "writing %s: %v", p, err)
			}
		}
		if err := root.WriteFile(p, f.Data, 0o644); err != nil {
			return wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "writing %s: %v", p, err)
		}
	}
	return nil
}

// serverLimits fills the limits the caller did not lower with its tier's,
// for the outcome message; on any failure it keeps what it has.
func serverLimits(ctx context.Context, c *client.Client, lim wasmwiz.Limits) wasmwiz.Limits {
	me, err := c.Me(ctx)
	if err != nil || me.Tier == nil {
		return lim
	}
	var tier wasmwiz.Tier
	for _, f := range wasmwiz.TierFields() {
		if v, ok := me.Tier.Limits[f.Name]; ok {
			f.Set(&tier, f.FromStored(v))
		}
	}
	return tier.Limits.Clamp(lim)
}

// runResult is a result the server sent, as the engine's, so that exec
// prints it and exits as run does.
func runResult(r *api.Result) (*wasmwiz.Result, error) {
	res := &wasmwiz.Result{
		Status: wasmwiz.Status(r.Status), ExitCode: r.ExitCode,
		Stdout: r.Stdout, StdoutTruncated: r.StdoutTruncated, Stderr: r.Stderr, StderrTruncated: r.StderrTruncated,
		Trap: r.Trap, Duration: r.Duration, CompileDuration: r.CompileDuration, MemoryPeakBytes: r.MemoryPeakBytes,
		Module: wasmwiz.ModuleInfo(r.Module), CompileCached: r.CompileCached,
	}
	for _, v := range r.Results {
		val, err := wasmwiz.ParseValue(v.Type, v.Text)
		if err != nil {
			return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "the server sent a result value %s %q: %s", v.Type, v.Text, wasmwiz.ErrorMessage(err))
		}
		res.Results = append(res.Results, val)
	}
	for _, f := range r.Files {
		res.Files = append(res.Files, wasmwiz.OutputFile{Path: f.Path, Size: f.Size, SHA256: f.SHA256, Data: f.Content, Omitted: f.Omitted})
	}
	return res, nil
}

// fromClient gives a failure of the client the code and message it carries
// as a wasmwiz error (the codes are the same), so that exec reports it as
// run reports its own.
func fromClient(err error) error {
	var ce *client.Error
	if errors.As(err, &ce) {
		return wasmwiz.WrapError(ce.Code, err, "%s", ce.Message)
	}
	return err
}

// execFailure prints an error as `wasmwiz run` does (a JSON error body with
// --json) and picks the exit status: 2 for the caller's mistakes, 1 for
// anything else. An internal error is the server's, whose message is all it
// says.
func execFailure(env *Env, asJSON bool, err error) error {
	return commandFailure(env, "exec", asJSON, false, err)
}

// execAsync is exec --async: the run is queued on the server. Without
// follow it prints the run's id (asJSON: the server's answer) and returns;
// with follow it prints the guest's output as the run goes and ends as a
// run does, from the run's final record.
func execAsync(ctx context.Context, env *Env, c *client.Client, req *client.ExecuteRequest, follow, asJSON bool,
	outDir string, lim wasmwiz.Limits, fail func(error) error) error {
	acc, err := c.ExecuteAsync(ctx, req, "")
	if err != nil {
		return fail(err)
	}
	if !follow {
		if asJSON {
			b, _ := json.Marshal(acc)
			_, err = fmt.Fprintf(env.Stdout, "%s\n", b)
		} else {
			_, err = fmt.Fprintln(env.Stdout, acc.ID)
		}
		return err
	}
	rec, err := c.FollowRun(ctx, acc.ID, env.writeOutput)
	if err != nil {
		return fail(err)
	}
	res, err := recordResult(rec)
	if err != nil {
		return fail(err)
	}
	if outDir != "" {
		if err := writeOutputs(env, outDir, res.Files); err != nil {
			return execFailure(env, false, err)
		}
	}
	if res.Status == wasmwiz.StatusTimeout || res.Status == wasmwiz.StatusMemoryLimit || res.Status == wasmwiz.StatusOutputLimit {
		lim = serverLimits(ctx, c, lim)
	}
	return finishRun(env, "exec", res, lim)
}

// recordResult returns the guest's result that a background run's final
// record holds, or the run's error: a request found wrong when it was to
// start (its error code and message, as a synchronous run answers them), a
// cancelled or failed run.
func recordResult(rec *api.Run) (*wasmwiz.Result, error) {
	switch {
	case rec.ErrorCode != "":
		return nil, wasmwiz.Errorf(rec.ErrorCode, "%s", rec.Message)
	case rec.State != api.RunDone || rec.Status == "":
		return nil, wasmwiz.Errorf(wasmwiz.EUNAVAILABLE, "the background run %s is %s: %s", rec.ID, rec.State, rec.Message)
	}
	res := &wasmwiz.Result{Status: rec.Status, ExitCode: rec.ExitCode, Stdout: rec.Stdout, StdoutTruncated: rec.StdoutTruncated,
		Stderr: rec.Stderr, StderrTruncated: rec.StderrTruncated, Trap: rec.Trap,
		Duration: time.Duration(rec.DurationMS * float64(time.Millisecond)), MemoryPeakBytes: rec.MemoryPeakBytes, Files: rec.Files}
	for _, v := range rec.Results {
		val, err := wasmwiz.ParseValue(v.Type, v.Value)
		if err != nil {
			return nil, wasmwiz.WrapError(wasmwiz.EINTERNAL, err, "the server sent a result value %s %q: %s", v.Type, v.Value, wasmwiz.ErrorMessage(err))
		}
		res.Results = append(res.Results, val)
	}
	return res, nil
}

// writeOutput writes a guest's output as a followed run sends it: stderr's
// to stderr, stdout's to stdout.
func (env *Env) writeOutput(stderr bool, p []byte) {
	if stderr {
		_, _ = env.Stderr.Write(p)
	} else {
		_, _ = env.Stdout.Write(p)
	}
}
