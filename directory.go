package wasmwiz

import (
	"context"
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"
)

// CacheEpochService reads a database's cache epoch.
type CacheEpochService interface {
	// CacheEpoch returns the cache epoch: a number, at least 1, that grows
	// in the same transaction as every change to what the execute path
	// caches (Directory): an API key revoked or deleted, a user's tier, role
	// or disabled flag changed or a user deleted, a tier created, changed or
	// deleted, a stored module deleted or its name, owner or visibility
	// changed. Nothing else moves it: not a write that changes none of
	// these (a value set to what it was, a row that is not there or not the
	// caller's, a revoked key deleted). It needs no caller. EUNAVAILABLE
	// when the database does not answer.
	CacheEpoch(ctx context.Context) (int64, error)
}

// Directory defaults.
const (
	// DefaultFallbackMaxAge is how long a cached entry is trusted while the
	// limiter decides from its fallback (Redis down), when nothing can tell
	// this replica that another one changed something.
	DefaultFallbackMaxAge = time.Second
	// DefaultKeyRefreshAge is the age after which a cached API key is read
	// again in the background, which keeps its last_used_at within a minute.
	DefaultKeyRefreshAge = time.Minute
	// DefaultDirectoryEntries bounds each of the Directory's maps.
	DefaultDirectoryEntries = 100_000
)

// Directory caches, per replica, what the execute path reads from the
// database on every request: an API key with its user and the user's tier,
// a stored module's owner, visibility, name, digest and size (never its
// bytes), and tiers by name. Its promise is that a cached entry cannot be
// stale past one request:
//
//   - Every entry is read under the cache epoch this replica knows
//     (Observe), and only while that epoch is still the one known when the
//     read began; a new epoch empties the cache.
//   - Executor.Execute hands the epoch of what it used to RateLimiter.Admit,
//     whose answer (the same Redis script that takes the slot and the quota)
//     says whether the epoch is still current. The database's epoch grows
//     in the transaction of every change that matters (CacheEpochService),
//     and writers publish it (RateLimiter.PublishCacheEpoch) before they
//     answer, so the next request of every replica sees a stale entry as
//     stale, reads the database and is admitted on what it read.
//   - The cache only says yes. A refusal that rests on cached data (a module
//     not visible, a body or module over a cached limit) is checked against
//     the database before it is answered.
//   - While the limiter decides from its fallback (Redis down) no replica
//     can tell another one what changed: entries older than FallbackMaxAge
//     are read again.
//
// A zero Directory with its services set is ready; it is safe for
// concurrent use. Nothing is cached until an epoch is known.
type Directory struct {
	Keys    APIKeyService
	Modules ModuleService
	Tiers   TierService

	// FallbackMaxAge: see DefaultFallbackMaxAge. MaxEntries bounds each map
	// (when full it is emptied); 0 means DefaultDirectoryEntries.
	FallbackMaxAge time.Duration
	MaxEntries     int
	// Now returns the current time; nil uses time.Now.
	Now func() time.Time

	epoch    atomic.Int64 // the cache epoch known; 0: none, cache nothing
	fallback atomic.Bool  // the last admission was decided by the fallback

	mu      sync.RWMutex
	keys    map[[sha256.Size]byte]*keyEntry // by the key's SHA-256
	modules map[string]*moduleEntry         // by module id
	tiers   map[string]*tierEntry           // by name

	hits, misses, stale atomic.Uint64
}

// cacheTag says where data the execute path used came from: a cache entry
// read under epoch at loaded, or (epoch 0) the store, for this request.
type cacheTag struct {
	epoch  int64
	loaded time.Time
}

// merge returns the tag of data from both: the older epoch and load.
func (t cacheTag) merge(o cacheTag) cacheTag {
	if o.epoch == 0 {
		return t
	}
	if t.epoch == 0 {
		return o
	}
	if o.epoch < t.epoch {
		t.epoch = o.epoch
	}
	if o.loaded.Before(t.loaded) {
		t.loaded = o.loaded
	}
	return t
}

func (t cacheTag) cached() bool { return t.epoch != 0 }

type keyEntry struct {
	user       User // TierLimits points to tier
	tier       *Tier
	key        APIKey
	loaded     time.Time
	refreshing atomic.Bool
}

type moduleEntry struct {
	module Module // without Wasm and Inspection
	loaded time.Time
}

type tierEntry struct {
	tier   Tier
	loaded time.Time
}

// DirectoryStats count the Directory's lookups since it was made.
type DirectoryStats struct {
	Hits   uint64 // answered from the cache
	Misses uint64 // read from the database
	Stale  uint64 // admissions that found cached data stale (and read it again)
}

