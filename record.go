package wasmwiz

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// describe fills the parts of r's record that come from the request as it
// goes to the engine: what it was asked to run, under which limits. Env values and stdin are not
// kept: only the env names and stdin's size and digest.
func (r *UsageRecord) describe(req *RunRequest) {
	r.Name = req.Name
	r.Args = append([]string(nil), req.Args...)
	r.EnvNames = EnvNames(req.Env)
	r.Function = req.Function
	r.Params = append([]string(nil), req.Params...)
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
	for _, v := range res.Results {
		r.Results = append(r.Results, RunValue{Type: v.Type, Value: v.String()})
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
	r.Message = ErrorMessage(err)
	at = at.UTC()
	r.FinishedAt = &at
}
