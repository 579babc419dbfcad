package deploytest

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/imsproxy/imsproxy/config"
)

// shared returns the shared-service variant and its imsproxy Deployment
// and container.
func shared(t *testing.T) (*variant, appsv1.Deployment, corev1.Container) {
	t.Helper()
	v := loadVariant(t, sharedDir)
	for _, d := range v.deployments {
		if cs := proxyContainers(d.Spec.Template.Spec); len(cs) == 1 {
			return v, d, cs[0]
		}
	}
	t.Fatal("the shared variant has no Deployment with one imsproxy container")
	return nil, appsv1.Deployment{}, corev1.Container{}
}

// containerPort resolves a port given by name or number to a port of c.
func containerPort(c corev1.Container, p intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp, true
		}
	}
	return corev1.ContainerPort{}, false
}

// TestKubernetes_SharedServiceIsWired: at least two replicas; the Service
// selects the proxy's pods and each of its ports reaches a container port
// that a listener of the proxy uses; the PodDisruptionBudget selects
// exactly those pods and lets a drain evict one; the grace period covers
// the shutdown delay and the drain; a listener off loopback has what
// imsproxy requires of it.
func TestKubernetes_SharedServiceIsWired(t *testing.T) {
	t.Parallel()
	v, d, c := shared(t)
	podLabels := d.Spec.Template.Labels
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("Deployment %s: replicas %v, want at least 2", d.Name, d.Spec.Replicas)
	}
	env := v.containerEnv(t, c)

	// Container ports are the ports the proxy listens on.
	listening := map[int32]string{}
	for k, addr := range env {
		if strings.HasSuffix(k, "_LISTEN") {
			_, port, err := net.SplitHostPort(addr)
			if err != nil {
				t.Errorf("%s=%s: %v", k, addr, err)
				continue
			}
			listening[int32(mustAtoi(t, port))] = k
		}
	}
	for _, cp := range c.Ports {
		if _, ok := listening[cp.ContainerPort]; !ok {
			t.Errorf("container port %s %d: no listener of imsproxy there (%v)", cp.Name, cp.ContainerPort, listening)
		}
	}

	var svc *corev1.Service
	for i := range v.services {
		if selects(metav1Selector(v.services[i].Spec.Selector), podLabels) {
			svc = &v.services[i]
		}
	}
	if svc == nil {
		t.Fatal("no Service selects the proxy's pods")
	}
	for _, sp := range svc.Spec.Ports {
		if _, ok := containerPort(c, sp.TargetPort); !ok {
			t.Errorf("Service %s port %s: targetPort %s is no port of the proxy container", svc.Name, sp.Name, sp.TargetPort.String())
		}
	}

	if len(v.pdbs) != 1 {
		t.Fatalf("%d PodDisruptionBudgets, want 1", len(v.pdbs))
	}
	pdb := v.pdbs[0]
	if !selects(pdb.Spec.Selector, podLabels) {
		t.Errorf("PodDisruptionBudget %s does not select the proxy's pods %v", pdb.Name, podLabels)
	}
	for _, other := range v.pods() {
		if other.name != "Deployment "+d.Name && selects(pdb.Spec.Selector, other.meta.Labels) {
			t.Errorf("PodDisruptionBudget %s also selects %s", pdb.Name, other.name)
		}
	}
	if m := pdb.Spec.MinAvailable; m == nil || m.Type != intstr.Int || d.Spec.Replicas == nil || m.IntVal < 1 || m.IntVal >= *d.Spec.Replicas {
		t.Errorf("PodDisruptionBudget minAvailable %v: want at least 1 and fewer than the replicas, so a drain can evict one", m)
	}

	delay, err := time.ParseDuration(orDefault(env["IMSPROXY_SHUTDOWN_DELAY"], "0s"))
	if err != nil {
		t.Fatal(err)
	}
	drain, err := time.ParseDuration(orDefault(env["IMSPROXY_SHUTDOWN_TIMEOUT"], "15s"))
	if err != nil {
		t.Fatal(err)
	}
	if delay == 0 {
		t.Error("no IMSPROXY_SHUTDOWN_DELAY: a replica stops taking connections before every node has removed it from the Service")
	}
	grace := 30 * time.Second // the API server's default
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if grace <= delay+drain {
		t.Errorf("terminationGracePeriodSeconds %s: want more than IMSPROXY_SHUTDOWN_DELAY + IMSPROXY_SHUTDOWN_TIMEOUT (%s)", grace, delay+drain)
	}

	if !loopback(env["IMSPROXY_ADMIN_LISTEN"]) && (env["IMSPROXY_ADMIN_ALLOW_REMOTE"] != "true" || env["IMSPROXY_ADMIN_TOKEN_FILE"] == "") {
		t.Error("the admin listener is not on loopback: it needs IMSPROXY_ADMIN_ALLOW_REMOTE=true and IMSPROXY_ADMIN_TOKEN_FILE")
	}
	for _, r := range routeNames(env) {
		if !loopback(env["IMSPROXY_"+strings.ToUpper(r)+"_LISTEN"]) && env["IMSPROXY_CALLERS_FILE"] == "" {
			t.Errorf("route %s listens off loopback without IMSPROXY_CALLERS_FILE: anyone who reaches it spends the organisation's credentials", r)
		}
	}
	if env["IMSPROXY_ALLOW_REMOTE"] == "true" {
		t.Error("IMSPROXY_ALLOW_REMOTE=true opens the routes to any caller: a shared service identifies its callers")
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	return err == nil && (host == "localhost" || (ip != nil && ip.IsLoopback()))
}

