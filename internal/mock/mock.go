// Package mock holds function-field mocks of the root package's interfaces,
// for handler unit tests: set the function a test needs; calling one that is
// not set fails loudly with EINTERNAL naming it, so a test never passes by
// accident through an unexpected call.
package mock

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmwiz/wasmwiz"
)

func unset(name string) error {
	return wasmwiz.Errorf(wasmwiz.EINTERNAL, "mock: %s called but not set", name)
}

// Engine is a wasmwiz.Engine.
type Engine struct {
	InspectFn func(ctx context.Context, wasm []byte, limits wasmwiz.Limits) (*wasmwiz.Inspection, error)
	RunFn     func(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error)
}

var _ wasmwiz.Engine = (*Engine)(nil)

// Inspect calls InspectFn.
func (e *Engine) Inspect(ctx context.Context, wasm []byte, limits wasmwiz.Limits) (*wasmwiz.Inspection, error) {
	if e.InspectFn == nil {
		return nil, unset("Engine.Inspect")
	}
	return e.InspectFn(ctx, wasm, limits)
}

// Run calls RunFn.
func (e *Engine) Run(ctx context.Context, req *wasmwiz.RunRequest) (*wasmwiz.Result, error) {
	if e.RunFn == nil {
		return nil, unset("Engine.Run")
	}
	return e.RunFn(ctx, req)
}

// UserService is a wasmwiz.UserService.
type UserService struct {
	CreateUserFn   func(ctx context.Context, u *wasmwiz.User) error
	FindUserByIDFn func(ctx context.Context, id int64) (*wasmwiz.User, error)
	FindUsersFn    func(ctx context.Context, filter wasmwiz.UserFilter) ([]*wasmwiz.User, wasmwiz.ListTotal, error)
	UpdateUserFn   func(ctx context.Context, id int64, upd wasmwiz.UserUpdate) (*wasmwiz.User, error)
	CountUsersFn   func(ctx context.Context) (int, error)
}

var _ wasmwiz.UserService = (*UserService)(nil)

// CreateUser calls CreateUserFn.
func (s *UserService) CreateUser(ctx context.Context, u *wasmwiz.User) error {
	if s.CreateUserFn == nil {
		return unset("UserService.CreateUser")
	}
	return s.CreateUserFn(ctx, u)
}

// FindUserByID calls FindUserByIDFn.
func (s *UserService) FindUserByID(ctx context.Context, id int64) (*wasmwiz.User, error) {
	if s.FindUserByIDFn == nil {
		return nil, unset("UserService.FindUserByID")
	}
	return s.FindUserByIDFn(ctx, id)
}

// FindUsers calls FindUsersFn.
func (s *UserService) FindUsers(ctx context.Context, filter wasmwiz.UserFilter) ([]*wasmwiz.User, wasmwiz.ListTotal, error) {
	if s.FindUsersFn == nil {
		return nil, wasmwiz.ListTotal{}, unset("UserService.FindUsers")
	}
	return s.FindUsersFn(ctx, filter)
}

// UpdateUser calls UpdateUserFn.
func (s *UserService) UpdateUser(ctx context.Context, id int64, upd wasmwiz.UserUpdate) (*wasmwiz.User, error) {
	if s.UpdateUserFn == nil {
		return nil, unset("UserService.UpdateUser")
	}
	return s.UpdateUserFn(ctx, id, upd)
}

// CountUsers calls CountUsersFn.
func (s *UserService) CountUsers(ctx context.Context) (int, error) {
	if s.CountUsersFn == nil {
		return 0, unset("UserService.CountUsers")
	}
	return s.CountUsersFn(ctx)
}

// APIKeyService is a wasmwiz.APIKeyService.
type APIKeyService struct {
	CreateAPIKeyFn func(ctx context.Context, userID int64, name string, expiresAt *time.Time) (*wasmwiz.APIKey, string, error)
	AuthenticateFn func(ctx context.Context, plaintext string) (*wasmwiz.User, *wasmwiz.APIKey, error)
	FindAPIKeysFn  func(ctx context.Context, filter wasmwiz.APIKeyFilter) ([]*wasmwiz.APIKey, wasmwiz.ListTotal, error)
	RevokeAPIKeyFn func(ctx context.Context, id int64) (bool, error)
}

