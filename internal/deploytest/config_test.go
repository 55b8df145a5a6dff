package deploytest

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// envSetting is one WASMWIZ_* variable that a deploy file sets.
type envSetting struct {
	Where string // file and key path
	Name  string
	Value string
}

var envAssign = regexp.MustCompile(`^(WASMWIZ_[A-Z0-9_]+)=(.*)$`)

// envSettings finds every WASMWIZ_* variable a decoded document sets: map
// keys (ConfigMap data, Secret stringData, compose environment maps),
// Kubernetes env entries ({name: …, value: …}) and NAME=value strings
// (compose environment lists).
func envSettings(d deployDoc) []envSetting {
	var out []envSetting
	walk(d.Doc, nil, func(path []string, v any) {
		where := d.File + ":" + strings.Join(path, ".")
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				if strings.HasPrefix(k, "WASMWIZ_") {
					out = append(out, envSetting{where + "." + k, k, fmt.Sprint(val)})
				}
			}
			if name, ok := x["name"].(string); ok && strings.HasPrefix(name, "WASMWIZ_") {
				out = append(out, envSetting{where, name, fmt.Sprint(x["value"])})
			}
		case string:
			if m := envAssign.FindStringSubmatch(x); m != nil {
				out = append(out, envSetting{where, m[1], m[2]})
			}
		}
	})
	return out
}

// Every YAML and JSON file under deploy/ and docker-compose.yml parses.
func TestDeployFilesParse(t *testing.T) {
	t.Parallel()
	files := deployFiles(t)
	if len(files) < 10 {
		t.Fatalf("only %d deploy files found: %v", len(files), files)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			t.Parallel()
			deployDocs(t, f)
		})
	}
}

// Every WASMWIZ_* variable that a deploy file or the Dockerfile sets is one
// that cmd/wasmwiz/config.go reads.
func TestDeployEnvVarsExist(t *testing.T) {
	t.Parallel()
	known := configVarSet(t)
	var all []envSetting
	for _, d := range allDeployDocs(t) {
		all = append(all, envSettings(d)...)
	}
	all = append(all, dockerfileEnv(t)...)
	files := map[string]bool{}
	for _, st := range all {
		files[strings.SplitN(st.Where, ":", 2)[0]] = true
		if _, ok := known[st.Name]; !ok {
			t.Errorf("%s sets %s, which cmd/wasmwiz/config.go does not know", st.Where, st.Name)
		}
	}
	// The files that must set variables do: a parser that found nothing
	// would make this test pass for nothing.
	for _, f := range []string{"deploy/k8s/base/configmap.yaml", "deploy/k8s/base/secret.template.yaml",
		"deploy/k8s/overlays/production/config-patch.yaml", "docker-compose.yml", "Dockerfile"} {
		if !files[f] {
			t.Errorf("found no WASMWIZ_* variable in %s", f)
		}
	}
}

// The configurations the deploy files describe are accepted by the real
// program: `wasmwiz config` loads and validates them (production profile
// included) and exits 0.
func TestDeployConfigIsAccepted(t *testing.T) {
	t.Parallel()
	envOf := func(files ...string) map[string]string {
		env := map[string]string{}
		for _, f := range files {
			docs := deployDocs(t, f)
			for _, d := range docs {
				for _, st := range envSettings(d) {
					env[st.Name] = st.Value
				}
			}
		}
		return env
	}
	composeEnv := func() map[string]string {
		docs := deployDocs(t, "docker-compose.yml")
		env := map[string]string{}
		for k, v := range docs[0].Doc.(map[string]any)["x-wasmwiz-env"].(map[string]any) {
			env[k] = fmt.Sprint(v)
		}
		return env
	}
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"kubernetes base", envOf("deploy/k8s/base/configmap.yaml", "deploy/k8s/base/secret.template.yaml")},
		{"kubernetes production", envOf("deploy/k8s/base/configmap.yaml", "deploy/k8s/base/secret.template.yaml",
			"deploy/k8s/overlays/production/config-patch.yaml")},
		{"compose", composeEnv()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.env["WASMWIZ_PROFILE"] != "production" {
				t.Errorf("WASMWIZ_PROFILE is %q, want production", tt.env["WASMWIZ_PROFILE"])
			}
			code, stdout, stderr := runWasmwiz(t, tt.env, "config")
			if code != 0 {
				t.Fatalf("wasmwiz config refused it (exit %d): %s", code, stderr)
			}
			for name := range tt.env {
				if !strings.Contains(stdout, name+"=") {
					t.Errorf("wasmwiz config does not print %s:\n%s", name, stdout)
				}
			}
		})
	}
}

// Every HTTP path a probe, health check, scrape config or proxy rule names is
// a GET route of internal/http's router.
func TestProbePathsExist(t *testing.T) {
	t.Parallel()
	rs := routes(t)
	type use struct{ where, path string }
	var uses []use
	for _, d := range allDeployDocs(t) {
		walk(d.Doc, nil, func(path []string, v any) {
			s, ok := v.(string)
			if !ok || len(path) == 0 {
				return
			}
			key := path[len(path)-1]
			where := d.File + ":" + strings.Join(path, ".")
			switch {
			case key == "path" && len(path) >= 2 && path[len(path)-2] == "httpGet",
				key == "metrics_path",
				key == "prometheus.io/path":
				uses = append(uses, use{where, s})
			}
		})
	}
	for _, m := range regexp.MustCompile(`location\s+=\s+(/\S*)`).FindAllStringSubmatch(readFile(t, "deploy/compose/nginx.conf"), -1) {
		uses = append(uses, use{"deploy/compose/nginx.conf", m[1]})
	}
	// The image's HEALTHCHECK runs `wasmwiz healthcheck`, which asks the
	// path written in cmd/wasmwiz/healthcheck.go.
	if !packageStrings(t, "cmd/wasmwiz")["/healthz"] {
		t.Error(`cmd/wasmwiz has no "/healthz" string: what does wasmwiz healthcheck ask?`)
	}
	uses = append(uses, use{"cmd/wasmwiz/healthcheck.go", "/healthz"})

	var paths []string
	for _, u := range uses {
		paths = append(paths, u.path)
		if !rs["GET "+u.path] {
			t.Errorf("%s uses GET %s, which internal/http does not route", u.where, u.path)
		}
	}
	for _, want := range []string{"/healthz", "/readyz", "/metrics"} {
		if !slices.Contains(paths, want) {
			t.Errorf("no deploy file uses %s (found %v)", want, paths)
		}
	}
}