// TestKubernetes_NetworkPolicyGuardsTheAdminPort: a NetworkPolicy selects
// the proxy's pods for ingress, and every rule that admits the admin port
// (a rule without ports admits them all) admits only Prometheus in the
// monitoring namespace; the route port admits the application's pods.
// Both Redis admit only the proxy.
func TestKubernetes_NetworkPolicyGuardsTheAdminPort(t *testing.T) {
	t.Parallel()
	v, d, c := shared(t)
	env := v.containerEnv(t, c)
	adminPort := int32(mustAtoi(t, strings.TrimPrefix(listenPort(env["IMSPROXY_ADMIN_LISTEN"]), ":")))
	podLabels := d.Spec.Template.Labels

	policy := policyFor(v, podLabels)
	if policy == nil {
		t.Fatal("no Ingress NetworkPolicy selects the proxy's pods")
	}
	admitsAdmin, admitsRoute := false, false
	for i, rule := range policy.Spec.Ingress {
		ports := rulePorts(t, c, rule)
		if len(ports) == 0 || slices.Contains(ports, adminPort) {
			admitsAdmin = true
			if len(rule.From) == 0 {
				t.Errorf("rule %d admits the admin port from anywhere", i+1)
			}
			for _, peer := range rule.From {
				ns := peer.NamespaceSelector
				if peer.IPBlock != nil || ns == nil || ns.MatchLabels["kubernetes.io/metadata.name"] != "monitoring" || peer.PodSelector == nil {
					t.Errorf("rule %d admits the admin port from %s: want Prometheus's pods in the monitoring namespace only", i+1, oneLine(peer))
				}
			}
		}
		if slices.ContainsFunc(ports, func(p int32) bool { return p != adminPort }) && len(rule.From) > 0 {
			admitsRoute = true
		}
	}
	if !admitsAdmin {
		t.Error("no rule admits the admin port: Prometheus could not scrape")
	}
	if !admitsRoute {
		t.Error("no rule admits the application's pods to a route port")
	}

	redisPods := 0
	for _, p := range v.pods() {
		if len(proxyContainers(p.spec)) > 0 {
			continue
		}
		redisPods++
		redisPolicy := policyFor(v, p.meta.Labels)
		if redisPolicy == nil {
			t.Errorf("no Ingress NetworkPolicy selects %s's pods", p.name)
			continue
		}
		for i, rule := range redisPolicy.Spec.Ingress {
			for _, peer := range rule.From {
				if peer.NamespaceSelector != nil || peer.IPBlock != nil || !selects(peer.PodSelector, podLabels) {
					t.Errorf("%s rule %d admits %s: want the proxy's pods only", p.name, i+1, oneLine(peer))
				}
			}
			if len(rule.From) == 0 {
				t.Errorf("%s rule %d admits anyone", p.name, i+1)
			}
		}
	}
	if redisPods != 2 {
		t.Errorf("%d pods besides the proxy's, want the two Redis (state and search cache)", redisPods)
	}
}

// policyFor returns the Ingress NetworkPolicy that selects pods with these
// labels.
func policyFor(v *variant, podLabels map[string]string) *networkingv1.NetworkPolicy {
	for i, p := range v.policies {
		if selects(&p.Spec.PodSelector, podLabels) && slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			return &v.policies[i]
		}
	}
	return nil
}

// rulePorts resolves a rule's ports (named or numbered) to numbers of c.
func rulePorts(t *testing.T, c corev1.Container, rule networkingv1.NetworkPolicyIngressRule) []int32 {
	t.Helper()
	var out []int32
	for _, p := range rule.Ports {
		if p.Port == nil {
			return nil // every port
		}
		cp, ok := containerPort(c, *p.Port)
		if !ok {
			t.Errorf("NetworkPolicy port %s is no port of the proxy container", p.Port.String())
			continue
		}
		out = append(out, cp.ContainerPort)
	}
	return out
}