// Stats returns the lookups so far.
func (d *Directory) Stats() DirectoryStats {
	return DirectoryStats{Hits: d.hits.Load(), Misses: d.misses.Load(), Stale: d.stale.Load()}
}

func (d *Directory) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d *Directory) fallbackMaxAge() time.Duration {
	if d.FallbackMaxAge > 0 {
		return d.FallbackMaxAge
	}
	return DefaultFallbackMaxAge
}

func (d *Directory) maxEntries() int {
	if d.MaxEntries > 0 {
		return d.MaxEntries
	}
	return DefaultDirectoryEntries
}

// Epoch returns the cache epoch the Directory knows, 0 for none.
func (d *Directory) Epoch() int64 { return d.epoch.Load() }

// Observe tells the Directory the cache epoch a limiter answered with, and
// whether its fallback decided. A new epoch empties the cache: everything
// in it was read under another one.
func (d *Directory) Observe(epoch int64, fallback bool) {
	d.fallback.Store(fallback)
	if d.epoch.Load() == epoch {
		return
	}
	d.mu.Lock()
	d.epoch.Store(epoch)
	d.keys, d.modules, d.tiers = nil, nil, nil
	d.mu.Unlock()
}

// fresh reports whether an entry loaded at loaded may be used now.
func (d *Directory) fresh(loaded, now time.Time) bool {
	return !d.fallback.Load() || now.Sub(loaded) <= d.fallbackMaxAge()
}

// store runs put under the lock when the epoch is still snap, the one known
// before the data was read: data read before a change must not be filed
// under the epoch that change brought.
func (d *Directory) store(snap int64, put func()) {
	if snap == 0 {
		return
	}
	d.mu.Lock()
	if d.epoch.Load() == snap {
		put()
	}
	d.mu.Unlock()
}

// cachedEntry reads an entry (get) and the cache's epoch under the read
// lock.
func cachedEntry[E any](d *Directory, get func() E) (E, int64) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return get(), d.epoch.Load()
}

func putBounded[K comparable, V any](m *map[K]V, max int, k K, v V) {
	if *m == nil || len(*m) >= max {
		// Bounded memory: emptying costs only reads of the database.
		*m = make(map[K]V)
	}
	(*m)[k] = v
}

// credential is what the request's context carries about how its caller
// was authenticated, so that the Executor can read it again when the cache
// turns out stale. The plaintext lives as long as the request, as it does in
// the request's headers anyway; the cache itself keeps only digests.
type credential struct {
	plaintext string
	tag       cacheTag
}

type credentialKey struct{}

func credentialFrom(ctx context.Context) *credential {
	c, _ := ctx.Value(credentialKey{}).(*credential)
	return c
}

// Authenticate finds the user and key of a plaintext API key and returns a
// context carrying both (NewContextWithUser, NewContextWithAPIKey), with
// the user's tier in User.TierLimits. With cached false, or on a miss, it
// asks Keys.Authenticate (the database) and files the answer; with cached
// true an entry of the current epoch answers instead, and the request's
// admission must confirm it: only the execute routes, which are admitted
// by Executor.Execute, may ask for it. Errors are those of
// Keys.Authenticate: a key the cache does not know is always read.
func (d *Directory) Authenticate(ctx context.Context, plaintext string, cached bool) (context.Context, error) {
	digest := sha256.Sum256([]byte(plaintext))
	now := d.now()
	if cached {
		e, epoch := cachedEntry(d, func() *keyEntry { return d.keys[digest] })
		if e != nil && e.key.Active(now) && d.fresh(e.loaded, now) {
			d.hits.Add(1)
			if now.Sub(e.loaded) >= DefaultKeyRefreshAge && e.refreshing.CompareAndSwap(false, true) {
				go d.refreshKey(context.WithoutCancel(ctx), plaintext)
			}
			return d.withCaller(ctx, e, &credential{plaintext: plaintext, tag: cacheTag{epoch, e.loaded}}), nil
		}
	}
	d.misses.Add(1)
	u, k, err := d.loadKey(ctx, plaintext, digest, now)
	if err != nil {
		return ctx, err
	}
	ctx = NewContextWithAPIKey(NewContextWithUser(ctx, u), k)
	return context.WithValue(ctx, credentialKey{}, &credential{plaintext: plaintext}), nil
}