var _ wasmwiz.APIKeyService = (*APIKeyService)(nil)

// CreateAPIKey calls CreateAPIKeyFn.
func (s *APIKeyService) CreateAPIKey(ctx context.Context, userID int64, name string, expiresAt *time.Time) (*wasmwiz.APIKey, string, error) {
	if s.CreateAPIKeyFn == nil {
		return nil, "", unset("APIKeyService.CreateAPIKey")
	}
	return s.CreateAPIKeyFn(ctx, userID, name, expiresAt)
}

// Authenticate calls AuthenticateFn.
func (s *APIKeyService) Authenticate(ctx context.Context, plaintext string) (*wasmwiz.User, *wasmwiz.APIKey, error) {
	if s.AuthenticateFn == nil {
		return nil, nil, unset("APIKeyService.Authenticate")
	}
	return s.AuthenticateFn(ctx, plaintext)
}

// FindAPIKeys calls FindAPIKeysFn.
func (s *APIKeyService) FindAPIKeys(ctx context.Context, filter wasmwiz.APIKeyFilter) ([]*wasmwiz.APIKey, wasmwiz.ListTotal, error) {
	if s.FindAPIKeysFn == nil {
		return nil, wasmwiz.ListTotal{}, unset("APIKeyService.FindAPIKeys")
	}
	return s.FindAPIKeysFn(ctx, filter)
}

// RevokeAPIKey calls RevokeAPIKeyFn.
func (s *APIKeyService) RevokeAPIKey(ctx context.Context, id int64) (bool, error) {
	if s.RevokeAPIKeyFn == nil {
		return false, unset("APIKeyService.RevokeAPIKey")
	}
	return s.RevokeAPIKeyFn(ctx, id)
}

// TierService is a wasmwiz.TierService.
type TierService struct {
	FindTierFn  func(ctx context.Context, name string) (*wasmwiz.Tier, error)
	ListTiersFn func(ctx context.Context) ([]*wasmwiz.Tier, error)
	PutTierFn   func(ctx context.Context, t *wasmwiz.Tier) error
}

var _ wasmwiz.TierService = (*TierService)(nil)

// FindTier calls FindTierFn.
func (s *TierService) FindTier(ctx context.Context, name string) (*wasmwiz.Tier, error) {
	if s.FindTierFn == nil {
		return nil, unset("TierService.FindTier")
	}
	return s.FindTierFn(ctx, name)
}

// ListTiers calls ListTiersFn.
func (s *TierService) ListTiers(ctx context.Context) ([]*wasmwiz.Tier, error) {
	if s.ListTiersFn == nil {
		return nil, unset("TierService.ListTiers")
	}
	return s.ListTiersFn(ctx)
}

// PutTier calls PutTierFn.
func (s *TierService) PutTier(ctx context.Context, t *wasmwiz.Tier) error {
	if s.PutTierFn == nil {
		return unset("TierService.PutTier")
	}
	return s.PutTierFn(ctx, t)
}

// ModuleService is a wasmwiz.ModuleService.
type ModuleService struct {
	CreateModuleFn   func(ctx context.Context, m *wasmwiz.Module) error
	StoredModulesFn  func(ctx context.Context) (wasmwiz.StoredModules, error)
	FindModuleByIDFn func(ctx context.Context, id string) (*wasmwiz.Module, error)
	FindModuleWasmFn func(ctx context.Context, id string) (*wasmwiz.Module, error)
	FindModulesFn    func(ctx context.Context, filter wasmwiz.ModuleFilter) ([]*wasmwiz.Module, wasmwiz.ListTotal, error)
	UpdateModuleFn   func(ctx context.Context, id string, upd wasmwiz.ModuleUpdate) (*wasmwiz.Module, bool, error)
	DeleteModuleFn   func(ctx context.Context, id string) error
}

