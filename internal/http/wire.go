package http

import (
	"github.com/wasmwiz/wasmwiz"
	"github.com/wasmwiz/wasmwiz/api"
)

// The API answers with the types of package api, the one definition of
// each JSON shape that the Go client decodes too; these functions map the
// domain onto them. Where the domain's type is the API's shape, api
// aliases it, and it goes out as it is: api.Inspection is
// wasmwiz.Inspection, whose tags also serve the stores and the worker
// protocol, and api.Run is wasmwiz.UsageRecord, whose codec also writes
// the webhooks' bodies (internal/queue).

// APIResult returns a run's result in the API's shape, with the run's id
// (empty for none): what execute answers and `wasmwiz run --json` prints.
func APIResult(id string, r *wasmwiz.Result) *api.Result {
	out := &api.Result{
		ID:              id,
		Status:          api.Status(r.Status),
		StdoutTruncated: r.StdoutTruncated,
		StderrTruncated: r.StderrTruncated,
		Trap:            r.Trap,
		Duration:        r.Duration,
		MemoryPeakBytes: r.MemoryPeakBytes,
		Module:          api.ModuleInfo(r.Module),
		CompileCached:   r.CompileCached,
		CompileDuration: r.CompileDuration,
		Stdout:          r.Stdout,
		Stderr:          r.Stderr,
		Results:         make([]api.Value, len(r.Results)),
	}
	if r.Status.Exited() {
		out.ExitCode = r.ExitCode
	}
	for i, v := range r.Results {
		out.Results[i] = api.Value{Type: v.Type, Text: v.String()}
	}
	if r.Files != nil {
		out.Files = make([]api.File, len(r.Files))
		for i, f := range r.Files {
			out.Files[i] = api.File{Path: f.Path, Size: f.Size, SHA256: f.SHA256, Content: f.Data, Omitted: f.Omitted}
		}
	}
	return out
}

// APIInspection returns an inspection in the API's shape, which is the
// domain's (api.Inspection is wasmwiz.Inspection): what a stored module
// carries and `wasmwiz run --inspect` prints.
func APIInspection(in *wasmwiz.Inspection) *api.Inspection { return in }

func apiModule(m *wasmwiz.Module) *api.Module {
	return &api.Module{
		ID: m.ID, OwnerID: m.OwnerID, Name: m.Name, Description: m.Description,
		SHA256: m.SHA256, SizeBytes: m.SizeBytes, Inspection: APIInspection(m.Inspection),
		Public: m.Public, CreatedAt: m.CreatedAt, LastRunAt: m.LastRunAt, RunCount: m.RunCount,
	}
}

func apiDailyRuns(d wasmwiz.DailyRuns) api.DailyRuns {
	out := api.DailyRuns{Day: d.Day, ByStatus: make(map[api.Status]int64, len(d.ByStatus)),
		P50DurationMS: d.P50DurationMS, P95DurationMS: d.P95DurationMS, P99DurationMS: d.P99DurationMS}
	for st, n := range d.ByStatus {
		out.ByStatus[api.Status(st)] = n
	}
	return out
}

func apiUsage(u *wasmwiz.Usage) *api.Usage {
	return &api.Usage{Tier: u.Tier, RunsToday: u.RunsToday, RunsPerDay: u.RunsPerDay,
		RunsThisMinute: u.RunsThisMinute, RunsPerMinute: u.RunsPerMinute,
		StoredModules: u.Stored.Count, MaxStoredModules: u.MaxStoredModules,
		StoredModuleBytes: u.Stored.Bytes, MaxStoredModuleBytes: u.MaxStoredModuleBytes,
		StoredRunBytes: u.StoredRunBytes, MaxStoredRunBytes: u.MaxStoredRunBytes}
}

func apiStats(s *wasmwiz.Stats) *api.Stats {
	out := &api.Stats{
		Users: s.Users, ActiveKeys: s.ActiveKeys, RunsToday: s.RunsToday, ActiveUsersToday: s.ActiveUsersToday,
		SuccessRate: s.SuccessRate, MeanDurationMS: s.MeanDurationMS, P95DurationMS: s.P95DurationMS,
		RunsPerDay: make([]api.DailyCount, len(s.RunsPerDay)), TopModules: make([]api.ModuleCount, len(s.TopModules)),
	}
	for i, d := range s.RunsPerDay {
		out.RunsPerDay[i] = api.DailyCount(d)
	}
	for i, m := range s.TopModules {
		out.TopModules[i] = api.ModuleCount(m)
	}
	return out
}

func apiUser(u *wasmwiz.User) *api.User {
	return &api.User{ID: u.ID, Email: u.Email, Role: api.Role(u.Role), Tier: u.Tier, CreatedAt: u.CreatedAt, Disabled: u.Disabled}
}

func apiKey(k *wasmwiz.APIKey) *api.APIKey {
	return &api.APIKey{ID: k.ID, UserID: k.UserID, Name: k.Name, Prefix: k.Prefix, CreatedAt: k.CreatedAt,
		LastUsedAt: k.LastUsedAt, ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt}
}

// apiTier returns a tier with every limit of wasmwiz.TierFields under its
// name, in the unit its JSON carries (bytes, milliseconds, counts).
func apiTier(t *wasmwiz.Tier) *api.Tier {
	fs := wasmwiz.TierFields()
	out := &api.Tier{Name: t.Name, Limits: make(map[string]int64, len(fs)), UpdatedAt: t.UpdatedAt}
	for _, f := range fs {
		out.Limits[f.Name] = f.ToStored(f.Get(t))
	}
	return out
}

// apiList maps every element of a page.
func apiList[T, U any](in []T, f func(T) U) []U {
	out := make([]U, len(in))
	for i, x := range in {
		out[i] = f(x)
	}
	return out
}
