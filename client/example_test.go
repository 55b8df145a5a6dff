package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/api"
	"github.com/wasmwiz/wasmwiz/client"
	"github.com/wasmwiz/wasmwiz/internal/engine"
	wwhttp "github.com/wasmwiz/wasmwiz/internal/http"
	"github.com/wasmwiz/wasmwiz/internal/inmem"
	"github.com/wasmwiz/wasmwiz/internal/sqlite"
	"github.com/wasmwiz/wasmwiz/internal/testmodule"
	"github.com/wasmwiz/wasmwiz/internal/usage"
)

// The examples run against a real WasmWiz API in this process (the engine,
// a SQLite store in a temporary directory, the in-memory limiter). Against
// your server: client.New("http://127.0.0.1:8080", os.Getenv("WASMWIZ_API_KEY")).
var example struct {
	once    sync.Once
	url     string
	key     string
	cleanup []func()
}

// exampleServer starts the API once and returns its URL and an admin key.
func exampleServer() (string, string) {
	example.once.Do(func() {
		ctx := context.Background()
		dir, err := os.MkdirTemp("", "wasmwiz-client-example-")
		if err != nil {
			log.Fatal(err)
		}
		example.cleanup = append(example.cleanup, func() { os.RemoveAll(dir) })
		eng, err := engine.New(ctx, engine.Options{})
		if err != nil {
			log.Fatal(err)
		}
		example.cleanup = append(example.cleanup, func() { _ = eng.Close(ctx) })
		db, err := sqlite.Open(ctx, filepath.Join(dir, "wasmwiz.db"))
		if err != nil {
			log.Fatal(err)
		}
		example.cleanup = append(example.cleanup, func() { _ = db.Close() })
		if err := db.Migrate(ctx); err != nil {
			log.Fatal(err)
		}
		_, key, _, err := db.Bootstrap(ctx, "admin@example.com")
		if err != nil {
			log.Fatal(err)
		}
		logger := slog.New(slog.DiscardHandler)
		uw := usage.New(db, usage.Options{FlushInterval: 20 * time.Millisecond, Logger: logger})
		example.cleanup = append(example.cleanup, func() { _ = uw.Close(ctx) })
		srv, err := wwhttp.NewServer(wwhttp.Options{
			Users: db, Keys: db, Tiers: db, Modules: db, Runs: db,
			Engine: eng, Limiter: inmem.New(inmem.Options{}), Usage: uw, Auth: true, Logger: logger,
		})
		if err != nil {
			log.Fatal(err)
		}
		ts := httptest.NewServer(srv.Handler())
		example.cleanup = append(example.cleanup, ts.Close)
		example.url, example.key = ts.URL, key
	})
	return example.url, example.key
}

func TestMain(m *testing.M) {
	code := m.Run()
	for i := len(example.cleanup) - 1; i >= 0; i-- {
		example.cleanup[i]()
	}
	os.Exit(code)
}

// module reads one of the test modules.
func module(name string) []byte {
	b, err := testmodule.ReadFile(name)
	if err != nil {
		log.Fatal(err)
	}
	return b
}