var _ wasmwiz.ModuleService = (*ModuleService)(nil)

// CreateModule calls CreateModuleFn.
func (s *ModuleService) CreateModule(ctx context.Context, m *wasmwiz.Module) error {
	if s.CreateModuleFn == nil {
		return unset("ModuleService.CreateModule")
	}
	return s.CreateModuleFn(ctx, m)
}

// StoredModules calls StoredModulesFn.
func (s *ModuleService) StoredModules(ctx context.Context) (wasmwiz.StoredModules, error) {
	if s.StoredModulesFn == nil {
		return wasmwiz.StoredModules{}, unset("ModuleService.StoredModules")
	}
	return s.StoredModulesFn(ctx)
}

// FindModuleByID calls FindModuleByIDFn.
func (s *ModuleService) FindModuleByID(ctx context.Context, id string) (*wasmwiz.Module, error) {
	if s.FindModuleByIDFn == nil {
		return nil, unset("ModuleService.FindModuleByID")
	}
	return s.FindModuleByIDFn(ctx, id)
}

// FindModuleWasm calls FindModuleWasmFn.
func (s *ModuleService) FindModuleWasm(ctx context.Context, id string) (*wasmwiz.Module, error) {
	if s.FindModuleWasmFn == nil {
		return nil, unset("ModuleService.FindModuleWasm")
	}
	return s.FindModuleWasmFn(ctx, id)
}

// FindModules calls FindModulesFn.
func (s *ModuleService) FindModules(ctx context.Context, filter wasmwiz.ModuleFilter) ([]*wasmwiz.Module, wasmwiz.ListTotal, error) {
	if s.FindModulesFn == nil {
		return nil, wasmwiz.ListTotal{}, unset("ModuleService.FindModules")
	}
	return s.FindModulesFn(ctx, filter)
}

// UpdateModule calls UpdateModuleFn.
func (s *ModuleService) UpdateModule(ctx context.Context, id string, upd wasmwiz.ModuleUpdate) (*wasmwiz.Module, bool, error) {
	if s.UpdateModuleFn == nil {
		return nil, false, unset("ModuleService.UpdateModule")
	}
	return s.UpdateModuleFn(ctx, id, upd)
}

// DeleteModule calls DeleteModuleFn.
func (s *ModuleService) DeleteModule(ctx context.Context, id string) error {
	if s.DeleteModuleFn == nil {
		return unset("ModuleService.DeleteModule")
	}
	return s.DeleteModuleFn(ctx, id)
}

// RunService is a wasmwiz.RunService.
type RunService struct {
	CreateRunsFn       func(ctx context.Context, runs []*wasmwiz.UsageRecord) error
	FindRunByIDFn      func(ctx context.Context, id string) (*wasmwiz.UsageRecord, error)
	FindRunsFn         func(ctx context.Context, filter wasmwiz.RunFilter) ([]*wasmwiz.UsageRecord, wasmwiz.ListTotal, error)
	UsageFn            func(ctx context.Context, now time.Time) (*wasmwiz.Usage, error)
	StatsFn            func(ctx context.Context, now time.Time) (*wasmwiz.Stats, error)
	DeleteRunsBeforeFn func(ctx context.Context, t time.Time, tier string, batch int) (int, error)
	DailyRunsFn        func(ctx context.Context, now time.Time, days int) ([]wasmwiz.DailyRuns, error)
	StoredRunBytesFn   func(ctx context.Context, userID int64) (int64, error)
}

// StoredRunBytes calls StoredRunBytesFn.
func (s *RunService) StoredRunBytes(ctx context.Context, userID int64) (int64, error) {
	if s.StoredRunBytesFn == nil {
		return 0, unset("RunService.StoredRunBytes")
	}
	return s.StoredRunBytesFn(ctx, userID)
}

// DailyRuns calls DailyRunsFn.
func (s *RunService) DailyRuns(ctx context.Context, now time.Time, days int) ([]wasmwiz.DailyRuns, error) {
	if s.DailyRunsFn == nil {
		return nil, unset("RunService.DailyRuns")
	}
	return s.DailyRunsFn(ctx, now, days)
}