// refreshKey reads a cached key again, off the request path.
func (d *Directory) refreshKey(ctx context.Context, plaintext string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	digest := sha256.Sum256([]byte(plaintext))
	if _, _, err := d.loadKey(ctx, plaintext, digest, d.now()); err != nil {
		// Revoked, or the database is away: the entry goes; the next
		// request reads it again and hears why.
		d.mu.Lock()
		delete(d.keys, digest)
		d.mu.Unlock()
	}
}

// loadKey reads a key from the store and files it.
func (d *Directory) loadKey(ctx context.Context, plaintext string, digest [sha256.Size]byte, now time.Time) (*User, *APIKey, error) {
	snap := d.epoch.Load()
	u, k, err := d.Keys.Authenticate(ctx, plaintext)
	if err != nil {
		return nil, nil, err
	}
	if u == nil || k == nil || u.Disabled {
		return nil, nil, Errorf(EUNAUTHORIZED, "invalid API key")
	}
	if t := u.TierLimits; t != nil && t.Name == u.Tier {
		e := &keyEntry{user: *u, key: *k, loaded: now}
		tc := *t
		e.tier = &tc
		e.user.TierLimits = e.tier
		d.store(snap, func() { putBounded(&d.keys, d.maxEntries(), digest, e) })
	}
	return u, k, nil
}

// withCaller returns ctx carrying copies of a cached entry's user, tier and
// key: callers may change what they get.
func (d *Directory) withCaller(ctx context.Context, e *keyEntry, cred *credential) context.Context {
	u, k, t := e.user, e.key, *e.tier
	u.TierLimits = &t
	ctx = NewContextWithAPIKey(NewContextWithUser(ctx, &u), &k)
	return context.WithValue(ctx, credentialKey{}, cred)
}

// reauthenticate reads the caller of ctx again from the store, when it came
// from the cache, and returns the context with the fresh user and key.
func (d *Directory) reauthenticate(ctx context.Context) (context.Context, error) {
	cred := credentialFrom(ctx)
	if cred == nil || !cred.tag.cached() {
		return ctx, nil
	}
	return d.Authenticate(ctx, cred.plaintext, false)
}

// Module returns the stored module id, without its bytes or inspection, if
// the caller in ctx may run it (its owner, an admin, or anyone when it is
// public). A cached entry answers yes only; a module the cache does not
// show to this caller is asked of Modules, which has the last word. The tag
// says which it was. Errors: those of ModuleService.FindModuleByID.
func (d *Directory) module(ctx context.Context, id string, cached bool) (*Module, cacheTag, error) {
	now := d.now()
	if cached {
		e, epoch := cachedEntry(d, func() *moduleEntry { return d.modules[id] })
		if e != nil && d.fresh(e.loaded, now) && visible(UserFromContext(ctx), &e.module) {
			d.hits.Add(1)
			m := e.module
			return &m, cacheTag{epoch, e.loaded}, nil
		}
	}
	d.misses.Add(1)
	snap := d.epoch.Load()
	m, err := d.Modules.FindModuleByID(ctx, id)
	if err != nil {
		return nil, cacheTag{}, err
	}
	e := &moduleEntry{module: Module{ID: m.ID, OwnerID: m.OwnerID, Name: m.Name, SHA256: m.SHA256,
		SizeBytes: m.SizeBytes, Public: m.Public, CreatedAt: m.CreatedAt}, loaded: now}
	d.store(snap, func() { putBounded(&d.modules, d.maxEntries(), id, e) })
	out := e.module
	return &out, cacheTag{}, nil
}

// visible reports whether u may see (and run) m: the rule of ModuleService.
func visible(u *User, m *Module) bool {
	return u != nil && (m.Public || m.OwnerID == u.ID || u.IsAdmin())
}

// tier returns the named tier (as the system reads it), from the cache
// when cached and current.
func (d *Directory) tier(ctx context.Context, name string, cached bool) (*Tier, cacheTag, error) {
	now := d.now()
	if cached {
		e, epoch := cachedEntry(d, func() *tierEntry { return d.tiers[name] })
		if e != nil && d.fresh(e.loaded, now) {
			d.hits.Add(1)
			t := e.tier
			return &t, cacheTag{epoch, e.loaded}, nil
		}
	}
	d.misses.Add(1)
	snap := d.epoch.Load()
	t, err := d.Tiers.FindTier(SystemContext(ctx), name)
	if err != nil {
		return nil, cacheTag{}, err
	}
	e := &tierEntry{tier: *t, loaded: now}
	d.store(snap, func() { putBounded(&d.tiers, d.maxEntries(), name, e) })
	out := *t
	return &out, cacheTag{}, nil
}
