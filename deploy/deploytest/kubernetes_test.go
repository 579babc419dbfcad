package deploytest

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// The Kubernetes variants, relative to this module.
var (
	sidecarDir = filepath.Join(repoRoot, "deploy", "kubernetes", "sidecar")
	sharedDir  = filepath.Join(repoRoot, "deploy", "kubernetes", "shared")
)

// variant is one kustomization, rendered as kubectl apply -k would and
// decoded into the Kubernetes API types, plus the Secrets its
// secret.example.yaml shows (not applied, but what the manifests read).
type variant struct {
	deployments  []appsv1.Deployment
	statefulSets []appsv1.StatefulSet
	services     []corev1.Service
	pdbs         []policyv1.PodDisruptionBudget
	policies     []networkingv1.NetworkPolicy
	secrets      map[string]corev1.Secret // the examples, by name
}

// loadVariant renders the kustomization in dir with kustomize's own
// library, decodes every resource strictly (an unknown or misspelt field
// is an error, as kubectl apply --validate=strict makes it), and decodes
// the secret examples the same way. Every YAML file of the directory must
// be the kustomization, one of its resources, or an example.
func loadVariant(t *testing.T, dir string) *variant {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rendered, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	v := &variant{secrets: map[string]corev1.Secret{}}
	for _, r := range rendered.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		if err := v.decode(doc); err != nil {
			t.Errorf("%s: %s %s: %v", dir, r.GetKind(), r.GetName(), err)
		}
	}

	kustomization, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kz struct{ Resources []string }
	if err := yaml.Unmarshal(kustomization, &kz); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		base := filepath.Base(f)
		switch {
		case base == "kustomization.yaml" || slices.Contains(kz.Resources, base):
			// Decoded as rendered, and once more as written: the rendering
			// may have hidden a duplicate key.
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for i, doc := range yamlDocuments(data) {
				if _, err := yaml.YAMLToJSONStrict(doc); err != nil {
					t.Errorf("%s, document %d: %v", f, i+1, err)
				}
			}
		case strings.HasSuffix(base, ".example.yaml"):
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			examples := &variant{secrets: v.secrets}
			for i, doc := range yamlDocuments(data) {
				if err := examples.decode(doc); err != nil {
					t.Errorf("%s, document %d: %v", f, i+1, err)
				}
			}
			if n := len(examples.deployments) + len(examples.statefulSets) + len(examples.services) +
				len(examples.pdbs) + len(examples.policies); n > 0 {
				t.Errorf("%s: examples are Secrets only, not applied; it holds %d other resources", f, n)
			}
		default:
			t.Errorf("%s is neither kustomization.yaml, nor among its resources, nor an *.example.yaml: it would never be checked", f)
		}
	}
	return v
}

// yamlDocuments splits a multi-document YAML file.
func yamlDocuments(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(d, "")) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// decode decodes one resource strictly into its API type.
func (v *variant) decode(doc []byte) error {
	var meta metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return err
	}
	strict := func(into any) error { return yaml.UnmarshalStrict(doc, into) }
	switch meta.APIVersion + " " + meta.Kind {
	case "apps/v1 Deployment":
		var d appsv1.Deployment
		if err := strict(&d); err != nil {
			return err
		}
		v.deployments = append(v.deployments, d)
		return checkSelector(d.Spec.Selector, d.Spec.Template.Labels)
	case "apps/v1 StatefulSet":
		var s appsv1.StatefulSet
		if err := strict(&s); err != nil {
			return err
		}
		v.statefulSets = append(v.statefulSets, s)
		return checkSelector(s.Spec.Selector, s.Spec.Template.Labels)
	case "v1 Service":
		var s corev1.Service
		if err := strict(&s); err != nil {
			return err
		}
		v.services = append(v.services, s)
	case "policy/v1 PodDisruptionBudget":
		var p policyv1.PodDisruptionBudget
		if err := strict(&p); err != nil {
			return err
		}
		v.pdbs = append(v.pdbs, p)
	case "networking.k8s.io/v1 NetworkPolicy":
		var p networkingv1.NetworkPolicy
		if err := strict(&p); err != nil {
			return err
		}
		v.policies = append(v.policies, p)
	case "v1 Secret":
		var s corev1.Secret
		if err := strict(&s); err != nil {
			return err
		}
		v.secrets[s.Name] = s
	default:
		return fmt.Errorf("apiVersion %q kind %q: not a kind these tests know how to check", meta.APIVersion, meta.Kind)
	}
	return nil
}

