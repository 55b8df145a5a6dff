package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

// Status is how a guest's run ended. Every status is a successful answer,
// not an error.
type Status = wasmwiz.Status

// Run statuses.
const (
	StatusOK          = wasmwiz.StatusOK          // finished: exit code 0, or the function returned
	StatusExit        = wasmwiz.StatusExit        // WASI proc_exit with a non-zero code
	StatusTrap        = wasmwiz.StatusTrap        // the guest trapped; Result.Trap says how
	StatusTimeout     = wasmwiz.StatusTimeout     // stopped at the wall-time limit
	StatusMemoryLimit = wasmwiz.StatusMemoryLimit // died of the memory cap
	StatusOutputLimit = wasmwiz.StatusOutputLimit // stopped when its output (stdout and stderr together) passed the cap
)

// Statuses lists every status.
var Statuses = wasmwiz.Statuses

// ExecuteRequest is the JSON body of POST /api/v1/execute and POST
// /api/v1/modules/{id}/execute (whose module is in the path: no ModuleID,
// no WasmBase64). The other bodies, multipart/form-data and a raw module,
// carry the same fields (docs/API.md).
type ExecuteRequest struct {
	ModuleID    string            `json:"module_id,omitempty"`   // a stored module (mod_…), or
	WasmBase64  string            `json:"wasm_base64,omitempty"` // the module itself, base64
	Name        string            `json:"name,omitempty"`        // the module's name, argv[0]
	Stdin       *string           `json:"stdin,omitempty"`       // stdin as text, or
	StdinBase64 string            `json:"stdin_base64,omitempty"`
	Args        []string          `json:"args,omitempty"` // argv after argv[0]
	Env         map[string]string `json:"env,omitempty"`  // the guest's whole environment
	Function    string            `json:"function,omitempty"`
	// Params are the function's arguments: JSON numbers, or strings of
	// decimal numbers ("1", "-2.5", "nan", "inf").
	Params  []json.RawMessage `json:"params,omitempty"`
	Timeout string            `json:"timeout,omitempty"` // a lower wall time than the tier's, e.g. "500ms"
	Memory  string            `json:"memory,omitempty"`  // a lower memory cap, e.g. "16MiB" or bytes
	// Async runs the module in the background: the answer is 202 with the
	// run's id (Accepted), and CallbackURL, when set, gets its record.
	Async       bool   `json:"async,omitempty"`
	CallbackURL string `json:"callback_url,omitempty"`

	// The run's files (docs/API.md, "Files"): Files and ArchiveBase64 go
	// into a private directory the guest sees at Mount (default /, its
	// working directory); the files matching Outputs come back in
	// Result.Files.
	Files         []FileIn `json:"files,omitempty"`
	ArchiveBase64 string   `json:"archive_base64,omitempty"` // a .tar, .tar.gz or .zip, base64
	Mount         *string  `json:"mount,omitempty"`
	Outputs       []string `json:"outputs"` // patterns relative to the mount, e.g. "out/*.png"; [] asks for a directory and no files back, null for none
}

// FileIn is one file sent into a run's directory in a JSON body.
type FileIn struct {
	Path          string `json:"path"` // its path in the guest, relative to the mount
	ContentBase64 string `json:"content_base64"`
}

// Result is what a run did: the answer of POST /api/v1/execute and
// /api/v1/modules/{id}/execute, and what `wasmwiz run --json` prints.
//
// In JSON, stdout and stderr travel as UTF-8 text when they are valid
// UTF-8 that JSON writes in at most twice its size, and as base64
// otherwise ("stdout_encoding", wasmwiz.EncodeOutput); exit_code is null when
// the guest did not exit; the duration is "duration_ms". The Go fields hold
// the decoded values.
type Result struct {
	ID              string // the run's id (run_…); empty from wasmwiz run
	Status          Status
	ExitCode        int // the guest's exit code when Status.Exited(), else 0 (JSON null)
	Stdout          []byte
	StdoutTruncated bool // the guest wrote more than the output cap
	Stderr          []byte
	StderrTruncated bool
	Trap            string        // trap message and wasm stack (trap, memory_limit)
	Results         []Value       // a plain function's return values
	Duration        time.Duration // the guest's wall time
	MemoryPeakBytes int64
	Module          ModuleInfo
	CompileCached   bool          // the compiled code came from a cache
	CompileDuration time.Duration // compiling the module for this run (0 when a worker held it compiled), before Duration
	// Files are the files of the run's directory that matched its outputs,
	// in path order (docs/API.md, "Files"); nil when it asked for none.
	Files []File
	// FilesApart leaves the files' content out of the JSON: it travels
	// beside it (the archive answer, result.json inside). Not in JSON.
	FilesApart bool
}

