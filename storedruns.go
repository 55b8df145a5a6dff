package wasmwiz

import (
	"context"
	"sync"
	"time"
)

// Stored run output (the tier's max_stored_run_bytes).
//
// What a new run's record may keep is decided here, once per run
// (Executor.outputKeep): the tier's max_stored_output_bytes for each of its
// stdout, stderr and files, lowered to what is left of the user's
// max_stored_run_bytes, never below 0. When nothing is left, a synchronous
// run still runs and answers its caller in full, but its record keeps no
// output (its truncation flags and message say so); a background run is
// refused before it is queued or charged to the rate quotas (ETOOLARGE),
// since its record is all it leaves.
//
// The bytes a user keeps are read from the store (RunService.StoredRunBytes,
// one indexed row) at most once per StoredRunsMaxAge per user on each
// replica, and the output each run of this replica keeps is added to what
// was read. So the quota can be passed by what the replica cannot know yet:
// the runs of other replicas within StoredRunsMaxAge of the read, the
// records still in the usage writer's buffer when it was read (up to its
// flush interval), and the runs deciding at the same moment. Each of these
// keeps at most its per-run cap, 3 × max_stored_output_bytes (stdout,
// stderr and files), so a user keeps at most max_stored_run_bytes plus that
// cap times those runs: on the free tier, at 10 runs a minute, a handful of
// runs of 64KiB a stream. Retention then frees what is over.
//
// Anonymous runs (auth off, development) are counted to user 0 against the
// anonymous tier's quota, all callers together: an open server still
// bounds the disk its records take, and once full their records keep no
// output while the runs still answer in full.

// DefaultStoredRunsMaxAge is how long a replica trusts the stored run
// output of a user it read.
const DefaultStoredRunsMaxAge = 5 * time.Second

// storedRunsEntries bounds the users a replica remembers; when full, the
// entries past their age go, and all of them when none is.
const storedRunsEntries = 100_000

// storedRunCache remembers, per user, the run output the store counted at
// a moment and what this replica's runs kept since.
type storedRunCache struct {
	mu    sync.Mutex
	users map[int64]storedRunEntry
}

type storedRunEntry struct {
	bytes   int64
	read    time.Time
	unknown bool // the read failed: not tried again before the entry's age
}

// storedRunsReadTimeout bounds a read of the count: it happens before a
// synchronous run's answer, and a store that does not answer must not hold
// the answers of runs (their records wait in the usage writer anyway).
const storedRunsReadTimeout = time.Second

// outputKeep is what a new run's record may keep of its output.
type outputKeep struct {
	each   int64 // of stdout, of stderr and of files; < 0: no cap
	quota  bool  // each is lowered by max_stored_run_bytes
	full   bool  // nothing is left of max_stored_run_bytes
	stored int64 // the user's stored run output, as known
	tier   *Tier
}

// storedRunsMaxAge returns StoredRunsMaxAge or its default.
func (e *Executor) storedRunsMaxAge() time.Duration {
	if e.StoredRunsMaxAge > 0 {
		return e.StoredRunsMaxAge
	}
	return DefaultStoredRunsMaxAge
}

// storedRunCounter returns what counts stored run output: StoredRuns, else
// Runs; nil when neither is set (the quota is not enforced).
func (e *Executor) storedRunCounter() interface {
	StoredRunBytes(ctx context.Context, userID int64) (int64, error)
} {
	if e.StoredRuns != nil {
		return e.StoredRuns
	}
	if e.Runs != nil {
		return e.Runs
	}
	return nil
}

// outputKeep decides what a new run of user under tier t may keep (see
// above). When the count cannot be read (no counter, or the store does not
// answer within a second; a failed read is not tried again for
// StoredRunsMaxAge), the tier's per-run cap applies alone: a run is not
// refused for want of a figure, and its record cannot be written either
// while the store is away.
func (e *Executor) outputKeep(ctx context.Context, user int64, t *Tier) outputKeep {
	k := outputKeep{each: t.MaxStoredOutputBytes, tier: t}
	stored, ok := e.storedRunBytes(ctx, user)
	if !ok {
		return k
	}
	k.stored = stored
	left := max(t.MaxStoredRunBytes-stored, 0)
	k.full = left == 0
	if k.each < 0 || left < k.each {
		k.each, k.quota = left, true
	}
	return k
}

