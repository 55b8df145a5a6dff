package http

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
)

// TestAPIStatusesAreTheStatuses: the statuses the document and the client
// name are the engine's.
func TestAPIStatusesAreTheStatuses(t *testing.T) {
	t.Parallel()
	var want []string
	for _, s := range wasmwiz.Statuses {
		want = append(want, string(s))
		if api.Status(s).Exited() != s.Exited() {
			t.Errorf("status %s: Exited differs", s)
		}
	}
	var got []string
	for _, s := range api.Statuses {
		got = append(got, string(s))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("api.Statuses %v, wasmwiz.Statuses %v", got, want)
	}
}

// TestAPIInspectionIsTheStoredJSON: an inspection has one JSON shape, which
// the stores and the worker protocol write from the domain type's tags and
// the API sends as api.Inspection.
func TestAPIInspectionIsTheStoredJSON(t *testing.T) {
	t.Parallel()
	maxPages := uint32(4)
	sig := &wasmwiz.FuncSignature{Params: []string{"i32", "i32"}, Results: []string{"i32"}}
	for name, in := range map[string]*wasmwiz.Inspection{
		"full": {SHA256: "ab", SizeBytes: 9, WASI: true, Entry: "_start",
			Imports: []wasmwiz.Import{{Module: "wasi_snapshot_preview1", Name: "fd_write", Kind: "func", Signature: sig}, {Module: "env", Name: "mem", Kind: "memory"}},
			Exports: []wasmwiz.Export{{Name: "add", Kind: "func", Signature: sig}, {Name: "memory", Kind: "memory"}},
			Memory:  &wasmwiz.MemoryInfo{MinPages: 1, MaxPages: &maxPages}},
		"empty": {SHA256: "cd", Imports: []wasmwiz.Import{}, Exports: []wasmwiz.Export{}, Memory: &wasmwiz.MemoryInfo{}},
		"nil":   {},
	} {
		stored, _ := json.Marshal(in)
		sent, _ := json.Marshal(APIInspection(in))
		if string(stored) != string(sent) {
			t.Errorf("%s: stored %s\n sent %s", name, stored, sent)
		}
	}
}

// bothJSON writes what the domain writes of a value and what the API sends
// of it, and reads both back as JSON objects to compare.
func bothJSON(t *testing.T, domainValue, apiValue any) (domain, sent []byte, a, b map[string]any) {
	t.Helper()
	domain, err := json.Marshal(domainValue)
	if err != nil {
		t.Fatal(err)
	}
	sent, err = json.Marshal(apiValue)
	if err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(domain, &a)
	_ = json.Unmarshal(sent, &b)
	return domain, sent, a, b
}

// TestAPITierIsTheTierCodec: api.Tier, which the API sends and the client
// reads, carries every limit of wasmwiz.TierFields under the names and
// units of the domain's own codec, which reads tiers the API receives.
func TestAPITierIsTheTierCodec(t *testing.T) {
	t.Parallel()
	for _, tier := range wasmwiz.DefaultTiers() {
		tier.UpdatedAt = time.Date(2026, 11, 2, 3, 4, 5, 0, time.UTC)
		domain, sent, a, b := bothJSON(t, tier, apiTier(tier))
		if !reflect.DeepEqual(a, b) || len(b) != len(wasmwiz.TierFields())+2 {
			t.Errorf("tier %s: the domain writes %s\n the API sends %s", tier.Name, domain, sent)
		}
		var back wasmwiz.Tier
		want := *tier // every tier field comes back; updated_at is not read
		want.UpdatedAt = back.UpdatedAt
		if err := json.Unmarshal(sent, &back); err != nil || !reflect.DeepEqual(&back, &want) {
			t.Errorf("tier %s sent back: %+v, %v", tier.Name, back, err)
		}
	}
}

