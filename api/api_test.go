package api_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
)

func TestResultRoundTrip(t *testing.T) {
	t.Parallel()
	in := api.Result{
		ID: "run_1", Status: api.StatusExit, ExitCode: 3,
		Stdout: []byte("hi\n"), Stderr: []byte{0xff, 0x00}, StderrTruncated: true,
		Results:  []api.Value{{Type: "i64", Text: "-7"}, {Type: "f64", Text: "nan"}, {Type: "f32", Text: "1e+21"}},
		Duration: 1500 * time.Microsecond, MemoryPeakBytes: 65536,
		Module: api.ModuleInfo{SHA256: "ab", SizeBytes: 8, WASI: true, Entry: "_start"}, CompileCached: true,
		CompileDuration: 250 * time.Microsecond,
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"stdout":"hi\n"`, `"stdout_encoding":"utf-8"`, `"stderr":"/wA="`, `"stderr_encoding":"base64"`,
		`"exit_code":3`, `"duration_ms":1.5`, `"compile_ms":0.25`, `{"type":"i64","value":-7}`, `{"type":"f64","value":"nan"}`, `{"type":"f32","value":1e+21}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	var out api.Result
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out, in)
	}
	if v, err := out.Results[0].Int(); err != nil || v != -7 {
		t.Errorf("Int: %d %v", v, err)
	}
	if f, err := out.Results[2].Float(); err != nil || f != 1e21 {
		t.Errorf("Float: %g %v", f, err)
	}
}

// TestExitCodeNullWhenTheGuestDidNotExit: results and run records write
// exit_code as null for a guest stopped by a trap or a limit (or a refused
// run), and as the code when it exited or returned.
func TestExitCodeNullWhenTheGuestDidNotExit(t *testing.T) {
	t.Parallel()
	for _, st := range []api.Status{api.StatusOK, api.StatusExit, api.StatusTrap, api.StatusTimeout, api.StatusMemoryLimit, api.StatusOutputLimit, ""} {
		code := 0
		if st == api.StatusExit {
			code = 3
		}
		want := `"exit_code":null`
		if st.Exited() {
			want = `"exit_code":` + map[bool]string{true: "3", false: "0"}[code == 3]
		}
		b, err := json.Marshal(api.Result{ID: "run_x", Status: st, ExitCode: code})
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("result %q: %s, %v; want %s", st, b, err, want)
		}
		var back api.Result
		if err := json.Unmarshal(b, &back); err != nil || back.ExitCode != code || back.Status != st {
			t.Errorf("result %q read back: %+v, %v", st, back, err)
		}
		rb, err := json.Marshal(api.Run{ID: "run_x", Status: st, ExitCode: code})
		if err != nil || !strings.Contains(string(rb), want) || strings.Count(string(rb), `"exit_code"`) != 1 {
			t.Errorf("record %q: %s, %v; want %s once", st, rb, err, want)
		}
		var rback api.Run
		if err := json.Unmarshal(rb, &rback); err != nil || rback.ExitCode != code || rback.Status != st {
			t.Errorf("record %q read back: %+v, %v", st, rback, err)
		}
	}
}

// TestRunReadReplacesTheRecord: a record read into one used before keeps
// nothing of it, so that a list entry (without output or webhook
// attempts) does not show the output of the run read before.
func TestRunReadReplacesTheRecord(t *testing.T) {
	t.Parallel()
	var r api.Run
	full := `{"id":"run_1","status":"ok","exit_code":0,"state":"done","async":true,"stdout":"out","stdout_encoding":"utf-8",` +
		`"stderr":"","stderr_encoding":"utf-8","webhook_deliveries":[{"attempt":1,"at":"2026-11-01T10:00:00Z","duration_ms":1}]}`
	if err := json.Unmarshal([]byte(full), &r); err != nil || string(r.Stdout) != "out" || !r.Async || len(r.Deliveries) != 1 {
		t.Fatalf("read %+v, %v", r, err)
	}
	if err := json.Unmarshal([]byte(`{"id":"run_2","state":"queued"}`), &r); err != nil {
		t.Fatal(err)
	}
	if r.ID != "run_2" || r.State != api.RunQueued || r.Status != "" || r.Async || r.Stdout != nil || r.Stderr != nil || r.Deliveries != nil {
		t.Fatalf("read over a record: %+v", r)
	}
}

