package deploytest

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
)

func addrPort(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	return port
}

// docker-compose.yml describes what issue 5 point 5 asks and agrees with
// itself and with the code: two replicas running a real subcommand after a
// migration, the proxy and Prometheus on the ports WASMWIZ_ADDR and
// WASMWIZ_METRICS_ADDR set, and every mounted file present.
func TestCompose(t *testing.T) {
	t.Parallel()
	docs := deployDocs(t, "docker-compose.yml")
	c := docs[0].Doc
	for _, svc := range []string{"postgres", "redis", "migrate", "wasmwiz", "proxy", "prometheus", "grafana"} {
		if get(c, "services", svc) == nil {
			t.Errorf("no service %s", svc)
		}
	}
	cmds := commandNames(t)
	for svc, want := range map[string]string{"migrate": "migrate", "wasmwiz": "serve"} {
		cmd := fmt.Sprint(get(c, "services", svc, "command", "0"))
		if cmd != want || !cmds[cmd] {
			t.Errorf("service %s runs %q, want the subcommand %q", svc, cmd, want)
		}
	}
	if n := toInt(t, get(c, "services", "wasmwiz", "deploy", "replicas")); n < 2 {
		t.Errorf("wasmwiz runs %d replicas, want at least 2 (limits shared between them)", n)
	}
	if get(c, "services", "wasmwiz", "depends_on", "migrate", "condition") != "service_completed_successfully" {
		t.Error("the replicas do not wait for the migration to finish")
	}

	env := get(c, "x-wasmwiz-env").(map[string]any)
	apiPort := addrPort(t, fmt.Sprint(env["WASMWIZ_ADDR"]))
	metricsPort := addrPort(t, fmt.Sprint(env["WASMWIZ_METRICS_ADDR"]))
	nginx := readFile(t, "deploy/compose/nginx.conf")
	if !regexp.MustCompile(`server wasmwiz:` + apiPort + `\b`).MatchString(nginx) {
		t.Errorf("nginx.conf does not proxy to wasmwiz:%s (WASMWIZ_ADDR)", apiPort)
	}
	prom := deployDocs(t, "deploy/monitoring/prometheus.yml")
	found := false
	for _, sc := range get(prom[0].Doc, "scrape_configs").([]any) {
		if get(sc, "job_name") == "wasmwiz" {
			found = true
			if p := fmt.Sprint(get(sc, "dns_sd_configs", "0", "port")); p != metricsPort {
				t.Errorf("Prometheus scrapes port %s, WASMWIZ_METRICS_ADDR is port %s", p, metricsPort)
			}
		}
	}
	if !found {
		t.Error("prometheus.yml has no wasmwiz job")
	}
	proxyIP := fmt.Sprint(get(c, "services", "proxy", "networks", "backend", "ipv4_address"))
	if trusted := fmt.Sprint(env["WASMWIZ_TRUSTED_PROXIES"]); !strings.HasPrefix(trusted, proxyIP+"/") {
		t.Errorf("WASMWIZ_TRUSTED_PROXIES %s is not the proxy's address %s", trusted, proxyIP)
	}

	// Every bind-mounted file or directory exists.
	for name, svc := range get(c, "services").(map[string]any) {
		vols, _ := get(svc, "volumes").([]any)
		for _, v := range vols {
			src, _, _ := strings.Cut(fmt.Sprint(v), ":")
			if !strings.HasPrefix(src, "./") {
				continue // a named volume
			}
			if _, err := os.Stat(repoPath(t, src)); err != nil {
				t.Errorf("service %s mounts %s: %v", name, src, err)
			}
		}
	}
}

// The Kubernetes Service and probes point at container ports that exist,
// and those are the ports WASMWIZ_ADDR and WASMWIZ_METRICS_ADDR listen on.
func TestKubernetesPorts(t *testing.T) {
	t.Parallel()
	cfg := get(k8sObject(t, "deploy/k8s/base/configmap.yaml", "ConfigMap", "wasmwiz-config"), "data")
	want := map[string]string{
		"http":    addrPort(t, fmt.Sprint(get(cfg, "WASMWIZ_ADDR"))),
		"metrics": addrPort(t, fmt.Sprint(get(cfg, "WASMWIZ_METRICS_ADDR"))),
	}
	dep := k8sObject(t, "deploy/k8s/base/deployment.yaml", "Deployment", "wasmwiz")
	c := get(dep, "spec", "template", "spec", "containers", "0")
	ports := map[string]string{}
	for _, p := range get(c, "ports").([]any) {
		ports[fmt.Sprint(get(p, "name"))] = fmt.Sprint(get(p, "containerPort"))
	}
	for name, port := range want {
		if ports[name] != port {
			t.Errorf("container port %s is %q, the config listens on %s", name, ports[name], port)
		}
	}
	if a := fmt.Sprint(get(dep, "spec", "template", "metadata", "annotations", "prometheus.io/port")); a != want["metrics"] {
		t.Errorf("prometheus.io/port %s, WASMWIZ_METRICS_ADDR is port %s", a, want["metrics"])
	}
	svc := k8sObject(t, "deploy/k8s/base/service.yaml", "Service", "wasmwiz")
	for _, p := range get(svc, "spec", "ports").([]any) {
		if target := fmt.Sprint(get(p, "targetPort")); ports[target] == "" {
			t.Errorf("Service targets port %q, which the container does not name", target)
		}
	}
	for _, probe := range []string{"startupProbe", "livenessProbe", "readinessProbe"} {
		if port := fmt.Sprint(get(c, probe, "httpGet", "port")); ports[port] == "" && port != want["http"] {
			t.Errorf("%s asks port %q, which the container does not have", probe, port)
		}
	}
	np := k8sObject(t, "deploy/k8s/base/networkpolicy.yaml", "NetworkPolicy", "wasmwiz")
	allowed := map[string]bool{}
	for _, rule := range get(np, "spec", "ingress").([]any) {
		rp, _ := get(rule, "ports").([]any)
		for _, p := range rp {
			allowed[fmt.Sprint(get(p, "port"))] = true
		}
	}
	for name, port := range want {
		if !allowed[port] {
			t.Errorf("the NetworkPolicy lets nothing reach the %s port %s", name, port)
		}
	}
}