var _ wasmwiz.RunService = (*RunService)(nil)

// CreateRuns calls CreateRunsFn.
func (s *RunService) CreateRuns(ctx context.Context, runs []*wasmwiz.UsageRecord) error {
	if s.CreateRunsFn == nil {
		return unset("RunService.CreateRuns")
	}
	return s.CreateRunsFn(ctx, runs)
}

// FindRunByID calls FindRunByIDFn.
func (s *RunService) FindRunByID(ctx context.Context, id string) (*wasmwiz.UsageRecord, error) {
	if s.FindRunByIDFn == nil {
		return nil, unset("RunService.FindRunByID")
	}
	return s.FindRunByIDFn(ctx, id)
}

// FindRuns calls FindRunsFn.
func (s *RunService) FindRuns(ctx context.Context, filter wasmwiz.RunFilter) ([]*wasmwiz.UsageRecord, wasmwiz.ListTotal, error) {
	if s.FindRunsFn == nil {
		return nil, wasmwiz.ListTotal{}, unset("RunService.FindRuns")
	}
	return s.FindRunsFn(ctx, filter)
}

// Usage calls UsageFn.
func (s *RunService) Usage(ctx context.Context, now time.Time) (*wasmwiz.Usage, error) {
	if s.UsageFn == nil {
		return nil, unset("RunService.Usage")
	}
	return s.UsageFn(ctx, now)
}

// Stats calls StatsFn.
func (s *RunService) Stats(ctx context.Context, now time.Time) (*wasmwiz.Stats, error) {
	if s.StatsFn == nil {
		return nil, unset("RunService.Stats")
	}
	return s.StatsFn(ctx, now)
}

// DeleteRunsBefore calls DeleteRunsBeforeFn.
func (s *RunService) DeleteRunsBefore(ctx context.Context, t time.Time, tier string, batch int) (int, error) {
	if s.DeleteRunsBeforeFn == nil {
		return 0, unset("RunService.DeleteRunsBefore")
	}
	return s.DeleteRunsBeforeFn(ctx, t, tier, batch)
}

// RateLimiter is a wasmwiz.RateLimiter.
type RateLimiter struct {
	AllowFn   func(ctx context.Context, key string, limits []wasmwiz.RateLimit) (wasmwiz.RateDecision, error)
	AcquireFn func(ctx context.Context, key string, max int, ttl time.Duration) (func(), bool, error)
	// AdmitFn answers Admit. When it is nil and AcquireFn and AllowFn are
	// set, Admit is those two as a limiter does them: a slot, then the
	// quotas, the slot given back when they refuse; the epoch is never
	// stale.
	AdmitFn        func(ctx context.Context, a wasmwiz.Admission) (wasmwiz.Admitted, error)
	PublishEpochFn func(ctx context.Context, e int64) error
	// ReleaseSlotFn answers ReleaseSlot; nil: ReleaseSlot does nothing.
	ReleaseSlotFn func(ctx context.Context, key, set, holder string) error
}

var _ wasmwiz.RateLimiter = (*RateLimiter)(nil)

// Admit calls AdmitFn, or AcquireFn and AllowFn.
func (l *RateLimiter) Admit(ctx context.Context, a wasmwiz.Admission) (wasmwiz.Admitted, error) {
	if l.AdmitFn != nil {
		return l.AdmitFn(ctx, a)
	}
	if l.AcquireFn == nil || l.AllowFn == nil {
		return wasmwiz.Admitted{}, unset("RateLimiter.Admit")
	}
	slots := "concurrency:" + a.Key
	if a.SlotSet != "" {
		slots += ":" + a.SlotSet
	}
	release, ok, err := l.AcquireFn(ctx, slots, a.MaxConcurrent, a.SlotTTL)
	if err != nil {
		return wasmwiz.Admitted{}, err
	}
	if !ok {
		return wasmwiz.Admitted{Concurrency: true}, nil
	}
	if len(a.Quotas) == 0 { // a named set's slot alone
		var once sync.Once
		return wasmwiz.Admitted{Decision: wasmwiz.RateDecision{Allowed: true}, Release: func(bool) { once.Do(release) }}, nil
	}
	d, err := l.AllowFn(ctx, a.Key, a.Quotas)
	if err != nil || !d.Allowed {
		release()
		return wasmwiz.Admitted{Decision: d}, err
	}
	var once sync.Once
	return wasmwiz.Admitted{Decision: d, Release: func(bool) { once.Do(release) }}, nil
}