// Run a module sent with the request: a WASI command gets stdin, args and
// env; its stdout, stderr and exit code come back. A guest's outcome is a
// result, not an error.
func Example() {
	url, key := exampleServer()
	c, err := client.New(url, key)
	if err != nil {
		log.Fatal(err)
	}
	res, err := c.Execute(context.Background(), &client.ExecuteRequest{
		Wasm:  module("args_env.wasm"), // any .wasm file: os.ReadFile("hello.wasm")
		Name:  "greeter.wasm",          // argv[0]
		Args:  []string{"--loud"},
		Env:   map[string]string{"GREETING": "hi"},
		Stdin: []byte("ignored by this module"),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(res.Stdout))
	fmt.Println("status:", res.Status, "exit code:", res.ExitCode)
	// Output:
	// argv[0]=greeter.wasm
	// argv[1]=--loud
	// env GREETING=hi
	// wall_after_2020=1
	// monotonic_ok=1
	// random_differs=1
	// status: ok exit code: 0
}

// Call an exported function of a plain module with numbers.
func ExampleClient_Execute_function() {
	url, key := exampleServer()
	c, _ := client.New(url, key)
	res, err := c.Execute(context.Background(), &client.ExecuteRequest{
		Wasm: module("add.wasm"), Function: "add", Params: []string{"2", "3"},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Results[0].String())
	// Output: 5
}

// Store a module once, then run it by id as often as needed: the server
// keeps its compiled code, and argv[0] is the stored name.
func ExampleClient_CreateModule() {
	ctx := context.Background()
	url, key := exampleServer()
	c, _ := client.New(url, key)
	m, err := c.CreateModule(ctx, client.ModuleUpload{Wasm: module("args_env.wasm"), Name: "stored.wasm"})
	if err != nil {
		log.Fatal(err)
	}
	ex, err := c.ExecuteModule(ctx, m.ID, &client.ExecuteRequest{Args: []string{"one"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(ex.Result.Stdout))
	if err := c.DeleteModule(ctx, m.ID); err != nil {
		log.Fatal(err)
	}
	// Output:
	// argv[0]=stored.wasm
	// argv[1]=one
	// wall_after_2020=1
	// monotonic_ok=1
	// random_differs=1
}

// Make a key for a script, use it, and revoke it: the plaintext is shown
// only in the answer that creates it.
func ExampleClient_CreateKey() {
	ctx := context.Background()
	url, key := exampleServer()
	c, _ := client.New(url, key)
	nk, err := c.CreateKey(ctx, "ci", nil)
	if err != nil {
		log.Fatal(err)
	}
	ci, _ := client.New(url, nk.Secret)
	me, err := ci.Me(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("the new key acts as", me.User.Email)
	if err := c.RevokeKey(ctx, nk.Key.ID); err != nil {
		log.Fatal(err)
	}
	_, err = ci.Me(ctx)
	fmt.Println("after revoking:", client.ErrorCode(err))
	// Output:
	// the new key acts as admin@example.com
	// after revoking: EUNAUTHORIZED
}

// Every failure is a *client.Error: a code (one of the api.E* codes) and a
// message for people, the HTTP status and request id of the answer, and for
// a rate limit when to retry.
func Example_errors() {
	url, key := exampleServer()
	c, _ := client.New(url, key)
	_, err := c.Execute(context.Background(), &client.ExecuteRequest{Wasm: []byte("not wasm")})
	fmt.Println(client.ErrorCode(err))
	var e *client.Error
	if errors.As(err, &e) {
		fmt.Println(e.StatusCode == http.StatusBadRequest)
	}
	switch client.ErrorCode(err) {
	case api.ERATELIMIT, api.EUNAVAILABLE:
		if after, ok := client.RetryAfter(err); ok {
			fmt.Println("retry in", after)
		}
	case api.EINVALID, api.ETOOLARGE:
		// The request is wrong: do not retry it as it is.
	}
	// Output:
	// EINVALID
	// true
}

// The limits of the caller's tier (here the admin's, enterprise), described by the server: a program can
// show them without knowing their names, and a limit the server adds shows
// up here with no change to the client.
func ExampleClient_Me() {
	url, key := exampleServer()
	c, _ := client.New(url, key)
	me, err := c.Me(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	for _, l := range me.Limits {
		if l.Name == "max_memory_bytes" || l.Name == "timeout_ms" {
			fmt.Printf("%s: %s (%s = %d)\n", l.Help, l.Text, l.Name, me.Tier.Limits[l.Name])
		}
	}
	// Output:
	// wall time of a run: 2m0s (timeout_ms = 120000)
	// linear memory of a run: 1GiB (max_memory_bytes = 1073741824)
}