// storedRunBytes returns the run output user keeps, as the store counted
// it at most storedRunsMaxAge ago plus what this replica's runs kept since.
func (e *Executor) storedRunBytes(ctx context.Context, user int64) (int64, bool) {
	counter := e.storedRunCounter()
	if counter == nil {
		return 0, false
	}
	now := e.now()
	c := &e.storedRuns
	c.mu.Lock()
	ent, ok := c.users[user]
	c.mu.Unlock()
	if ok && !now.Before(ent.read) && now.Sub(ent.read) < e.storedRunsMaxAge() {
		return ent.bytes, !ent.unknown
	}
	rctx, cancel := context.WithTimeout(SystemContext(context.WithoutCancel(ctx)), storedRunsReadTimeout)
	defer cancel()
	n, err := counter.StoredRunBytes(rctx, user)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.users == nil {
		c.users = map[int64]storedRunEntry{}
	}
	if _, ok := c.users[user]; !ok && len(c.users) >= storedRunsEntries {
		for id, old := range c.users {
			if now.Sub(old.read) >= e.storedRunsMaxAge() {
				delete(c.users, id)
			}
		}
		if len(c.users) >= storedRunsEntries {
			clear(c.users)
		}
	}
	c.users[user] = storedRunEntry{bytes: n, read: now, unknown: err != nil}
	return n, err == nil
}

// chargeStoredRun adds the output a record of user keeps to what this
// replica knows the user keeps, until it reads the store again.
func (e *Executor) chargeStoredRun(user int64, rec *UsageRecord) {
	n := int64(len(rec.Stdout) + len(rec.Stderr))
	for _, f := range rec.Files {
		n += int64(len(f.Data))
	}
	if n == 0 {
		return
	}
	c := &e.storedRuns
	c.mu.Lock()
	defer c.mu.Unlock()
	if ent, ok := c.users[user]; ok && !ent.unknown {
		ent.bytes += n
		c.users[user] = ent
	}
}

// keep applies k to a finished run's record: its output cut to k.each
// (setResult), and, when the quota cut what the tier's cap would have
// kept, a message that says why.
func (k outputKeep) keep(rec *UsageRecord, res *Result) {
	rec.setResult(res, k.each)
	if !k.quota {
		return
	}
	tierCap := k.tier.MaxStoredOutputBytes
	cut := func(got []byte, all []byte) bool { return int64(len(got)) < min(int64(len(all)), tierCap) }
	if cut(rec.Stdout, res.Stdout) || cut(rec.Stderr, res.Stderr) {
		rec.Message = k.message()
	}
}

// noteLiveCut adds the quota's message to the record of a background run
// that ended before its result (cancelled, or its replica stopping), whose
// output kept from its heartbeats the quota cut below the tier's cap.
func (k outputKeep) noteLiveCut(rec *UsageRecord) {
	if !k.quota {
		return
	}
	tierCap := k.tier.MaxStoredOutputBytes
	cut := func(kept []byte, truncated bool) bool {
		return truncated && (tierCap < 0 || int64(len(kept)) < tierCap)
	}
	if cut(rec.Stdout, rec.StdoutTruncated) || cut(rec.Stderr, rec.StderrTruncated) {
		rec.Message += "; " + k.message()
	}
}

// keepFiles keeps a background run's files within k.each, with the same
// message when the quota cut them.
func (k outputKeep) keepFiles(rec *UsageRecord, files []OutputFile) {
	rec.Files = keptFiles(files, k.each)
	if !k.quota || rec.Message != "" {
		return
	}
	tierKept := keptFiles(files, k.tier.MaxStoredOutputBytes)
	for i := range rec.Files {
		if rec.Files[i].Omitted != tierKept[i].Omitted {
			rec.Message = k.message()
			return
		}
	}
}

// message says why a record keeps less output than its tier's cap.
func (k outputKeep) message() string {
	return "output not kept in full: " + k.quotaText() + "; retention frees older run records"
}

// quotaText names the quota and what is stored against it.
func (k outputKeep) quotaText() string {
	return "the " + k.tier.Name + " tier's " + FormatSize(k.tier.MaxStoredRunBytes) +
		" of stored run output (max_stored_run_bytes) has " + roughSize(max(k.tier.MaxStoredRunBytes-k.stored, 0)) +
		" left, " + roughSize(k.stored) + " stored"
}

// refuseBackground returns ETOOLARGE when nothing is left of the quota: a
// background run's record is all it leaves.
func (k outputKeep) refuseBackground() error {
	if !k.full {
		return nil
	}
	return Errorf(ETOOLARGE, "background run refused: your run records keep %s of run output, the %s tier's %s (max_stored_run_bytes) "+
		"is full; retention frees older run records, or run it synchronously (its record keeps no output)",
		roughSize(k.stored), k.tier.Name, FormatSize(k.tier.MaxStoredRunBytes))
}
