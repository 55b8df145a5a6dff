package deploytest

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// get follows keys (map keys, or list indexes as numbers) into a decoded
// document and returns nil when any step is missing.
func get(v any, keys ...string) any {
	for _, k := range keys {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// k8sObject returns the one document of kind and name in file.
func k8sObject(t *testing.T, file, kind, name string) map[string]any {
	t.Helper()
	docs := deployDocs(t, file)
	for _, d := range docs {
		if get(d.Doc, "kind") == kind && get(d.Doc, "metadata", "name") == name {
			return d.Doc.(map[string]any)
		}
	}
	t.Fatalf("%s: no %s %s", file, kind, name)
	return nil
}

var quantity = regexp.MustCompile(`^([0-9]+)(Ki|Mi|Gi|Ti)?$`)

// k8sBytes parses a Kubernetes memory quantity with a binary suffix.
func k8sBytes(t *testing.T, s string) int64 {
	t.Helper()
	m := quantity.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("memory quantity %q: want a number with Ki, Mi, Gi or Ti", s)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	shift := map[string]uint{"": 0, "Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40}[m[2]]
	return n << shift
}

// configBytes parses a WASMWIZ size such as 512MiB (the forms used here).
func configBytes(t *testing.T, s string) int64 {
	t.Helper()
	m := regexp.MustCompile(`^([0-9]+)(KiB|MiB|GiB)$`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("size %q: this test reads only KiB, MiB and GiB", s)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n << map[string]uint{"KiB": 10, "MiB": 20, "GiB": 30}[m[2]]
}

func toInt(t *testing.T, v any) int64 {
	t.Helper()
	switch x := v.(type) {
	case int:
		return int64(x)
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			t.Fatalf("%q is not a number", x)
		}
		return n
	}
	t.Fatalf("%v (%T) is not a number", v, v)
	return 0
}

// kubeLayout is what the checks need of one kustomize layout: the config
// the pods get and the Deployment's figures (base values, overlay patches
// applied by hand: this test runs without kustomize; .ci/run builds both).
type kubeLayout struct {
	name        string
	config      map[string]string
	memoryLimit string
	grace       int64
}

func kubeLayouts(t *testing.T) []kubeLayout {
	t.Helper()
	base := kubeLayout{name: "base", config: map[string]string{}}
	for k, v := range get(k8sObject(t, "deploy/k8s/base/configmap.yaml", "ConfigMap", "wasmwiz-config"), "data").(map[string]any) {
		base.config[k] = fmt.Sprint(v)
	}
	dep := k8sObject(t, "deploy/k8s/base/deployment.yaml", "Deployment", "wasmwiz")
	base.memoryLimit = fmt.Sprint(get(dep, "spec", "template", "spec", "containers", "0", "resources", "limits", "memory"))
	base.grace = toInt(t, get(dep, "spec", "template", "spec", "terminationGracePeriodSeconds"))

	prod := kubeLayout{name: "production", config: map[string]string{}, memoryLimit: base.memoryLimit, grace: base.grace}
	for k, v := range base.config {
		prod.config[k] = v
	}
	for k, v := range get(k8sObject(t, "deploy/k8s/overlays/production/config-patch.yaml", "ConfigMap", "wasmwiz-config"), "data").(map[string]any) {
		prod.config[k] = fmt.Sprint(v)
	}
	pd := k8sObject(t, "deploy/k8s/overlays/production/deployment-patch.yaml", "Deployment", "wasmwiz")
	if v := get(pd, "spec", "template", "spec", "containers", "0", "resources", "limits", "memory"); v != nil {
		prod.memoryLimit = fmt.Sprint(v)
	}
	if v := get(pd, "spec", "template", "spec", "terminationGracePeriodSeconds"); v != nil {
		prod.grace = toInt(t, v)
	}
	return []kubeLayout{base, prod}
}

// The layouts' figures agree with each other: the memory limit holds every
// run slot at the memory cap, the pod's grace period outlasts the server's
// drain delay and shutdown grace together, and (where runs may be long) the
// shutdown grace outlasts the longest run.
func TestKubernetesSizing(t *testing.T) {
	t.Parallel()
	for _, l := range kubeLayouts(t) {
		t.Run(l.name, func(t *testing.T) {
			t.Parallel()
			runs := toInt(t, l.config["WASMWIZ_MAX_CONCURRENT_RUNS"])
			perRun := configBytes(t, l.config["WASMWIZ_MAX_MEMORY"])
			if limit := k8sBytes(t, l.memoryLimit); limit < runs*perRun+256<<20 {
				t.Errorf("memory limit %s < %d runs x %s + 256Mi", l.memoryLimit, runs, l.config["WASMWIZ_MAX_MEMORY"])
			}
			grace, err := time.ParseDuration(l.config["WASMWIZ_SHUTDOWN_GRACE"])
			if err != nil {
				t.Fatal(err)
			}
			drain, err := time.ParseDuration(l.config["WASMWIZ_DRAIN_DELAY"])
			if err != nil {
				t.Fatalf("WASMWIZ_DRAIN_DELAY: %v", err)
			}
			if time.Duration(l.grace)*time.Second <= drain+grace {
				t.Errorf("terminationGracePeriodSeconds %d is not longer than WASMWIZ_DRAIN_DELAY %s + WASMWIZ_SHUTDOWN_GRACE %s", l.grace, drain, grace)
			}
			maxRun, err := time.ParseDuration(l.config["WASMWIZ_MAX_TIMEOUT"])
			if err != nil {
				t.Fatal(err)
			}
			if grace < maxRun {
				t.Errorf("WASMWIZ_SHUTDOWN_GRACE %s is shorter than WASMWIZ_MAX_TIMEOUT %s: a rollout cuts runs short", grace, maxRun)
			}
		})
	}
}

// The base has every object issue 5 point 6 lists, and every container runs
// a real subcommand, non-root, on a read-only root filesystem, without
// privilege escalation or capabilities, with a memory limit, and with
// writable volumes where WASMWIZ_DATA_DIR and /tmp point.
func TestKubernetesBase(t *testing.T) {
	t.Parallel()
	kust := deployDocs(t, "deploy/k8s/base/kustomization.yaml")
	kinds := map[string]bool{}
	for _, r := range get(kust[0].Doc, "resources").([]any) {
		docs := deployDocs(t, "deploy/k8s/base/"+r.(string))
		for _, d := range docs {
			kinds[fmt.Sprint(get(d.Doc, "kind"))] = true
		}
	}
	for _, k := range []string{"Namespace", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
		"ConfigMap", "Job", "NetworkPolicy"} {
		if !kinds[k] {
			t.Errorf("deploy/k8s/base builds no %s", k)
		}
	}
	k8sObject(t, "deploy/k8s/base/secret.template.yaml", "Secret", "wasmwiz-secrets")

	cmds := commandNames(t)
	dataDir := fmt.Sprint(get(k8sObject(t, "deploy/k8s/base/configmap.yaml", "ConfigMap", "wasmwiz-config"), "data", "WASMWIZ_DATA_DIR"))
	uid := dockerUID(t)
	pods := []struct {
		name    string
		spec    any
		command string
	}{
		{"Deployment wasmwiz", get(k8sObject(t, "deploy/k8s/base/deployment.yaml", "Deployment", "wasmwiz"), "spec", "template", "spec"), "serve"},
		{"Job wasmwiz-migrate", get(k8sObject(t, "deploy/k8s/base/migrate-job.yaml", "Job", "wasmwiz-migrate"), "spec", "template", "spec"), "migrate"},
	}
	for _, p := range pods {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			if get(p.spec, "securityContext", "runAsNonRoot") != true {
				t.Error("pod securityContext.runAsNonRoot is not true")
			}
			if u := get(p.spec, "securityContext", "runAsUser"); fmt.Sprint(u) != uid {
				t.Errorf("pod runs as uid %v, the image's USER is %s", u, uid)
			}
			c := get(p.spec, "containers", "0")
			args, _ := get(c, "args").([]any)
			if len(args) == 0 || fmt.Sprint(args[0]) != p.command || !cmds[p.command] {
				t.Errorf("container args %v: want the subcommand %q, registered in cmd/wasmwiz/main.go", args, p.command)
			}
			sc := get(c, "securityContext")
			for _, want := range []struct {
				key  string
				want any
			}{{"runAsNonRoot", true}, {"readOnlyRootFilesystem", true}, {"allowPrivilegeEscalation", false}} {
				if got := get(sc, want.key); got != want.want {
					t.Errorf("container securityContext.%s = %v, want %v", want.key, got, want.want)
				}
			}
			if drop := fmt.Sprint(get(sc, "capabilities", "drop")); drop != "[ALL]" {
				t.Errorf("container drops capabilities %s, want [ALL]", drop)
			}
			if get(c, "resources", "limits", "memory") == nil {
				t.Error("container has no memory limit")
			}
			mounts := map[string]bool{}
			volumeMounts, _ := get(c, "volumeMounts").([]any)
			for _, m := range volumeMounts {
				mounts[fmt.Sprint(get(m, "mountPath"))] = true
			}
			for _, dir := range []string{dataDir, "/tmp"} {
				if !mounts[dir] {
					t.Errorf("nothing writable is mounted at %s (read-only root filesystem)", dir)
				}
			}
		})
	}

	dep := k8sObject(t, "deploy/k8s/base/deployment.yaml", "Deployment", "wasmwiz")
	c := get(dep, "spec", "template", "spec", "containers", "0")
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
		if got := get(c, probe, "httpGet", "path"); got != path {
			t.Errorf("%s asks %v, want %s", probe, got, path)
		}
	}
}

// dockerUID is the numeric uid of the image's final USER.
func dockerUID(t *testing.T) string {
	t.Helper()
	stages := parseDockerfile(t)
	uid := ""
	for _, in := range stages[len(stages)-1].Instr {
		if in.Cmd == "USER" {
			uid, _, _ = strings.Cut(strings.Fields(in.Args)[0], ":")
		}
	}
	return uid
}