// PublishCacheEpoch calls PublishEpochFn.
func (l *RateLimiter) PublishCacheEpoch(ctx context.Context, e int64) error {
	if l.PublishEpochFn == nil {
		return unset("RateLimiter.PublishCacheEpoch")
	}
	return l.PublishEpochFn(ctx, e)
}

// ReleaseSlot calls ReleaseSlotFn, when set.
func (l *RateLimiter) ReleaseSlot(ctx context.Context, key, set, holder string) error {
	if l.ReleaseSlotFn == nil {
		return nil
	}
	return l.ReleaseSlotFn(ctx, key, set, holder)
}

// Allow calls AllowFn.
func (l *RateLimiter) Allow(ctx context.Context, key string, limits []wasmwiz.RateLimit) (wasmwiz.RateDecision, error) {
	if l.AllowFn == nil {
		return wasmwiz.RateDecision{}, unset("RateLimiter.Allow")
	}
	return l.AllowFn(ctx, key, limits)
}

// Acquire calls AcquireFn.
func (l *RateLimiter) Acquire(ctx context.Context, key string, max int, ttl time.Duration) (func(), bool, error) {
	if l.AcquireFn == nil {
		return nil, false, unset("RateLimiter.Acquire")
	}
	return l.AcquireFn(ctx, key, max, ttl)
}

// UsageRecorder is a wasmwiz.UsageRecorder that keeps every record, safe for
// concurrent use. RecordFn, when set, is called as well.
type UsageRecorder struct {
	RecordFn func(r *wasmwiz.UsageRecord)

	mu   sync.Mutex
	runs []*wasmwiz.UsageRecord
}

var _ wasmwiz.UsageRecorder = (*UsageRecorder)(nil)

// Record keeps r and calls RecordFn.
func (u *UsageRecorder) Record(r *wasmwiz.UsageRecord) {
	u.mu.Lock()
	u.runs = append(u.runs, r)
	u.mu.Unlock()
	if u.RecordFn != nil {
		u.RecordFn(r)
	}
}

// Runs returns the records so far.
func (u *UsageRecorder) Runs() []*wasmwiz.UsageRecord {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*wasmwiz.UsageRecord(nil), u.runs...)
}

// CacheEpochService is a wasmwiz.CacheEpochService.
type CacheEpochService struct {
	CacheEpochFn func(ctx context.Context) (int64, error)
}

var _ wasmwiz.CacheEpochService = (*CacheEpochService)(nil)

// CacheEpoch calls CacheEpochFn.
func (s *CacheEpochService) CacheEpoch(ctx context.Context) (int64, error) {
	if s.CacheEpochFn == nil {
		return 0, unset("CacheEpochService.CacheEpoch")
	}
	return s.CacheEpochFn(ctx)
}

// RunQueue is a wasmwiz.RunQueue that counts the jobs it is given and runs
// none of them.
type RunQueue struct {
	Runs, Webhooks atomic.Int64
}

var _ wasmwiz.RunQueue = (*RunQueue)(nil)

// EnqueueRun counts a run's job.
func (q *RunQueue) EnqueueRun(ctx context.Context, tx any, id string, rank int) error {
	q.Runs.Add(1)
	return nil
}

// EnqueueWebhooks counts the webhooks' deliveries.
func (q *RunQueue) EnqueueWebhooks(ctx context.Context, tx any, hooks []wasmwiz.Webhook) error {
	q.Webhooks.Add(int64(len(hooks)))
	return nil
}