// TestAPIResultKeepsTheResult: what the API sends of a result reads back
// as the same values, including output that is not UTF-8 and floats JSON
// numbers cannot hold.
func TestAPIResultKeepsTheResult(t *testing.T) {
	t.Parallel()
	nan, _ := wasmwiz.ParseValue("f64", "nan")
	neg, _ := wasmwiz.ParseValue("i32", "-1")
	small, _ := wasmwiz.ParseValue("f32", "0.1")
	res := &wasmwiz.Result{Status: wasmwiz.StatusTrap, ExitCode: 9, Stdout: []byte("out"), Stderr: []byte{0xfe},
		Trap: "unreachable", Results: []wasmwiz.Value{nan, neg, small}, Duration: 2500 * time.Microsecond,
		MemoryPeakBytes: 131072, Module: wasmwiz.ModuleInfo{SHA256: "ab", SizeBytes: 3, Entry: "run"}, CompileCached: true}
	b, err := json.Marshal(APIResult("run_1", res))
	if err != nil {
		t.Fatal(err)
	}
	var back api.Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.ID != "run_1" || back.Status != api.StatusTrap || back.ExitCode != 0 || string(back.Stdout) != "out" || string(back.Stderr) != "\xfe" ||
		back.Trap != "unreachable" || back.Duration != res.Duration || back.MemoryPeakBytes != 131072 || back.Module != api.ModuleInfo(res.Module) || !back.CompileCached {
		t.Fatalf("sent %s, read back %+v", b, back)
	}
	for i, v := range res.Results {
		got, err := wasmwiz.ParseValue(back.Results[i].Type, back.Results[i].Text)
		if err != nil || got != v {
			t.Errorf("result %d: sent %v, read back %+v (%v)", i, v, back.Results[i], err)
		}
	}
}

// TestAPIRunIsTheRecordCodec: a run's record has one JSON shape and one
// codec, which the API sends (api.Run is wasmwiz.UsageRecord) and the
// webhooks carry; what it writes reads back as the same api.Run.
func TestAPIRunIsTheRecordCodec(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 2, 3, 4, 5, 6000, time.UTC)
	full := &wasmwiz.UsageRecord{ID: "run_1", UserID: 2, APIKeyID: 3, ModuleID: "mod_1", ModuleSHA256: "ab", Tier: "free",
		Status: wasmwiz.StatusExit, ExitCode: 4, DurationMS: 1.5, CompileMS: 0.25, MemoryPeakBytes: 65536, StdinBytes: 5, OutputBytes: 6,
		ErrorCode: wasmwiz.EINTERNAL, CreatedAt: at, State: wasmwiz.RunDone, StartedAt: &at, FinishedAt: &at,
		RunDetail: wasmwiz.RunDetail{Async: true, Name: "m.wasm", Args: []string{"-v"}, EnvNames: []string{"A"}, Function: "f",
			Params: []string{"1"}, StdinSHA256: "cd", Limits: map[string]int64{"timeout_ms": 5000}, CPUMS: 1.25, Trap: "unreachable",
			Results: []wasmwiz.RunValue{{Type: "i32", Value: "-1"}}, StdoutTruncated: true, StderrTruncated: true,
			Message: "why", CallbackURL: "https://example.com/hook"},
		Stdout: []byte("out\n"), Stderr: []byte{0xff},
		Deliveries: []wasmwiz.WebhookDelivery{{RunID: "run_1", Attempt: 1, At: at, StatusCode: 500, Error: "boom", DurationMS: 3}}}
	listed := *full
	listed.Stdout, listed.Stderr, listed.Deliveries = nil, nil, nil
	for name, rec := range map[string]*wasmwiz.UsageRecord{
		"full":    full,
		"listed":  &listed,
		"refused": {ID: "run_2", Tier: "free", ErrorCode: wasmwiz.ERATELIMIT, CreatedAt: at, State: wasmwiz.RunDone},
		"running": {ID: "run_3", Tier: "free", CreatedAt: at, State: wasmwiz.RunRunning, StartedAt: &at, Stdout: []byte{}, Stderr: []byte("e")},
	} {
		sent, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		var back api.Run
		if err := json.Unmarshal(sent, &back); err != nil {
			t.Fatal(err)
		}
		again, _ := json.Marshal(back)
		if string(again) != string(sent) || string(back.Stdout) != string(rec.Stdout) || (back.Stdout == nil) != (rec.Stdout == nil) ||
			len(back.Deliveries) != len(rec.Deliveries) {
			t.Errorf("%s: %s read back as %+v, which writes %s", name, sent, back, again)
		}
	}
}

