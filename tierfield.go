package wasmwiz

import (
	"bytes"
	"encoding/json"
	"fmt"
	"iter"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// LimitKind says how a tier field is read and written.
type LimitKind int

// Limit kinds.
const (
	LimitCount    LimitKind = iota // a plain number
	LimitBytes                     // a byte size: "128MiB" in text, bytes in JSON and SQL
	LimitDuration                  // a duration: "5s" in text, milliseconds in JSON and SQL (the name ends in _ms)
)

// TierField is one limit of a tier, as declared by the `tier`, `flag` and
// `help` tags of its field in Tier or Limits:
//
//	MaxMemoryBytes int64 `tier:"max_memory_bytes,bytes,min=64KiB,max=4GiB" flag:"memory" help:"linear memory cap"`
//
// The tag's first word is the JSON key and the column name; then the kind
// (count, bytes or duration) and the inclusive range, written in the kind's
// units. Everything that stores, sends, parses or shows tier limits walks
// TierFields instead of naming the fields.
type TierField struct {
	Name     string    // JSON key and column name, e.g. "max_memory_bytes"
	Kind     LimitKind // how the value is read and written
	Min, Max int64     // allowed range, inclusive (durations in nanoseconds); Max 0: none
	Flag     string    // the `wasmwiz tiers set` flag, e.g. "memory"
	Help     string    // one line for help texts and the API document
	GoName   string    // the Go field, e.g. "MaxMemoryBytes"
	PerRun   bool      // the field is in Limits: it bounds one run and travels with it

	index []int // reflect index in Tier
	limit int   // index in Limits, for PerRun fields
}

// TierFields returns every limit of a tier in declaration order: the order of
// the tiers table's columns and of the JSON object.
func TierFields() []TierField { return tierFields() }

var tierFields = sync.OnceValue(func() []TierField {
	var out []TierField
	tt := reflect.TypeFor[Tier]()
	for i := range tt.NumField() {
		sf := tt.Field(i)
		if sf.Anonymous && sf.Type == reflect.TypeFor[Limits]() {
			for j := range sf.Type.NumField() {
				lf := sf.Type.Field(j)
				f := parseTierField(lf)
				f.index, f.PerRun, f.limit = []int{i, j}, true, j
				out = append(out, f)
			}
			continue
		}
		if _, ok := sf.Tag.Lookup("tier"); ok {
			f := parseTierField(sf)
			f.index = []int{i}
			out = append(out, f)
		}
	}
	return out
})

// parseTierField reads a field's tags. A malformed tag is a programming
// error, found by the first test that touches a tier.
func parseTierField(sf reflect.StructField) TierField {
	tag, ok := sf.Tag.Lookup("tier")
	if !ok {
		panic("wasmwiz: Limits field " + sf.Name + " has no tier tag")
	}
	switch sf.Type.Kind() {
	case reflect.Int, reflect.Int64:
	default:
		panic("wasmwiz: tier field " + sf.Name + " is not an integer")
	}
	parts := strings.Split(tag, ",")
	if len(parts) < 2 {
		panic("wasmwiz: tier tag of " + sf.Name + " needs a name and a kind")
	}
	f := TierField{Name: parts[0], GoName: sf.Name, Flag: sf.Tag.Get("flag"), Help: sf.Tag.Get("help")}
	switch parts[1] {
	case "count":
		f.Kind = LimitCount
	case "bytes":
		f.Kind = LimitBytes
	case "duration":
		f.Kind = LimitDuration
		if !strings.HasSuffix(f.Name, "_ms") || sf.Type != reflect.TypeFor[time.Duration]() {
			panic("wasmwiz: duration tier field " + sf.Name + " must be a time.Duration named *_ms")
		}
	default:
		panic("wasmwiz: tier field " + sf.Name + ": unknown kind " + parts[1])
	}
	for _, p := range parts[2:] {
		k, v, _ := strings.Cut(p, "=")
		n, err := f.Parse(v)
		if err != nil {
			panic("wasmwiz: tier field " + sf.Name + ": bad " + k + " " + v)
		}
		switch k {
		case "min":
			f.Min = n
		case "max":
			f.Max = n
		default:
			panic("wasmwiz: tier field " + sf.Name + ": unknown option " + k)
		}
	}
	if f.Flag == "" || f.Help == "" {
		panic("wasmwiz: tier field " + sf.Name + " needs flag and help tags")
	}
	return f
}

// Get returns the field's value in t (durations in nanoseconds).
func (f TierField) Get(t *Tier) int64 { return reflect.ValueOf(t).Elem().FieldByIndex(f.index).Int() }

// Set sets the field's value in t (durations in nanoseconds).
func (f TierField) Set(t *Tier, v int64) { reflect.ValueOf(t).Elem().FieldByIndex(f.index).SetInt(v) }

// ToStored converts a value to the unit of its column and JSON number:
// milliseconds for durations, the value itself otherwise.
func (f TierField) ToStored(v int64) int64 {
	if f.Kind == LimitDuration {
		return time.Duration(v).Milliseconds()
	}
	return v
}

// FromStored reverses ToStored.
func (f TierField) FromStored(v int64) int64 {
	if f.Kind == LimitDuration {
		return int64(time.Duration(v) * time.Millisecond)
	}
	return v
}

// Format writes a value for people: "128MiB", "5s" or "10".
func (f TierField) Format(v int64) string {
	switch f.Kind {
	case LimitBytes:
		return FormatSize(v)
	case LimitDuration:
		return time.Duration(v).String()
	}
	return strconv.FormatInt(v, 10)
}

// Parse reads a value written for people: a size with a unit, a duration
// such as "5s", or a whole number. EINVALID for anything else.
func (f TierField) Parse(s string) (int64, error) {
	switch f.Kind {
	case LimitBytes:
		return ParseSize(s)
	case LimitDuration:
		d, err := ParseDuration(s)
		return int64(d), err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, Errorf(EINVALID, "%s must be a whole number, got %q", f.Name, s)
	}
	return n, nil
}

// check returns EINVALID when v is out of the field's range.
func (f TierField) check(v int64) error {
	if v < f.Min || (f.Max > 0 && v > f.Max) {
		if f.Max > 0 {
			return Errorf(EINVALID, "%s must be between %s and %s, got %s", f.Name, f.Format(f.Min), f.Format(f.Max), f.Format(v))
		}
		return Errorf(EINVALID, "%s must be at least %s, got %s", f.Name, f.Format(f.Min), f.Format(v))
	}
	return nil
}

// TierColumns returns the limit columns of the tiers table in TierFields
// order, each with prefix (e.g. "t."), joined by commas.
func TierColumns(prefix string) string {
	fs := TierFields()
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = prefix + f.Name
	}
	return strings.Join(names, ", ")
}

