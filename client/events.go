package client

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/wasmwiz/wasmwiz/api"
)

// maxEventBytes bounds one server-sent event the client reads.
const maxEventBytes = 64 << 20

// ExecuteFollow runs a module as Execute does, asking for a Server-Sent
// Events answer: onOutput gets the guest's stdout and stderr as the server
// sends them, while the guest runs, and the result comes at the end (its
// Stdout and Stderr hold all the output). A stored module runs when
// req.ModuleID is set. Errors: those of Execute.
func (c *Client) ExecuteFollow(ctx context.Context, req *ExecuteRequest, onOutput func(stderr bool, p []byte)) (*api.Result, error) {
	stored := req != nil && req.ModuleID != "" && len(req.Wasm) == 0
	r, err := executeBody(req, stored)
	if err != nil {
		return nil, err
	}
	r.method, r.path = http.MethodPost, "/api/v1/execute"
	if stored {
		r.path = "/api/v1/modules/" + url.PathEscape(req.ModuleID) + "/execute"
	}
	return follow[api.Result](ctx, c, r, onOutput)
}

// follow sends r for an event stream and reads it to its end: onOutput
// (when not nil) gets the stdout and stderr events as they come, and the
// result event's data is the T returned (the Result of a streamed execute,
// the Run of a run's events). An error event, which a streamed execute
// sends when it fails, is the failure it carries.
func follow[T any](ctx context.Context, c *Client, r request, onOutput func(stderr bool, p []byte)) (*T, error) {
	var out *T
	err := c.events(ctx, r, func(kind string, data []byte) (bool, error) {
		switch kind {
		case api.EventStdout, api.EventStderr:
			var o api.OutputEvent
			if err := json.Unmarshal(data, &o); err != nil {
				return true, errorf(api.EINTERNAL, err, "unreadable output event: %v", err)
			}
			if onOutput != nil {
				onOutput(kind == api.EventStderr, o.Data)
			}
		case api.EventError:
			var e api.ErrorDetail
			_ = json.Unmarshal(data, &e)
			if e.Code == "" {
				e.Code = api.EINTERNAL
			}
			return true, &Error{Code: e.Code, Message: e.Message}
		case api.EventResult:
			out = new(T)
			if err := json.Unmarshal(data, out); err != nil {
				return true, errorf(api.EINTERNAL, err, "unreadable result event: %v", err)
			}
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// events sends r asking for text/event-stream and calls fn with each
// event until fn says it is done. A non-2xx answer is the usual error.
func (c *Client) events(ctx context.Context, r request, fn func(kind string, data []byte) (bool, error)) error {
	r.accept = "text/event-stream"
	resp, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
		a := &answer{status: resp.StatusCode, header: resp.Header, body: body}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return errorf(api.EINTERNAL, nil, "the server answered %s, not an event stream", resp.Header.Get("Content-Type"))
		}
		return responseError(a)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxEventBytes)
	var kind string
	var data []byte
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if kind != "" {
				done, err := fn(kind, data)
				if done || err != nil {
					return err
				}
			}
			kind, data = "", nil
		case strings.HasPrefix(line, "event: "):
			kind = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[len("data: "):]...)
		}
	}
	if err := sc.Err(); err != nil {
		return errorf(api.EUNAVAILABLE, err, "reading the event stream: %v", err)
	}
	return errorf(api.EUNAVAILABLE, nil, "the event stream ended before the result")
}