// checkSelector: the API server refuses a workload whose selector does not
// select its own pod template.
func checkSelector(sel *metav1.LabelSelector, podLabels map[string]string) error {
	if !selects(sel, podLabels) {
		return fmt.Errorf("selector %v does not select its pod template's labels %v", sel, podLabels)
	}
	return nil
}

// selects reports whether a label selector matches a set of labels. A nil
// or unparsable selector selects nothing.
func selects(sel *metav1.LabelSelector, set map[string]string) bool {
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && !s.Empty() && s.Matches(labels.Set(set))
}

// secretData is a Secret example's key → value (stringData or data).
func secretData(s corev1.Secret) map[string]string {
	out := map[string]string{}
	for k, b := range s.Data {
		out[k] = string(b)
	}
	for k, v := range s.StringData {
		out[k] = v
	}
	return out
}

// pod is one pod template of a variant with a name for messages.
type pod struct {
	name string
	spec corev1.PodSpec
	meta metav1.ObjectMeta
}

func (v *variant) pods() []pod {
	var ps []pod
	for _, d := range v.deployments {
		ps = append(ps, pod{"Deployment " + d.Name, d.Spec.Template.Spec, d.Spec.Template.ObjectMeta})
	}
	for _, s := range v.statefulSets {
		ps = append(ps, pod{"StatefulSet " + s.Name, s.Spec.Template.Spec, s.Spec.Template.ObjectMeta})
	}
	return ps
}

// proxyContainer is a container that runs imsproxy: its image is the one
// built from this repository.
func proxyContainer(c corev1.Container) bool {
	name := path.Base(strings.SplitN(c.Image, ":", 2)[0])
	return name == "imsproxy"
}

// proxyContainers returns every imsproxy container of a pod, init
// containers included.
func proxyContainers(spec corev1.PodSpec) []corev1.Container {
	var out []corev1.Container
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		if proxyContainer(c) {
			out = append(out, c)
		}
	}
	return out
}

// containerEnv resolves a container's environment as the kubelet would:
// values, and secretKeyRef from the variant's Secret examples.
func (v *variant) containerEnv(t *testing.T, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			value, ok := secretData(v.secrets[ref.Name])[ref.Key]
			if !ok {
				t.Errorf("container %s: %s reads key %q of Secret %q: no such key in the example", c.Name, e.Name, ref.Key, ref.Name)
			}
			env[e.Name] = value
		default:
			t.Errorf("container %s: %s: only values and secretKeyRef are resolved here", c.Name, e.Name)
		}
	}
	return env
}

