package wasmwiz

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
	"unicode/utf8"
)

// RecordDetailBytes bounds what a run's record keeps of the strings of its
// call (args, env names and params, together) and, apart, of its results:
// a request may carry a MiB of args and a function may return thousands of
// values, and records are kept for the tier's retention and listed a
// thousand at a time. The run gets and returns them whole; the record keeps
// the leading ones that fit, the last of them cut, and says so
// (DetailTruncated).
const RecordDetailBytes = 8 << 10

// maxRecordMessageBytes bounds a record's Message (the error of a failed
// run, whose text may quote what the caller sent).
const maxRecordMessageBytes = 8 << 10

// describe fills the parts of r's record that come from the request as it
// goes to the engine: what it was asked to run, under which limits. Env values and stdin are not
// kept: only the env names and stdin's size and digest; args, env names and
// params up to RecordDetailBytes.
func (r *UsageRecord) describe(req *RunRequest) {
	budget := RecordDetailBytes
	var cutArgs, cutEnv, cutParams bool
	r.Name = req.Name
	r.Args, cutArgs = keepStrings(req.Args, &budget)
	r.EnvNames, cutEnv = keepStrings(EnvNames(req.Env), &budget)
	r.Function = req.Function
	r.Params, cutParams = keepStrings(req.Params, &budget)
	if len(r.Args) == 0 { // as before a budget: no args, no slice
		r.Args = nil
	}
	if len(r.Params) == 0 {
		r.Params = nil
	}
	r.DetailTruncated = r.DetailTruncated || cutArgs || cutEnv || cutParams
	r.StdinBytes = int64(len(req.Stdin))
	if len(req.Stdin) > 0 {
		sum := sha256.Sum256(req.Stdin)
		r.StdinSHA256 = hex.EncodeToString(sum[:])
	}
	r.Limits = LimitsMap(req.Limits)
}

// setResult fills r from what the guest did, keeping at most maxStored bytes
// of stdout and of stderr (maxStored < 0: all). The record's truncation
// flags say whether the run or the cap cut a stream.
func (r *UsageRecord) setResult(res *Result, maxStored int64) {
	r.State = RunDone
	r.Status = res.Status
	r.ExitCode = res.ExitCode
	r.DurationMS = float64(res.Duration.Microseconds()) / 1000
	r.MemoryPeakBytes = res.MemoryPeakBytes
	r.OutputBytes = int64(len(res.Stdout) + len(res.Stderr))
	if r.ModuleSHA256 == "" {
		r.ModuleSHA256 = res.Module.SHA256
	}
	r.CPUMS = float64(res.CPUTime.Microseconds()) / 1000
	r.CompileMS = float64(res.CompileDuration.Microseconds()) / 1000
	r.Trap = res.Trap
	r.Results = nil
	budget := RecordDetailBytes
	for _, v := range res.Results {
		rv := RunValue{Type: v.Type, Value: v.String()}
		if budget -= len(rv.Type) + len(rv.Value); budget < 0 {
			r.DetailTruncated = true
			break
		}
		r.Results = append(r.Results, rv)
	}
	var cut bool
	r.Stdout, cut = CapOutput(res.Stdout, maxStored)
	r.StdoutTruncated = res.StdoutTruncated || cut
	r.Stderr, cut = CapOutput(res.Stderr, maxStored)
	r.StderrTruncated = res.StderrTruncated || cut
	if r.StartedAt == nil {
		started := r.CreatedAt
		r.StartedAt = &started
	}
	finished := r.StartedAt.Add(res.Duration).UTC()
	if r.FinishedAt == nil || r.FinishedAt.Before(finished) {
		r.FinishedAt = &finished
	}
}

// setFailed marks r as failed by the server with err's code and message.
func (r *UsageRecord) setFailed(err error, at time.Time) {
	r.State = RunFailed
	r.ErrorCode = ErrorCode(err)
	r.Message = CutText(ErrorMessage(err), maxRecordMessageBytes)
	at = at.UTC()
	r.FinishedAt = &at
}

// keepStrings returns a copy of the leading strings of ss that fit in
// *budget bytes, the one that crosses it cut at a UTF-8 boundary, takes
// what it kept from *budget, and reports whether it left anything out. A
// nil ss stays nil.
func keepStrings(ss []string, budget *int) ([]string, bool) {
	if ss == nil {
		return nil, false
	}
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		if len(s) > *budget {
			if cut := cutUTF8(s, *budget); cut != "" {
				out = append(out, cut)
			}
			*budget = 0
			return out, true
		}
		*budget -= len(s)
		out = append(out, s)
	}
	return out, false
}

// CutText returns s, or its first bytes up to a UTF-8 boundary with a note
// of the cut when s is longer than max.
func CutText(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return cutUTF8(s, max) + fmt.Sprintf("… (cut at %d of %d bytes)", max, len(s))
}

// cutUTF8 returns the longest prefix of s of at most n bytes that does not
// split a UTF-8 sequence.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
