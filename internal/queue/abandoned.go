package queue

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// Runs whose job River gave up. A run job's last attempt fails the run it
// could not start (Runner.AbandonQueued) and completes; River discards the
// job only when that failed too (the store unavailable through the last
// attempt), or when its rescue of a job stuck running finds the attempts
// spent. Such a run would stay queued for good, holding a place of its
// owner's max_concurrent and its inputs: FailAbandonedRuns ends it.

// abandonedBatch bounds the discarded run jobs one FailAbandonedRuns call
// handles.
const abandonedBatch = 100

// errJobGivenUp is the cause given to the runs FailAbandonedRuns fails.
var errJobGivenUp = errors.New("the queue gave up the run's job before it could start the run")

// FailAbandonedRuns fails the runs of the run jobs River discarded, at most
// abandonedBatch of them (Runner.AbandonQueued, which leaves a run that is
// not queued any more as it is), and deletes those jobs, so that each is
// handled once. A job whose run could not be failed (the store unavailable)
// is kept for the next call. It returns how many jobs it handled. Every
// replica may call it: a run is failed once, a job deleted once.
func (q *Queue) FailAbandonedRuns(ctx context.Context) (int, error) {
	res, err := q.client.JobList(ctx, river.NewJobListParams().Kinds(RunArgs{}.Kind()).
		States(rivertype.JobStateDiscarded).First(abandonedBatch))
	if err != nil {
		return 0, queueError(err, "list the run jobs given up")
	}
	handled := 0
	var errs []error
	for _, job := range res.Jobs {
		var args RunArgs
		if err := json.Unmarshal(job.EncodedArgs, &args); err != nil || args.RunID == "" {
			// No run to fail: nothing to keep it for.
			q.opts.Logger.Warn("deleting a run job given up whose arguments name no run", "job", job.ID, "err", err)
		} else if err := q.opts.Runner.AbandonQueued(ctx, args.RunID, errJobGivenUp); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := q.client.JobDelete(ctx, job.ID); err != nil && !errors.Is(err, river.ErrNotFound) {
			errs = append(errs, queueError(err, "delete a run job given up"))
			continue
		}
		handled++
	}
	if len(errs) > 0 {
		return handled, errors.Join(errs...)
	}
	return handled, nil
}
