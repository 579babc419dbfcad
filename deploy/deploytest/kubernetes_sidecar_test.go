package deploytest

import (
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// installedBinary is where the image puts imsproxy (the Dockerfile test
// checks it).
const installedBinary = "/usr/local/bin/imsproxy"

// sidecar returns the sidecar variant's application pod and its imsproxy
// init container.
func sidecar(t *testing.T) (*variant, pod, corev1.Container) {
	t.Helper()
	v := loadVariant(t, sidecarDir)
	if len(v.deployments) != 1 {
		t.Fatalf("the sidecar variant has %d Deployments, want the application's one", len(v.deployments))
	}
	p := v.pods()[0]
	for _, c := range p.spec.InitContainers {
		if proxyContainer(c) {
			return v, p, c
		}
	}
	t.Fatalf("%s: no imsproxy init container (containers: %v)", p.name, containerNames(p.spec.Containers))
	return nil, pod{}, corev1.Container{}
}

func containerNames(cs []corev1.Container) []string {
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return names
}

// TestKubernetes_SidecarIsNative: imsproxy is an init container with
// restartPolicy Always (a native sidecar: started before the application,
// stopped after it), not a second regular container, and its probes run
// `imsproxy health` inside the container — startup and readiness on
// /readyz, liveness on /healthz (-live).
func TestKubernetes_SidecarIsNative(t *testing.T) {
	t.Parallel()
	_, p, c := sidecar(t)
	if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("init container %s: restartPolicy %v, want Always (a native sidecar)", c.Name, c.RestartPolicy)
	}
	if slices.ContainsFunc(p.spec.Containers, proxyContainer) {
		t.Error("imsproxy is also a regular container: it would start alongside the application and stop with no ordering")
	}
	if len(p.spec.Containers) == 0 {
		t.Error("the pod has no application container")
	}
	probes := []struct {
		name  string
		probe *corev1.Probe
		want  []string
	}{
		{"startupProbe", c.StartupProbe, []string{installedBinary, "health"}},
		{"readinessProbe", c.ReadinessProbe, []string{installedBinary, "health"}},
		{"livenessProbe", c.LivenessProbe, []string{installedBinary, "health", "-live"}},
	}
	for _, pr := range probes {
		switch {
		case pr.probe == nil:
			t.Errorf("%s: none", pr.name)
		case pr.probe.Exec == nil:
			// The kubelet sends HTTP and TCP probes to the pod's IP; the
			// admin listener is on 127.0.0.1.
			t.Errorf("%s: %s, want an exec probe: the admin listener is on loopback, out of the kubelet's reach", pr.name, oneLine(pr.probe.ProbeHandler))
		case !slices.Equal(pr.probe.Exec.Command, pr.want):
			t.Errorf("%s runs %q, want %q", pr.name, pr.probe.Exec.Command, pr.want)
		}
	}
}