// TestKubernetes_RedisKeepsTheFleetState: the proxy's Redis URL, read from
// a file of its Secret (IMSPROXY_REDIS_URL_FILE: the password stays out of
// the environment), names the Redis Service and port; Redis refuses to
// evict (noeviction: an evicted license count would forget licenses spent),
// writes every change to an append-only file before answering, and keeps it
// on a persistent volume.
func TestKubernetes_RedisKeepsTheFleetState(t *testing.T) {
	t.Parallel()
	v, d, c := shared(t)
	env := v.materialise(t, pod{"Deployment " + d.Name, d.Spec.Template.Spec, d.Spec.Template.ObjectMeta}, c, t.TempDir(), nil)
	if _, ok := env["IMSPROXY_REDIS_URL"]; ok {
		t.Error("IMSPROXY_REDIS_URL is in the environment: its password belongs in a file (IMSPROXY_REDIS_URL_FILE)")
	}
	u, svc := redisService(t, v, env, "IMSPROXY_REDIS_URL_FILE")
	if len(v.statefulSets) != 1 {
		t.Fatalf("%d StatefulSets, want Redis's", len(v.statefulSets))
	}
	redis := v.statefulSets[0]
	if !selects(metav1Selector(svc.Spec.Selector), redis.Spec.Template.Labels) {
		t.Errorf("Service %s does not select Redis's pods", svc.Name)
	}
	rc := redis.Spec.Template.Spec.Containers[0]
	args := strings.Join(slices.Concat(rc.Command, rc.Args), " ")
	for _, want := range []string{"--appendonly yes", "--appendfsync always", "--maxmemory-policy noeviction"} {
		if !strings.Contains(args, want) {
			t.Errorf("Redis runs %q: want %s", args, want)
		}
	}
	if pw, ok := secretData(v.secrets["imsproxy-redis"])["password"]; ok && strings.Contains(args, "--requirepass") {
		if p, _ := u.User.Password(); p != pw {
			t.Error("the Redis URL's password is not the one Redis requires")
		}
	}
	onClaim := false
	for _, m := range rc.VolumeMounts {
		for _, claim := range redis.Spec.VolumeClaimTemplates {
			onClaim = onClaim || (m.Name == claim.Name && m.MountPath == "/data")
		}
	}
	if !onClaim {
		t.Error("Redis's /data is not on a volume claim: its append-only file would not outlive the pod")
	}
}

// TestKubernetes_SharedServiceConfigurationLoads: the proxy's environment,
// with its Secrets materialised from the examples, is refused as long as
// the examples' placeholders stand for the caller's key and the admin token
// (applied as it is, the example lets no one in), and is a configuration
// imsproxy accepts once they are replaced.
func TestKubernetes_SharedServiceConfigurationLoads(t *testing.T) {
	t.Parallel()
	v, d, c := shared(t)
	p := pod{"Deployment " + d.Name, d.Spec.Template.Spec, d.Spec.Template.ObjectMeta}
	placeholders := v.materialise(t, p, c, t.TempDir(), nil)
	err := loadConfig(placeholders)
	for _, want := range []string{"IMSPROXY_CALLERS_FILE", "IMSPROXY_ADMIN_TOKEN_FILE"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("the example's placeholders: %v, want a problem with %s", err, want)
		}
	}

	root := t.TempDir()
	sum := sha256.Sum256([]byte("a caller key of myapp, long and random"))
	env := v.materialise(t, p, c, root, map[string]string{
		"callers.json": `[{"name": "myapp", "key_sha256": "` + hex.EncodeToString(sum[:]) + `", "routes": ["stock"], "license": true}]`,
		"token":        "0123456789abcdef0123456789abcdef",
	})
	callers, err := os.ReadFile(env["IMSPROXY_CALLERS_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.ParseCallers(callers, routeNames(env)); err != nil {
		t.Errorf("the example callers file: %v", err)
	}
	checkConfigLoads(t, "the shared service", env)
	if !strings.HasPrefix(env["IMSPROXY_CALLERS_FILE"], filepath.Clean(root)) {
		t.Errorf("IMSPROXY_CALLERS_FILE %s is not in a mounted Secret", env["IMSPROXY_CALLERS_FILE"])
	}
}