func TestValueRefusesOtherJSON(t *testing.T) {
	t.Parallel()
	for _, in := range []string{`{"type":"i32","value":true}`, `{"type":"i32","value":{}}`, `{"type":"i32","value":null}`} {
		var v api.Value
		if err := json.Unmarshal([]byte(in), &v); err == nil {
			t.Errorf("%s read as %+v", in, v)
		}
	}
}

// TestTierFlattensLimits: limits are members of the tier object; a limit
// this package has never heard of arrives in Limits, and members that are
// not integers are left out.
func TestTierFlattensLimits(t *testing.T) {
	t.Parallel()
	in := `{"name":"free","runs_per_minute":10,"max_memory_bytes":134217728,"timeout_ms":5000,"max_widgets":3,` +
		`"note":"not a limit","updated_at":"2026-11-01T10:00:00Z"}`
	var tier api.Tier
	if err := json.Unmarshal([]byte(in), &tier); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"runs_per_minute": 10, "max_memory_bytes": 128 << 20, "timeout_ms": 5000, "max_widgets": 3}
	if tier.Name != "free" || !reflect.DeepEqual(tier.Limits, want) || !tier.UpdatedAt.Equal(time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("read %+v", tier)
	}
	b, err := json.Marshal(tier)
	if err != nil {
		t.Fatal(err)
	}
	const wantJSON = `{"name":"free","max_memory_bytes":134217728,"max_widgets":3,"runs_per_minute":10,"timeout_ms":5000,"updated_at":"2026-11-01T10:00:00Z"}`
	if string(b) != wantJSON {
		t.Fatalf("wrote %s\n want %s", b, wantJSON)
	}
	b, _ = json.Marshal(api.Tier{Name: "new", Limits: map[string]int64{"runs_per_day": 5}})
	if string(b) != `{"name":"new","runs_per_day":5}` {
		t.Fatalf("a tier to send: %s", b)
	}
	if _, err := json.Marshal(api.Tier{Name: "x", Limits: map[string]int64{"name": 1}}); err == nil {
		t.Fatal("a limit called name was written")
	}
}

// TestRunFilesAsResultFiles: a background run's record carries its output
// files in the JSON of a result's files (path, size, sha256,
// content_base64, omitted), and reads them back; a record without files
// has no "files" key.
func TestRunFilesAsResultFiles(t *testing.T) {
	t.Parallel()
	files := []wasmwiz.OutputFile{
		{Path: "out/a.bin", Size: 2, SHA256: "ab", Data: []byte{0xff, 0x00}},
		{Path: "out/big", Size: 1 << 20, SHA256: "cd", Omitted: true},
	}
	b, err := json.Marshal(api.Run{ID: "run_1", State: api.RunDone, Files: files})
	if err != nil {
		t.Fatal(err)
	}
	res, err := json.Marshal(api.Result{Files: []api.File{
		{Path: "out/a.bin", Size: 2, SHA256: "ab", Content: []byte{0xff, 0x00}},
		{Path: "out/big", Size: 1 << 20, SHA256: "cd", Omitted: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var rf, wantF struct {
		Files json.RawMessage `json:"files"`
	}
	if json.Unmarshal(b, &rf) != nil || json.Unmarshal(res, &wantF) != nil || string(rf.Files) != string(wantF.Files) {
		t.Fatalf("record files %s, want a result's %s", rf.Files, wantF.Files)
	}
	var back api.Run
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Files, files) {
		t.Fatalf("read back %+v, want %+v", back.Files, files)
	}
	none, _ := json.Marshal(api.Run{ID: "run_2"})
	if strings.Contains(string(none), `"files"`) {
		t.Fatalf("a record without files: %s", none)
	}
}