// TestOpenAPISchemasAreTheAPITypes: every schema of the document that
// describes a JSON object is tied to its api type (schemaTypes), and its
// properties are exactly the members that type writes when every field is
// set; its required members are those the zero value writes. A field added
// to an api type without its schema, or the reverse, fails here.
func TestOpenAPISchemasAreTheAPITypes(t *testing.T) {
	t.Parallel()
	schemas := OpenAPI()["components"].(map[string]any)["schemas"].(map[string]any)
	for name, sc := range schemas {
		schema := sc.(map[string]any)
		if schema["type"] != "object" {
			continue // enums
		}
		sample, ok := schemaTypes[name]
		if !ok {
			t.Errorf("schema %s is not tied to an api type in schemaTypes", name)
			continue
		}
		full := filled(reflect.TypeOf(sample))
		if name == "Tier" {
			tier := wasmwiz.DefaultTiers()[0]
			tier.UpdatedAt = time.Now()
			full = apiTier(tier)
		}
		written := members(t, full)
		var documented []string
		for p := range schema["properties"].(map[string]any) {
			documented = append(documented, p)
		}
		slices.Sort(documented)
		if !slices.Equal(written, documented) {
			t.Errorf("schema %s documents %v; %T writes %v", name, documented, sample, written)
		}
		required, _ := schema["required"].([]string)
		if name != "Tier" && !slices.Equal(required, alwaysWritten(sample)) {
			t.Errorf("schema %s requires %v; the zero %T writes %v", name, required, sample, alwaysWritten(sample))
		}
	}
	for name := range schemaTypes {
		if schemas[name] == nil {
			t.Errorf("schemaTypes names %s, which the document lacks", name)
		}
	}
}

// filled returns a value of type typ with every field set, so that its
// JSON has every member, omitempty ones included.
func filled(typ reflect.Type) any {
	return fill(typ).Interface()
}

func fill(typ reflect.Type) reflect.Value {
	v := reflect.New(typ).Elem()
	switch {
	case typ == reflect.TypeFor[time.Time]():
		v.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)))
	case typ == reflect.TypeFor[json.RawMessage]():
		v.SetBytes([]byte("1"))
	default:
		switch typ.Kind() {
		case reflect.String:
			v.SetString("x")
		case reflect.Bool:
			v.SetBool(true)
		case reflect.Int, reflect.Int64, reflect.Uint32:
			if v.CanInt() {
				v.SetInt(1)
			} else {
				v.SetUint(1)
			}
		case reflect.Float64:
			v.SetFloat(1.5)
		case reflect.Pointer:
			v.Set(fill(typ.Elem()).Addr())
		case reflect.Slice:
			v.Set(reflect.Append(v, fill(typ.Elem())))
		case reflect.Map:
			v.Set(reflect.MakeMap(typ))
			v.SetMapIndex(fill(typ.Key()), fill(typ.Elem()))
		case reflect.Struct:
			for i := range typ.NumField() {
				if typ.Field(i).IsExported() {
					v.Field(i).Set(fill(typ.Field(i).Type))
				}
			}
		}
	}
	return v
}

// members returns the sorted member names of v's JSON object.
func members(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%T writes %s: %v", v, b, err)
	}
	var names []string
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}