// TestKubernetes_SidecarListensAwayFromTheApplicationsPorts: containers of
// a pod share one network namespace. The sidecar sets every listener
// explicitly, on loopback, on ports that neither the application's
// containers nor the usual neighbours (Tomcat's 8080, Prometheus's 9090,
// imsproxy's own defaults) use.
func TestKubernetes_SidecarListensAwayFromTheApplicationsPorts(t *testing.T) {
	t.Parallel()
	v, p, c := sidecar(t)
	env := v.containerEnv(t, c)
	taken := map[string]string{"8080": "Tomcat's default", "9090": "Prometheus's default", "8081": "imsproxy's aem default"}
	for _, other := range p.spec.Containers {
		for _, port := range other.Ports {
			taken[itoa32(port.ContainerPort)] = "container " + other.Name
		}
	}
	vars := []string{"IMSPROXY_ADMIN_LISTEN"}
	for _, r := range routeNames(env) {
		vars = append(vars, "IMSPROXY_"+strings.ToUpper(r)+"_LISTEN")
	}
	ports := map[string]string{}
	for _, name := range vars {
		addr, ok := env[name]
		if !ok {
			t.Errorf("%s is not set: its default port may clash with the application's", name)
			continue
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || net.ParseIP(host) == nil || !net.ParseIP(host).IsLoopback() {
			t.Errorf("%s=%s: want a loopback address (only the pod's own containers call the sidecar)", name, addr)
			continue
		}
		if who, clash := taken[port]; clash {
			t.Errorf("%s=%s: port %s is %s", name, addr, port, who)
		}
		if other, dup := ports[port]; dup {
			t.Errorf("%s and %s both use port %s", name, other, port)
		}
		ports[port] = name
	}
}

// TestKubernetes_SidecarRunsAsWired runs the sidecar as the kubelet would:
// the image's binary with the container's environment, its Secret volume a
// directory of the example's keys (real values from the emulator), its
// audit volume an empty directory, Adobe replaced by the emulator. The
// proxy becomes ready, the three probe commands pass with that same
// environment, and the application's base URLs reach Stock and AEM.
func TestKubernetes_SidecarRunsAsWired(t *testing.T) {
	t.Parallel()
	v, p, c := sidecar(t)
	adobe := startEmulator(t)
	creds := adobe.credentials(t)
	serviceJSON, err := creds.ServiceCredentialsJSON(adobe.URL)
	if err != nil {
		t.Fatal(err)
	}
	env := v.materialise(t, p, c, t.TempDir(), map[string]string{
		"stock-client-id":              creds.ClientID,
		"stock-client-secret":          creds.ClientSecret,
		"aem-service-credentials.json": string(serviceJSON),
		"IMSPROXY_STOCK_CLIENT_ID":     creds.ClientID,
	})
	env["IMSPROXY_IMS_URL"] = adobe.URL
	env["IMSPROXY_STOCK_UPSTREAM"] = adobe.URL
	env["IMSPROXY_STOCK_DOWNLOAD_UPSTREAM"] = adobe.URL
	env["IMSPROXY_AEM_UPSTREAM"] = adobe.URL

	proxy := startProxy(t, env)
	proxy.waitReady(t)
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
	}{{"startupProbe", c.StartupProbe}, {"readinessProbe", c.ReadinessProbe}, {"livenessProbe", c.LivenessProbe}} {
		if pr.probe == nil || pr.probe.Exec == nil || len(pr.probe.Exec.Command) == 0 || pr.probe.Exec.Command[0] != installedBinary {
			t.Errorf("%s: not an exec probe of %s", pr.name, installedBinary)
			continue
		}
		if code, out := runWithEnv(proxy.env, bin.imsproxy, pr.probe.Exec.Command[1:]...); code != 0 {
			t.Errorf("%s %q against the ready sidecar: exit %d, want 0\n%s", pr.name, pr.probe.Exec.Command, code, out)
		}
	}

	// The application's view: its base URLs, with the sidecar's ports.
	app := p.spec.Containers[0]
	for _, e := range app.Env {
		if !strings.HasPrefix(e.Value, "http://127.0.0.1:") {
			continue
		}
		route := ""
		for _, r := range routeNames(env) {
			if strings.HasSuffix(e.Value, listenPort(v.containerEnv(t, c)["IMSPROXY_"+strings.ToUpper(r)+"_LISTEN"])) {
				route = r
			}
		}
		if route == "" {
			t.Errorf("application variable %s=%s points at no route of the sidecar", e.Name, e.Value)
			continue
		}
		path := map[string]string{"stock": searchPath, "aem": "/api/assets.json"}[route]
		if status, body := httpGet(t, proxy.routeURL(route)+path); status != http.StatusOK {
			t.Errorf("%s (route %s) through the sidecar: %d %s", e.Name, route, status, body)
		}
	}
}

// listenPort is ":port" of a listen address.
func listenPort(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return ":" + port
}