// ColumnValues returns t's limits as the tiers table stores them, in
// TierColumns order.
func (t *Tier) ColumnValues() []any {
	fs := TierFields()
	out := make([]any, len(fs))
	for i, f := range fs {
		out[i] = f.ToStored(f.Get(t))
	}
	return out
}

// SetColumnValues sets t's limits from values read in TierColumns order.
func (t *Tier) SetColumnValues(v []int64) {
	for i, f := range TierFields() {
		f.Set(t, f.FromStored(v[i]))
	}
}

// CheckMax returns EINVALID naming every per-run limit of t above max, the
// server's upper bounds (zero fields bound nothing): a tier is refused when
// saved rather than shown with limits that never apply.
func (t *Tier) CheckMax(max Limits) error {
	var bad []string
	for _, f := range TierFields() {
		if !f.PerRun {
			continue
		}
		m := limitsValue(&max, f.limit)
		if v := f.Get(t); m > 0 && v > m {
			bad = append(bad, fmt.Sprintf("%s %s is above the server's maximum of %s", f.Name, f.Format(v), f.Format(m)))
		}
	}
	if len(bad) > 0 {
		return Errorf(EINVALID, "%s", strings.Join(bad, "; "))
	}
	return nil
}

// MarshalJSON writes the tier as the API sends it (MarshalTierJSON): every
// limit under its TierFields name, in their order (durations in
// milliseconds).
func (t Tier) MarshalJSON() ([]byte, error) {
	return MarshalTierJSON(t.Name, func(yield func(string, int64) bool) {
		for _, f := range TierFields() {
			if !yield(f.Name, f.ToStored(f.Get(&t))) {
				return
			}
		}
	}, t.UpdatedAt)
}