// volumeNamed returns the pod's volume of that name.
func volumeNamed(spec corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

// mountOf returns the mount of c under which file lies.
func mountOf(c corev1.Container, file string) *corev1.VolumeMount {
	for i, m := range c.VolumeMounts {
		if rel, err := filepath.Rel(m.MountPath, file); err == nil && !strings.HasPrefix(rel, "..") {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

// materialise writes what the kubelet would mount for an imsproxy
// container into root: each Secret volume as a directory of its example's
// keys (values replaced by real ones from override, by key, where given),
// each writable volume as an empty directory. It returns the container's
// environment with every mount path moved under root.
func (v *variant) materialise(t *testing.T, p pod, c corev1.Container, root string, override map[string]string) map[string]string {
	t.Helper()
	for _, m := range c.VolumeMounts {
		vol := volumeNamed(p.spec, m.Name)
		if vol == nil {
			t.Fatalf("%s: container %s mounts volume %s: not declared", p.name, c.Name, m.Name)
		}
		dir := filepath.Join(root, m.MountPath)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if vol.Secret == nil {
			continue
		}
		data := secretData(v.secrets[vol.Secret.SecretName])
		files := map[string]string{} // file name by key: every key, or the items listed
		for key := range data {
			files[key] = key
		}
		if len(vol.Secret.Items) > 0 {
			clear(files)
			for _, it := range vol.Secret.Items {
				if _, ok := data[it.Key]; !ok {
					t.Errorf("%s: volume %s lists key %q: no such key in Secret %s", p.name, m.Name, it.Key, vol.Secret.SecretName)
				}
				files[it.Key] = it.Path
			}
		}
		for key, name := range files {
			value := data[key]
			if o, ok := override[key]; ok {
				value = o
			}
			if err := os.WriteFile(filepath.Join(dir, name), []byte(value), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	env := v.containerEnv(t, c)
	for k, val := range env {
		if o, ok := override[k]; ok {
			env[k] = o
		} else if strings.HasPrefix(val, "/") && mountOf(c, val) != nil {
			env[k] = filepath.Join(root, val)
		}
	}
	return env
}

// TestKubernetes_ManifestsDecodeStrictly: both variants build with
// kustomize, and every resource and every example decodes into the
// Kubernetes API types with no unknown field, no duplicate key, and
// selectors that select their own pods.
func TestKubernetes_ManifestsDecodeStrictly(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{sidecarDir, sharedDir} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			v := loadVariant(t, dir)
			if len(v.pods()) == 0 {
				t.Fatal("no workload")
			}
			for _, p := range v.pods() {
				for _, c := range proxyContainers(p.spec) {
					if c.Image == "imsproxy" {
						t.Errorf("%s: container %s: image %q, want the kustomization's images: entry applied", p.name, c.Name, c.Image)
					}
				}
			}
		})
	}
}

// TestKubernetes_EnvironmentIsWhatImsproxyReads: every IMSPROXY_ variable
// of every imsproxy container is one the product reads, no secret is set
// inline, and every _FILE variable names a file inside a mounted Secret
// directory whose example has that key.
func TestKubernetes_EnvironmentIsWhatImsproxyReads(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{sidecarDir, sharedDir} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			v := loadVariant(t, dir)
			for _, p := range v.pods() {
				for _, c := range proxyContainers(p.spec) {
					env := v.containerEnv(t, c)
					var names []string
					for _, e := range c.Env {
						names = append(names, e.Name)
					}
					checkEnvNames(t, p.name+" container "+c.Name, names)
					for k, file := range env {
						if !strings.HasSuffix(k, "_FILE") && k != "IMSPROXY_CALLERS_FILE" {
							continue
						}
						m := mountOf(c, file)
						var vol *corev1.Volume
						if m != nil {
							vol = volumeNamed(p.spec, m.Name)
						}
						if vol == nil || vol.Secret == nil {
							t.Errorf("%s: %s=%s is not inside a mounted Secret", p.name, k, file)
							continue
						}
						rel, _ := filepath.Rel(m.MountPath, file)
						if _, ok := secretData(v.secrets[vol.Secret.SecretName])[rel]; !ok {
							t.Errorf("%s: %s=%s: Secret %s has no key %q", p.name, k, file, vol.Secret.SecretName, rel)
						}
					}
				}
			}
		})
	}
}

// TestKubernetes_SecretsAreMountedAsDirectories: no Secret volume is
// mounted with subPath. A subPath mount is a copy taken when the container
// starts: the kubelet never updates it, so a rotated credential would not
// reach the proxy until a restart.
func TestKubernetes_SecretsAreMountedAsDirectories(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{sidecarDir, sharedDir} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			v := loadVariant(t, dir)
			mounted := 0
			for _, p := range v.pods() {
				for _, c := range slices.Concat(p.spec.InitContainers, p.spec.Containers) {
					for _, m := range c.VolumeMounts {
						vol := volumeNamed(p.spec, m.Name)
						if vol == nil || (vol.Secret == nil && vol.Projected == nil) {
							continue
						}
						mounted++
						if m.SubPath != "" || m.SubPathExpr != "" {
							t.Errorf("%s: container %s mounts Secret volume %s with subPath %q%s: it would never see a rotation",
								p.name, c.Name, m.Name, m.SubPath, m.SubPathExpr)
						}
						if !m.ReadOnly {
							t.Errorf("%s: container %s mounts Secret volume %s read-write", p.name, c.Name, m.Name)
						}
					}
				}
			}
			if mounted == 0 {
				t.Error("no Secret volume is mounted: where do the credentials come from?")
			}
		})
	}
}

// secretVolume reports whether a pod volume only ever holds credentials or
// configuration (never written by the container).
func secretVolume(vol *corev1.Volume) bool {
	return vol != nil && (vol.Secret != nil || vol.ConfigMap != nil || vol.Projected != nil)
}

// bytesIn parses a byte count of the environment, or returns def.
func bytesIn(env map[string]string, name string, def int64) int64 {
	var n int64
	if _, err := fmt.Sscan(env[name], &n); err != nil {
		return def
	}
	return n
}