// File is one file that came back from a run.
type File struct {
	Path    string // relative to the run's mount
	Size    int64
	SHA256  string // hex digest of the content
	Content []byte // nil when Omitted
	Omitted bool   // listed without its content: it did not fit in what the files before it left of the tier's max_files_out_bytes
}

// MarshalJSON writes a file as a result carries it, its content base64.
func (f File) MarshalJSON() ([]byte, error) { return json.Marshal(f.wire(true)) }

// UnmarshalJSON reads a file as a result carries it.
func (f *File) UnmarshalJSON(data []byte) error {
	var j fileJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	out := File{Path: j.Path, Size: j.Size, SHA256: j.SHA256, Omitted: j.Omitted}
	if j.ContentBase64 != nil {
		b, err := base64.StdEncoding.DecodeString(*j.ContentBase64)
		if err != nil {
			return err
		}
		out.Content = b
	}
	*f = out
	return nil
}

// wire returns f on the wire, with its content when withContent and it
// was not omitted.
func (f File) wire(withContent bool) fileJSON {
	j := fileJSON{Path: f.Path, Size: f.Size, SHA256: f.SHA256, Omitted: f.Omitted}
	if withContent && (!f.Omitted || f.Content != nil) {
		c := base64.StdEncoding.EncodeToString(f.Content)
		j.ContentBase64 = &c
	}
	return j
}

// fileJSON is File on the wire.
type fileJSON struct {
	Path          string  `json:"path"`
	Size          int64   `json:"size"`
	SHA256        string  `json:"sha256"`
	ContentBase64 *string `json:"content_base64,omitempty"`
	Omitted       bool    `json:"omitted,omitempty"`
}

// resultJSON is Result on the wire.
type resultJSON struct {
	ID              string      `json:"id,omitempty"`
	Status          Status      `json:"status"`
	ExitCode        *int        `json:"exit_code"`
	Stdout          string      `json:"stdout"`
	StdoutEncoding  string      `json:"stdout_encoding"`
	StdoutTruncated bool        `json:"stdout_truncated"`
	Stderr          string      `json:"stderr"`
	StderrEncoding  string      `json:"stderr_encoding"`
	StderrTruncated bool        `json:"stderr_truncated"`
	Trap            string      `json:"trap,omitempty"`
	Results         []Value     `json:"results"`
	DurationMS      float64     `json:"duration_ms"`
	CompileMS       float64     `json:"compile_ms"`
	MemoryPeakBytes int64       `json:"memory_peak_bytes"`
	Module          ModuleInfo  `json:"module"`
	CompileCached   bool        `json:"compile_cached"`
	Files           *[]fileJSON `json:"files,omitempty"`
}

// exitCode returns code as the JSON of a run with status s: nil when the
// guest did not exit.
func exitCode(s Status, code int) *int {
	if !s.Exited() {
		return nil
	}
	return &code
}

