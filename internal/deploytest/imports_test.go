package deploytest

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/wasmwiz/wasmwiz"

// The import rules of DESIGN §2, checked on what `go list` reports of the
// non-test code of every package. Every internal package must be classified
// here: a new one fails this test until someone decides what it is.
var (
	// adapters wrap one dependency or responsibility. They import the root
	// package, the standard library, third-party modules and the support
	// packages their entry in adapterEdges allows; never another adapter.
	adapters = []string{
		"internal/engine", "internal/worker", "internal/sqlite", "internal/postgres",
		"internal/redis", "internal/inmem", "internal/http", "internal/usage", "internal/queue",
	}
	// support packages are small libraries adapters share; each lists who
	// may import it. So does api, the public wire types, which the client
	// and the HTTP layer share.
	adapterEdges = map[string][]string{
		"internal/sqlite":   {"internal/migration"},
		"internal/postgres": {"internal/migration"},
		"internal/engine":   {"internal/wasifs", "internal/runfiles"}, // the guest's descriptors are part of the engine's WASI
		"internal/worker":   {"internal/runfiles"},                    // the pool makes a run's directory as the engine does
		"internal/http":     {"api"},                                  // the API's answers are the public wire types
	}
	support = []string{"internal/migration", "internal/wasifs", "internal/runfiles"}
	// testSupport packages are imported by tests only.
	testSupport = []string{
		"internal/storetest", "internal/limitertest", "internal/mock", "internal/tcpproxy",
		"internal/postgres/pgtest", "internal/sqlite/sqlitetest", "internal/deploytest", "internal/metrictest",
		"internal/hostiletest", "internal/hostiletest/cmd/hostile", "internal/testenv", "internal/wasisuite", "internal/testmodule",
	}
)

type listedPackage struct {
	ImportPath string
	Imports    []string
	Standard   bool
}

func listPackages(t *testing.T) map[string]listedPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = repoPath(t, ".")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]listedPackage{}
	dec := json.NewDecoder(&out)
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")] = p
	}
	return pkgs
}

// isStandard reports whether an import path is the standard library's: no
// dot in its first element.
func isStandard(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

func TestImportRules(t *testing.T) {
	t.Parallel()
	pkgs := listPackages(t)
	kind := map[string]string{"": "root", "api": "api", "client": "client", "cmd/wasmwiz": "program"}
	for _, p := range adapters {
		kind[p] = "adapter"
	}
	for _, p := range support {
		kind[p] = "support"
	}
	for _, p := range testSupport {
		kind[p] = "test support"
	}
	var names []string
	for name := range pkgs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		k, ok := kind[name]
		if !ok {
			t.Errorf("package %s is not classified in internal/deploytest/imports_test.go (adapter, support or test support?)", name)
			continue
		}
		for _, imp := range pkgs[name].Imports {
			if isStandard(imp) {
				continue
			}
			local, own := strings.CutPrefix(imp, module)
			local = strings.TrimPrefix(local, "/")
			switch {
			case k == "root":
				t.Errorf("the root package imports %s: it may import the standard library only", imp)
			case k == "api" && (!own || local != ""):
				// api may import the root package, which is itself standard
				// library only (above), so that a wire type the domain
				// already declares is the domain's type (an alias) and a
				// codec the domain already has is called, not copied. Its
				// users still get no third-party module through it.
				t.Errorf("api imports %s: the public wire types import the standard library and the root package only", imp)
			case !own:
				if k == "client" {
					t.Errorf("client imports %s: it may import the standard library and api only", imp)
				}
			case k == "client" && local != "api":
				// Its methods speak api's types only: importing the root
				// package here would let the server's API (HashAPIKey,
				// NewContextWithUser…) into the client's. It still links
				// the root package through api (standard library only).
				t.Errorf("client imports %s: it may import the standard library and api only", imp)
			case local == "":
			case kind[local] == "test support" && k != "test support":
				t.Errorf("%s imports the test-support package %s outside its tests", name, local)
			case k == "adapter" || k == "support":
				if !contains(adapterEdges[name], local) {
					t.Errorf("%s (%s) imports %s: add the edge to adapterEdges with a reason, or meet through an interface", name, k, local)
				}
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