// TestKubernetes_SharedServiceProbesPathsThatAnswer: the HTTP probes reach
// the admin port and ask paths the running imsproxy answers with 200 when
// ready — /readyz for startup and readiness, /healthz (never /readyz) for
// liveness: an IMS outage must not restart every replica.
func TestKubernetes_SharedServiceProbesPathsThatAnswer(t *testing.T) {
	t.Parallel()
	v, _, c := shared(t)
	env := v.containerEnv(t, c)
	adobe := startEmulator(t)
	creds := adobe.credentials(t)
	p := startProxy(t, map[string]string{
		"IMSPROXY_ROUTES":              "stock",
		"IMSPROXY_IMS_URL":             adobe.URL,
		"IMSPROXY_STOCK_UPSTREAM":      adobe.URL,
		"IMSPROXY_STOCK_CLIENT_ID":     creds.ClientID,
		"IMSPROXY_STOCK_CLIENT_SECRET": creds.ClientSecret,
		"IMSPROXY_STOCK_SCOPES":        strings.Join(creds.Scopes, ","),
	})
	p.waitReady(t)
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"startupProbe", c.StartupProbe, "/readyz"},
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
		{"livenessProbe", c.LivenessProbe, "/healthz"},
	} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Errorf("%s: want an HTTP probe of the admin listener", pr.name)
			continue
		}
		get := pr.probe.HTTPGet
		cp, ok := containerPort(c, get.Port)
		if !ok || listenPort(env["IMSPROXY_ADMIN_LISTEN"]) != ":"+itoa32(cp.ContainerPort) {
			t.Errorf("%s: port %s is not the admin listener's (%s)", pr.name, get.Port.String(), env["IMSPROXY_ADMIN_LISTEN"])
		}
		if get.Path != pr.path {
			t.Errorf("%s: path %s, want %s", pr.name, get.Path, pr.path)
		}
		if status, body := httpGet(t, p.adminURL()+get.Path); status != http.StatusOK {
			t.Errorf("%s: GET %s on a ready imsproxy: %d %s", pr.name, get.Path, status, body)
		}
	}
}

// redisService reads the Redis URL in the file the variable fileVar of env
// names, and returns it with the Service it names (its port included).
func redisService(t *testing.T, v *variant, env map[string]string, fileVar string) (*url.URL, *corev1.Service) {
	t.Helper()
	raw, err := os.ReadFile(env[fileVar])
	if err != nil {
		t.Fatalf("%s: %v", fileVar, err)
	}
	u, err := url.Parse(strings.TrimSpace(string(raw)))
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		t.Fatalf("%s holds %q: want redis://", fileVar, raw)
	}
	for i := range v.services {
		if svc := &v.services[i]; svc.Name == u.Hostname() {
			if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return itoa32(p.Port) == u.Port() }) {
				t.Errorf("%s's port %s is not a port of Service %s", fileVar, u.Port(), svc.Name)
			}
			return u, svc
		}
	}
	t.Fatalf("%s names host %s: no such Service", fileVar, u.Hostname())
	return nil, nil
}

// TestKubernetes_SearchCacheHasARedisOfItsOwn: the search cache's answers,
// many and short-lived, would fill the state's Redis, which refuses writes
// when full, and with them every license. IMSPROXY_REDIS_CACHE_URL_FILE
// names another Redis, which evicts (allkeys-lru) and keeps nothing on
// disk, behind the same password.
func TestKubernetes_SearchCacheHasARedisOfItsOwn(t *testing.T) {
	t.Parallel()
	v, d, c := shared(t)
	env := v.materialise(t, pod{"Deployment " + d.Name, d.Spec.Template.Spec, d.Spec.Template.ObjectMeta}, c, t.TempDir(), nil)
	state, _ := redisService(t, v, env, "IMSPROXY_REDIS_URL_FILE")
	u, svc := redisService(t, v, env, "IMSPROXY_REDIS_CACHE_URL_FILE")
	if u.Host == state.Host {
		t.Fatalf("the search cache's Redis is the state's, %s", u.Host)
	}
	var redis *pod
	for _, p := range v.pods() {
		if selects(metav1Selector(svc.Spec.Selector), p.meta.Labels) {
			redis = &p
		}
	}
	if redis == nil {
		t.Fatalf("Service %s selects no pod", svc.Name)
	}
	rc := redis.spec.Containers[0]
	args := strings.Join(slices.Concat(rc.Command, rc.Args), " ")
	for _, want := range []string{"--maxmemory-policy allkeys-lru", "--appendonly no", `--save `, "--requirepass"} {
		if !strings.Contains(args, want) {
			t.Errorf("the search cache's Redis runs %q: want %s", args, want)
		}
	}
	if p, _ := u.User.Password(); p != secretData(v.secrets["imsproxy-redis"])["password"] {
		t.Error("the search cache's URL does not carry the password its Redis requires")
	}
}