// durationMS writes a duration as milliseconds with microsecond precision.
func durationMS(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// fromMS reverses durationMS.
func fromMS(ms float64) time.Duration {
	return time.Duration(math.Round(ms*1000)) * time.Microsecond
}

// MarshalJSON writes the result's JSON shape.
func (r Result) MarshalJSON() ([]byte, error) {
	j := resultJSON{
		ID:              r.ID,
		Status:          r.Status,
		ExitCode:        exitCode(r.Status, r.ExitCode),
		StdoutTruncated: r.StdoutTruncated,
		StderrTruncated: r.StderrTruncated,
		Trap:            r.Trap,
		Results:         r.Results,
		DurationMS:      durationMS(r.Duration),
		CompileMS:       durationMS(r.CompileDuration),
		MemoryPeakBytes: r.MemoryPeakBytes,
		Module:          r.Module,
		CompileCached:   r.CompileCached,
	}
	if j.Results == nil {
		j.Results = []Value{}
	}
	j.Stdout, j.StdoutEncoding = wasmwiz.EncodeOutput(r.Stdout)
	j.Stderr, j.StderrEncoding = wasmwiz.EncodeOutput(r.Stderr)
	if r.Files != nil {
		files := make([]fileJSON, len(r.Files))
		for i, f := range r.Files {
			files[i] = f.wire(!r.FilesApart)
		}
		j.Files = &files
	}
	// Without HTML escaping: <, > and & as themselves, not six bytes each,
	// so that markup a guest prints stays text of about its own size. An
	// encoder around this one must not escape HTML either, or it applies
	// it again (the HTTP layer writes this output as it is).
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(j); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// UnmarshalJSON reads the result's JSON shape.
func (r *Result) UnmarshalJSON(data []byte) error {
	var j resultJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	res := Result{
		ID:              j.ID,
		Status:          j.Status,
		StdoutTruncated: j.StdoutTruncated,
		StderrTruncated: j.StderrTruncated,
		Trap:            j.Trap,
		Results:         j.Results,
		Duration:        fromMS(j.DurationMS),
		CompileDuration: fromMS(j.CompileMS),
		MemoryPeakBytes: j.MemoryPeakBytes,
		Module:          j.Module,
		CompileCached:   j.CompileCached,
	}
	if j.ExitCode != nil {
		res.ExitCode = *j.ExitCode
	}
	var err error
	if res.Stdout, err = wasmwiz.DecodeOutput(j.Stdout, j.StdoutEncoding); err != nil {
		return err
	}
	if res.Stderr, err = wasmwiz.DecodeOutput(j.Stderr, j.StderrEncoding); err != nil {
		return err
	}
	if j.Files != nil {
		res.Files = make([]File, len(*j.Files))
		for i, f := range *j.Files {
			res.Files[i] = File{Path: f.Path, Size: f.Size, SHA256: f.SHA256, Omitted: f.Omitted}
			if f.ContentBase64 != nil {
				if res.Files[i].Content, err = base64.StdEncoding.DecodeString(*f.ContentBase64); err != nil {
					return err
				}
			}
		}
	}
	*r = res
	return nil
}

// Value is one number a plain function returned. In JSON it is
// {"type":"i32","value":5}: the value a JSON number, or the string "nan",
// "inf" or "-inf", which JSON numbers cannot hold.
type Value struct {
	Type string // "i32", "i64", "f32" or "f64"
	// Text is the value in decimal as the server writes it: i32 and i64
	// signed ("-1"), floats in their shortest form ("0.5", "1e+21"), and
	// "nan", "inf", "-inf".
	Text string
}

// String returns v.Text.
func (v Value) String() string { return v.Text }

// Int returns an i32 or i64 value as an integer.
func (v Value) Int() (int64, error) { return strconv.ParseInt(v.Text, 10, 64) }

// Float returns a value as a float64 (NaN and the infinities included).
func (v Value) Float() (float64, error) { return strconv.ParseFloat(v.Text, 64) }

// MarshalJSON writes {"type":…,"value":…}.
func (v Value) MarshalJSON() ([]byte, error) {
	var value json.RawMessage
	if isJSONNumber(v.Text) {
		value = json.RawMessage(v.Text)
	} else {
		b, err := json.Marshal(v.Text)
		if err != nil {
			return nil, err
		}
		value = b
	}
	return json.Marshal(struct {
		Type  string          `json:"type"`
		Value json.RawMessage `json:"value"`
	}{v.Type, value})
}

// UnmarshalJSON reads {"type":…,"value":…}, the value a number or a string.
func (v *Value) UnmarshalJSON(data []byte) error {
	var j struct {
		Type  string          `json:"type"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	text := string(j.Value)
	if strings.HasPrefix(text, `"`) {
		if err := json.Unmarshal(j.Value, &text); err != nil {
			return err
		}
	} else if !isJSONNumber(text) {
		return fmt.Errorf("api: the value of a %s is %s, neither a number nor a string", j.Type, text)
	}
	*v = Value{Type: j.Type, Text: text}
	return nil
}

// isJSONNumber reports whether s is one JSON number.
func isJSONNumber(s string) bool {
	if s == "" || !(s[0] == '-' || s[0] >= '0' && s[0] <= '9') {
		return false
	}
	var n json.Number
	return json.Unmarshal([]byte(s), &n) == nil
}

// ModuleInfo identifies the module a result came from.
type ModuleInfo struct {
	SHA256    string `json:"sha256"`
	SizeBytes int64  `json:"size_bytes"`
	WASI      bool   `json:"wasi"`
	Entry     string `json:"entry"` // the function that ran
}

// LegacyResult is the answer of POST /api/execute, the original service's
// route: Output is the guest's stdout when it finished with status ok;
// otherwise Error says what happened.
type LegacyResult struct {
	Output *string `json:"output"`
	Error  *string `json:"error"`
}
