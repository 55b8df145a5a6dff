package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/wasmwiz/wasmwiz/api"
)

// ExecuteAsync starts req as a background run (docs/API.md, "Background
// runs") and returns at once with its id, queued: the run outlives this
// call and the replica that took it. A stored module goes as req.ModuleID.
// The run takes files (req.Files, Archive, Mount) as Execute does, and the
// files its Outputs match come back in its record's Files. callbackURL,
// when not "", receives the record when the run ends, signed with the
// caller's webhook secret (RotateWebhookSecret). Follow the run with
// FollowRun, read it with GetRun, stop it with CancelRun. Errors: those of
// Execute; EUNAUTHORIZED without a key; EINVALID for a callback URL without
// a webhook secret; ERATELIMIT for the tier's quotas or too many runs
// queued or running.
func (c *Client) ExecuteAsync(ctx context.Context, req *ExecuteRequest, callbackURL string) (*api.Accepted, error) {
	if req == nil {
		return nil, errorf(api.EINVALID, nil, "no request")
	}
	async := *req
	async.async, async.callbackURL = true, callbackURL
	r, err := executeBody(&async, false)
	if err != nil {
		return nil, err
	}
	r.method, r.path = http.MethodPost, "/api/v1/execute"
	a, err := c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	if a.status != http.StatusAccepted {
		return nil, errorf(api.EINTERNAL, nil, "the server answered %d to a background run, not 202: it runs no background runs?", a.status)
	}
	var out api.Accepted
	return result(&out, decode(a, &out))
}

// FollowRun follows one of the caller's runs (GET
// /api/v1/runs/{id}/events) until it ends: onOutput gets its stdout and
// stderr as the server sends them, and the final record comes at the end,
// with its output and files as GetRun returns them. Errors: ENOTFOUND, EUNAUTHORIZED,
// EUNAVAILABLE when the stream ends without the record.
func (c *Client) FollowRun(ctx context.Context, id string, onOutput func(stderr bool, p []byte)) (*api.Run, error) {
	r := request{method: http.MethodGet, path: "/api/v1/runs/" + url.PathEscape(id) + "/events"}
	return follow[api.Run](ctx, c, r, onOutput)
}

// CancelRun cancels one of the caller's background runs (POST
// /api/v1/runs/{id}/cancel): a queued run at once, a running one by
// stopping its guest; it returns the record as it stands then. Errors:
// ENOTFOUND, ECONFLICT for a run that already ended.
func (c *Client) CancelRun(ctx context.Context, id string) (*api.Run, error) {
	var out api.Run
	return result(&out, c.call(ctx, http.MethodPost, "/api/v1/runs/"+url.PathEscape(id)+"/cancel", nil, nil, &out))
}

// RotateWebhookSecret makes the caller's webhook secret, replacing the one
// before (POST /api/v1/webhook-secret): shown this once, it signs every
// callback of the caller's background runs.
func (c *Client) RotateWebhookSecret(ctx context.Context) (*api.WebhookSecret, error) {
	var out api.WebhookSecret
	return result(&out, c.call(ctx, http.MethodPost, "/api/v1/webhook-secret", nil, nil, &out))
}
