package deploytest

import (
	"fmt"
	"strings"
	"testing"
)

// The dashboard and Grafana's provisioning fit together: every panel asks
// the provisioned data source by its uid, panel ids are unique, and the
// dashboards provider reads the directory compose mounts the dashboards at.
func TestGrafanaProvisioning(t *testing.T) {
	t.Parallel()
	ds := deployDocs(t, "deploy/monitoring/grafana/provisioning/datasources/prometheus.yml")
	uid := fmt.Sprint(get(ds[0].Doc, "datasources", "0", "uid"))
	if get(ds[0].Doc, "datasources", "0", "type") != "prometheus" {
		t.Errorf("data source %s is not of type prometheus", uid)
	}
	prov := deployDocs(t, "deploy/monitoring/grafana/provisioning/dashboards/wasmwiz.yml")
	dashDir := fmt.Sprint(get(prov[0].Doc, "providers", "0", "options", "path"))
	compose := deployDocs(t, "docker-compose.yml")
	mounted := false
	vols, _ := get(compose[0].Doc, "services", "grafana", "volumes").([]any)
	for _, v := range vols {
		parts := strings.Split(fmt.Sprint(v), ":")
		if len(parts) >= 2 && parts[1] == dashDir && strings.HasSuffix(parts[0], "deploy/monitoring/grafana/dashboards") {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("compose does not mount deploy/monitoring/grafana/dashboards at %s, where the provider reads", dashDir)
	}

	for _, d := range dashboards(t) {
		f := d.File
		ids := map[string]bool{}
		targets := 0
		for i, p := range get(d.Doc, "panels").([]any) {
			id := fmt.Sprint(get(p, "id"))
			if ids[id] {
				t.Errorf("%s: panel %d repeats id %s", f, i, id)
			}
			ids[id] = true
			if get(p, "type") == "row" {
				continue
			}
			if got := fmt.Sprint(get(p, "datasource", "uid")); got != uid {
				t.Errorf("%s: panel %q uses data source %s, provisioned is %s", f, get(p, "title"), got, uid)
			}
			ts, _ := get(p, "targets").([]any)
			if len(ts) == 0 {
				t.Errorf("%s: panel %q has no query", f, get(p, "title"))
			}
			targets += len(ts)
		}
		if targets == 0 {
			t.Errorf("%s has no queries", f)
		}
	}
}