// MarshalTierJSON writes a tier as one flat object: "name", then each limit
// under its name in the order limits yields them, its value a number in the
// stored unit (bytes, milliseconds, a count), then "updated_at", left out
// when zero. A limit called "name" or "updated_at" is an error. It is the
// one writer of a tier's JSON: Tier's, and the API's tier (package api),
// which carries limits this version may not know.
func MarshalTierJSON(name string, limits iter.Seq2[string, int64], updatedAt time.Time) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"name":`)
	n, err := json.Marshal(name)
	if err != nil {
		return nil, err
	}
	b.Write(n)
	for k, v := range limits {
		if k == "name" || k == "updated_at" {
			return nil, fmt.Errorf("wasmwiz: %q is not a limit name", k)
		}
		key, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		b.WriteByte(',')
		b.Write(key)
		b.WriteByte(':')
		b.WriteString(strconv.FormatInt(v, 10))
	}
	if !updatedAt.IsZero() {
		ts, err := updatedAt.MarshalJSON()
		if err != nil {
			return nil, err
		}
		b.WriteString(`,"updated_at":`)
		b.Write(ts)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads a tier. Limits are numbers in the stored unit
// (bytes, milliseconds) or strings for people ("128MiB", "5s"); a duration
// X_ms may also be sent as X with a string ("timeout": "5s"). updated_at is
// ignored, so that an answer can be sent back. Limits left out are zero.
// Unknown keys and bad values are EINVALID errors that name the key.
func (t *Tier) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return Errorf(EINVALID, "a tier is a JSON object")
	}
	var c Tier
	if v, ok := raw["name"]; ok {
		if err := json.Unmarshal(v, &c.Name); err != nil {
			return Errorf(EINVALID, "name must be a string")
		}
		delete(raw, "name")
	}
	delete(raw, "updated_at")
	for _, f := range TierFields() {
		key := f.Name
		v, ok := raw[key]
		if alias := strings.TrimSuffix(f.Name, "_ms"); f.Kind == LimitDuration {
			if av, aok := raw[alias]; aok {
				if ok {
					return Errorf(EINVALID, "send %s or %s, not both", f.Name, alias)
				}
				key, v, ok = alias, av, true
			}
		}
		if !ok {
			continue
		}
		delete(raw, key)
		n, err := f.decode(v)
		if err != nil {
			return err
		}
		f.Set(&c, n)
	}
	if len(raw) > 0 {
		keys := make([]string, 0, len(raw))
		for k := range raw {
			keys = append(keys, strconv.Quote(k))
		}
		sort.Strings(keys)
		return Errorf(EINVALID, "unknown tier field %s", strings.Join(keys, ", "))
	}
	*t = c
	return nil
}

// decode reads one JSON value of the field: a number in the stored unit or
// a string in the field's text form.
func (f TierField) decode(v json.RawMessage) (int64, error) {
	var n int64
	if err := json.Unmarshal(v, &n); err == nil {
		return f.FromStored(n), nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return 0, Errorf(EINVALID, "%s must be a number or a string like %q", f.Name, f.Format(f.example()))
	}
	n, err := f.Parse(s)
	if err != nil {
		return 0, Errorf(EINVALID, "%s: %s", f.Name, ErrorMessage(err))
	}
	return n, nil
}

func (f TierField) example() int64 {
	switch f.Kind {
	case LimitBytes:
		return 128 * MiB
	case LimitDuration:
		return int64(5 * time.Second)
	}
	return 10
}

// limitsValue returns field i of l.
func limitsValue(l *Limits, i int) int64 { return reflect.ValueOf(l).Elem().Field(i).Int() }

// LimitsSchema names the fields of Limits in order, e.g.
// "timeout_ms,max_memory_bytes,…": two processes that exchange Limits as
// Values agree on it first.
func LimitsSchema() string {
	var names []string
	for _, f := range TierFields() {
		if f.PerRun {
			names = append(names, f.Name)
		}
	}
	return strings.Join(names, ",")
}

// Values returns every field of l in declaration order (durations in
// nanoseconds), for a compact encoding that follows new fields by itself.
func (l Limits) Values() []int64 {
	v := reflect.ValueOf(&l).Elem()
	out := make([]int64, v.NumField())
	for i := range out {
		out[i] = v.Field(i).Int()
	}
	return out
}

// SetValues sets every field of l from vals, as Values wrote them. It
// returns an error when the count differs.
func (l *Limits) SetValues(vals []int64) error {
	v := reflect.ValueOf(l).Elem()
	if len(vals) != v.NumField() {
		return fmt.Errorf("limits: got %d values, want %d", len(vals), v.NumField())
	}
	for i, x := range vals {
		v.Field(i).SetInt(x)
	}
	return nil
}

// Clamp returns l with every field lowered to max's where max sets a lower,
// non-zero value; a zero field of l takes max's. It is how a caller's request
// and server config narrow a tier.
func (l Limits) Clamp(max Limits) Limits {
	// Field by field in place: every execute clamps, and Values would
	// allocate two slices for it.
	lv, mv := reflect.ValueOf(&l).Elem(), reflect.ValueOf(&max).Elem()
	for i := range lv.NumField() {
		f := lv.Field(i)
		if m := mv.Field(i).Int(); m > 0 && (f.Int() <= 0 || f.Int() > m) {
			f.SetInt(m)
		}
	}
	return l
}