// TestKubernetes_ContainersAreLockedDown: every imsproxy and Redis
// container runs as a non-root user with a read-only root file system, no
// capabilities, no privilege escalation and the runtime's default seccomp
// profile, with resource requests and a memory limit. An imsproxy
// container can write only where the audit log lives, and its memory
// limit leaves room for what the proxy may hold: the search caches and the
// answers held while they are cached or rewritten (the in-flight budget of
// IMSPROXY_MAX_INFLIGHT_BYTES: 256 MiB unless set lower).
func TestKubernetes_ContainersAreLockedDown(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{sidecarDir, sharedDir} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			v := loadVariant(t, dir)
			for _, p := range v.pods() {
				podSC := p.spec.SecurityContext
				for _, c := range slices.Concat(p.spec.InitContainers, p.spec.Containers) {
					isProxy := proxyContainer(c)
					if !isProxy && !strings.HasPrefix(c.Image, "redis:") {
						continue // the application's container is the application's business
					}
					where := p.name + " container " + c.Name
					checkSecurityContext(t, where, podSC, c.SecurityContext)
					req, lim := c.Resources.Requests, c.Resources.Limits
					if req.Cpu().IsZero() || req.Memory().IsZero() || lim.Memory().IsZero() {
						t.Errorf("%s: want cpu and memory requests and a memory limit, have %v / %v", where, req, lim)
					}
					if !isProxy {
						continue
					}
					env := v.containerEnv(t, c)
					need := bytesIn(env, "IMSPROXY_MAX_INFLIGHT_BYTES", 256<<20) + 32<<20 // + the runtime
					for _, r := range routeNames(env) {
						def := int64(0)
						if r == "stock" {
							def = 64 << 20
						}
						need += bytesIn(env, "IMSPROXY_"+strings.ToUpper(r)+"_CACHE_MAX_BYTES", def)
					}
					if lim.Memory().Value() < need {
						t.Errorf("%s: memory limit %s, below the %d MiB the proxy may hold", where, lim.Memory(), need>>20)
					}
					checkWritable(t, p, c, env)
				}
			}
		})
	}
}

// checkSecurityContext fails unless a container (with its pod's
// settings) runs locked down.
func checkSecurityContext(t *testing.T, where string, podSC *corev1.PodSecurityContext, sc *corev1.SecurityContext) {
	t.Helper()
	if sc == nil {
		t.Errorf("%s: no securityContext", where)
		return
	}
	nonRoot := sc.RunAsNonRoot != nil && *sc.RunAsNonRoot
	if !nonRoot && podSC != nil && podSC.RunAsNonRoot != nil {
		nonRoot = *podSC.RunAsNonRoot
	}
	if !nonRoot || (sc.RunAsUser != nil && *sc.RunAsUser == 0) {
		t.Errorf("%s: want runAsNonRoot: true and a non-zero user", where)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: want readOnlyRootFilesystem: true", where)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: want allowPrivilegeEscalation: false", where)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("%s: privileged", where)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("%s: capabilities %+v, want drop: [ALL] and nothing added", where, sc.Capabilities)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil && podSC != nil {
		seccomp = podSC.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: want seccompProfile RuntimeDefault (pod or container)", where)
	}
}

// checkWritable fails unless every writable mount of an imsproxy container
// is the directory of its audit log, on an emptyDir or a persistent
// volume, and the audit log (when set) is on such a mount.
func checkWritable(t *testing.T, p pod, c corev1.Container, env map[string]string) {
	t.Helper()
	audit := env["IMSPROXY_AUDIT_LOG"]
	auditDir := ""
	if audit != "" && audit != "-" {
		auditDir = filepath.Dir(audit)
	}
	for _, m := range c.VolumeMounts {
		vol := volumeNamed(p.spec, m.Name)
		if m.ReadOnly || secretVolume(vol) {
			continue
		}
		if m.MountPath != auditDir {
			t.Errorf("%s: container %s can write to %s, which is not the audit log's directory (%q)", p.name, c.Name, m.MountPath, auditDir)
		}
		if vol == nil || (vol.EmptyDir == nil && vol.PersistentVolumeClaim == nil && vol.Ephemeral == nil) {
			t.Errorf("%s: the audit log's volume %s is not an emptyDir or a persistent volume", p.name, m.Name)
		}
	}
	if auditDir != "" {
		m := mountOf(c, audit)
		if m == nil || m.ReadOnly || secretVolume(volumeNamed(p.spec, m.Name)) {
			t.Errorf("%s: IMSPROXY_AUDIT_LOG=%s is on the read-only root file system", p.name, audit)
		}
	}
}

// oneLine is for messages: a value as one line of YAML.
func oneLine(v any) string {
	b, _ := yaml.Marshal(v)
	return string(bytes.ReplaceAll(bytes.TrimSpace(b), []byte("\n"), []byte("; ")))
}

// metav1Selector is a Service's selector map as a label selector.
func metav1Selector(m map[string]string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: m}
}

func itoa32(n int32) string { return strconv.Itoa(int(n)) }
