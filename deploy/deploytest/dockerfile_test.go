package deploytest

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// dockerStage is one FROM ... AS name stage of the Dockerfile.
type dockerStage struct {
	from     string       // the image or stage it starts from, digest included
	platform string       // FROM --platform=...
	name     string       // AS name
	lines    []dockerLine // the instructions after FROM
}

// dockerLine is one instruction: its keyword (upper case) and the rest.
type dockerLine struct {
	op, args string
}

// parseDockerfile reads a Dockerfile: stages and their instructions,
// comments dropped, continuation lines joined.
func parseDockerfile(path string) ([]dockerStage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var stages []dockerStage
	sc := bufio.NewScanner(f)
	var pending string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if rest, ok := strings.CutSuffix(line, `\`); ok {
			pending += rest + " "
			continue
		}
		line, pending = pending+line, ""
		op, args, _ := strings.Cut(line, " ")
		op, args = strings.ToUpper(op), strings.TrimSpace(args)
		if op == "FROM" {
			var st dockerStage
			words := strings.Fields(args)
			for len(words) > 0 && strings.HasPrefix(words[0], "--") {
				if p, ok := strings.CutPrefix(words[0], "--platform="); ok {
					st.platform = p
				}
				words = words[1:]
			}
			if len(words) == 0 {
				return nil, fmt.Errorf("%s: FROM without an image", path)
			}
			st.from = words[0]
			if len(words) == 3 && strings.EqualFold(words[1], "AS") {
				st.name = words[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			return nil, fmt.Errorf("%s: %s before FROM", path, op)
		}
		stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, dockerLine{op, args})
	}
	return stages, sc.Err()
}

// dockerfile parses the repository's Dockerfile.
func dockerfile(t *testing.T) []dockerStage {
	t.Helper()
	stages, err := parseDockerfile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	return stages
}

func stageNamed(stages []dockerStage, name string) *dockerStage {
	for i := range stages {
		if stages[i].name == name {
			return &stages[i]
		}
	}
	return nil
}

// platform is what buildx passes a build as TARGETOS and TARGETARCH.
type platform struct{ os, arch string }

func hostPlatform() platform { return platform{"linux", runtime.GOARCH} }

// dockerfileTestVersion and dockerfileTestRevision are the VERSION and
// REVISION build arguments the tests pass.
const (
	dockerfileTestVersion  = "v0.0.0-dockerfile-test"
	dockerfileTestRevision = "0123456789abcdef0123456789abcdef01234567"
)

// buildAsDockerfile runs every RUN line of the Dockerfile's build stages
// as BuildKit would, into dir (for /out): each stage sees the ENV of the
// stages it is built on and only the build arguments (VERSION, REVISION,
// TARGETOS, TARGETARCH) that it declares with ARG itself, so a RUN line
// that uses an undeclared argument gets it empty, as in a real build. The
// build context of an image has no .git (.dockerignore), so the Go
// toolchain records no VCS information here either.
func buildAsDockerfile(stages []dockerStage, dir string, target platform) error {
	buildArgs := map[string]string{"VERSION": dockerfileTestVersion, "REVISION": dockerfileTestRevision,
		"TARGETOS": target.os, "TARGETARCH": target.arch}
	envOf := map[string]map[string]string{}
	for _, st := range stages {
		env := map[string]string{}
		if parent, ok := envOf[st.from]; ok {
			maps.Copy(env, parent)
		} else if !strings.HasPrefix(st.from, "golang:") {
			continue // a final image: nothing is run there
		}
		args := map[string]string{}
		for _, l := range st.lines {
			switch l.op {
			case "ENV":
				k, v, _ := strings.Cut(strings.Join(strings.Fields(l.args), "="), "=")
				env[k] = v
			case "ARG":
				name, def, _ := strings.Cut(l.args, "=")
				args[name] = def
				if v, ok := buildArgs[name]; ok {
					args[name] = v
				}
			case "RUN":
				if strings.HasPrefix(l.args, "go mod download") {
					continue // the module cache is already here
				}
				cmd := exec.Command("sh", "-c", strings.ReplaceAll(l.args, "/out/", dir+"/"))
				cmd.Dir, cmd.Env = repoRoot, append(os.Environ(), "GOFLAGS=-buildvcs=false")
				for k, v := range env {
					cmd.Env = append(cmd.Env, k+"="+v)
				}
				for k, v := range args {
					cmd.Env = append(cmd.Env, k+"="+v)
				}
				if out, err := cmd.CombinedOutput(); err != nil {
					return fmt.Errorf("RUN %s: %v\n%s", l.args, err, out)
				}
			}
		}
		if st.name != "" {
			envOf[st.name] = env
		}
	}
	return nil
}

// TestDockerfile_BuildsStaticNonRootImages checks what can be checked
// without a Docker engine: the stages and files it names exist, its go
// build lines (run by TestMain) make static binaries with the version
// stamped in, and the final images run as a non-root user what they copied.
func TestDockerfile_BuildsStaticNonRootImages(t *testing.T) {
	t.Parallel()
	stages := dockerfile(t)

	// The builder's Go is the module's.
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	image, _, _ := strings.Cut(stages[0].from, "@")
	if goVersion == nil || image != "golang:"+string(goVersion[1]) {
		t.Errorf("builder image %s, want golang:%s as go.mod says", stages[0].from, goVersion[1])
	}

	for _, st := range stages {
		for _, l := range st.lines {
			if l.op != "COPY" {
				continue
			}
			var from string
			var paths []string
			for _, w := range strings.Fields(l.args) {
				switch {
				case strings.HasPrefix(w, "--from="):
					from = strings.TrimPrefix(w, "--from=")
				case strings.HasPrefix(w, "--"):
				default:
					paths = append(paths, w)
				}
			}
			if from != "" {
				if stageNamed(stages, from) == nil {
					t.Errorf("COPY --from=%s: no such stage", from)
				}
				continue
			}
			for _, src := range paths[:len(paths)-1] {
				if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
					t.Errorf("COPY %s: %v", src, err)
				}
			}
		}
	}

	for _, final := range []struct{ stage, binary string }{{"imsproxy", "imsproxy"}, {"fakeadobe", "fakeadobe"}} {
		st := stageNamed(stages, final.stage)
		if st == nil {
			t.Errorf("no stage %q (a docker build --target)", final.stage)
			continue
		}
		installed := "/usr/local/bin/" + final.binary
		var user, entrypoint, copied string
		for _, l := range st.lines {
			switch l.op {
			case "USER":
				user = l.args
			case "ENTRYPOINT":
				entrypoint = l.args
			case "COPY":
				if strings.HasSuffix(l.args, " "+installed) {
					copied = l.args
				}
			}
		}
		if !strings.Contains(st.from, "distroless/static") && st.from != "scratch" {
			t.Errorf("stage %s is based on %s, want a minimal static image", final.stage, st.from)
		}
		if user == "" || strings.HasPrefix(user, "root") || strings.HasPrefix(user, "0") {
			t.Errorf("stage %s runs as %q, want a non-root USER", final.stage, user)
		}
		if !strings.HasPrefix(entrypoint, `["`+installed+`"`) || !strings.Contains(copied, "/out/"+final.binary+" ") {
			t.Errorf("stage %s: ENTRYPOINT %s, COPY %q: want the built /out/%s installed as %s",
				final.stage, entrypoint, copied, final.binary, installed)
		}
		checkELF(t, filepath.Join(bin.dir, final.binary), elfMachine[runtime.GOARCH])
	}

	out, err := exec.Command(bin.imsproxy, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "imsproxy "+dockerfileTestVersion+" (revision "+dockerfileTestRevision+")") {
		t.Errorf("imsproxy version of the Dockerfile build: %q %v, want the VERSION and REVISION build arguments", out, err)
	}
	if out, err := exec.Command(bin.fakeadobe, "-h").CombinedOutput(); err != nil {
		t.Errorf("fakeadobe -h: %v\n%s", err, out)
	}
	if fi, err := os.Stat(filepath.Join(bin.dir, "creds")); err != nil || !fi.IsDir() {
		t.Errorf("the credentials directory the fakeadobe image copies: %v", err)
	}
}

// digestRE is an image reference pinned by digest, with its tag kept for
// the reader: name:tag@sha256:<64 hex digits>.
var digestRE = regexp.MustCompile(`^[a-z0-9./-]+:[A-Za-z0-9._-]+@sha256:[0-9a-f]{64}$`)

// TestDockerfile_PinsEveryBaseImageByDigest: a tag can be moved to other
// bytes at any time; a digest cannot, so a rebuild of a commit starts from
// the base it was tested with.
func TestDockerfile_PinsEveryBaseImageByDigest(t *testing.T) {
	t.Parallel()
	stages := dockerfile(t)
	for _, st := range stages {
		if stageNamed(stages, st.from) != nil || st.from == "scratch" {
			continue
		}
		if !digestRE.MatchString(st.from) {
			t.Errorf("FROM %s: want image:tag@sha256:<digest>", st.from)
		}
	}
}

// TestDockerfile_LabelsTheImageWithOCIAnnotations: the proxy image says
// what it is, where its source is, and which version and commit it was
// built from.
func TestDockerfile_LabelsTheImageWithOCIAnnotations(t *testing.T) {
	t.Parallel()
	st := stageNamed(dockerfile(t), "imsproxy")
	if st == nil {
		t.Fatal("no stage imsproxy")
	}
	labels := map[string]string{}
	declared := map[string]bool{}
	labelRE := regexp.MustCompile(`([a-z.]+)="([^"]*)"`)
	for _, l := range st.lines {
		switch l.op {
		case "LABEL":
			for _, m := range labelRE.FindAllStringSubmatch(l.args, -1) {
				labels[m[1]] = m[2]
			}
		case "ARG":
			name, _, _ := strings.Cut(l.args, "=")
			declared[name] = true
		}
	}
	for _, want := range []struct{ key, value string }{
		{"org.opencontainers.image.title", "imsproxy"},
		{"org.opencontainers.image.source", "https://github.com/imsproxy/imsproxy"},
		{"org.opencontainers.image.version", "${VERSION}"},
		{"org.opencontainers.image.revision", "${REVISION}"},
		{"org.opencontainers.image.created", "${CREATED}"},
		{"org.opencontainers.image.licenses", "Apache-2.0"},
	} {
		if got, ok := labels[want.key]; !ok || got != want.value {
			t.Errorf("LABEL %s=%q, want %q", want.key, got, want.value)
		}
	}
	if labels["org.opencontainers.image.description"] == "" {
		t.Error("no org.opencontainers.image.description label")
	}
	for _, arg := range []string{"VERSION", "REVISION", "CREATED"} {
		if !declared[arg] {
			t.Errorf("the imsproxy stage uses ${%s} in a label without declaring ARG %s: the label would be empty", arg, arg)
		}
	}
}

// elfMachine is the ELF machine of each GOARCH the tests build for.
var elfMachine = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// TestDockerfile_CrossCompilesForTheTargetPlatform: the compiler runs on
// the build machine's platform and every go build line compiles for
// TARGETOS/TARGETARCH, so a multi-platform buildx build needs no
// emulation. Checked by running the build lines for linux/arm64 (or amd64
// on an arm64 machine) and reading the binaries' ELF headers.
func TestDockerfile_CrossCompilesForTheTargetPlatform(t *testing.T) {
	t.Parallel()
	stages := dockerfile(t)
	if stages[0].platform != "$BUILDPLATFORM" {
		t.Errorf("builder stage FROM --platform=%q, want $BUILDPLATFORM (the compiler runs natively)", stages[0].platform)
	}
	for _, st := range stages {
		for _, l := range st.lines {
			if l.op == "RUN" && strings.Contains(l.args, "go build") &&
				(!strings.Contains(l.args, "GOOS=$TARGETOS") || !strings.Contains(l.args, "GOARCH=$TARGETARCH")) {
				t.Errorf("stage %s: %s: want GOOS=$TARGETOS GOARCH=$TARGETARCH", st.name, l.args)
			}
		}
	}
	other := platform{"linux", "arm64"}
	if runtime.GOARCH == "arm64" {
		other.arch = "amd64"
	}
	dir := t.TempDir()
	if err := buildAsDockerfile(stages, dir, other); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"imsproxy", "fakeadobe"} {
		checkELF(t, filepath.Join(dir, b), elfMachine[other.arch])
	}
}

// checkELF fails unless path is an ELF executable for machine with no
// dynamic loader and no shared libraries: it must run in an image without
// libc.
func checkELF(t *testing.T, path string, machine elf.Machine) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	defer f.Close()
	if f.Machine != machine {
		t.Errorf("%s is built for %s, want %s", filepath.Base(path), f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a dynamic loader: not a static binary", filepath.Base(path))
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", filepath.Base(path), libs)
	}
}

// TestDockerfile_HealthcheckRunsImsproxyHealth: the image's HEALTHCHECK is
// `imsproxy health` in exec form (the image has no shell), and that
// command, run with the container's environment, passes against a ready
// proxy and fails when nothing answers on the admin address.
func TestDockerfile_HealthcheckRunsImsproxyHealth(t *testing.T) {
	t.Parallel()
	st := stageNamed(dockerfile(t), "imsproxy")
	if st == nil {
		t.Fatal("no stage imsproxy")
	}
	var check string
	for _, l := range st.lines {
		if l.op == "HEALTHCHECK" {
			check = l.args
		}
	}
	_, cmdJSON, ok := strings.Cut(check, "CMD ")
	var argv []string
	if !ok || json.Unmarshal([]byte(cmdJSON), &argv) != nil {
		t.Fatalf("HEALTHCHECK %q: want CMD in exec form, [\"/usr/local/bin/imsproxy\", \"health\"]", check)
	}
	if len(argv) < 2 || argv[0] != "/usr/local/bin/imsproxy" || argv[1] != "health" {
		t.Fatalf("HEALTHCHECK runs %q, want /usr/local/bin/imsproxy health", argv)
	}

	adobe := startEmulator(t)
	c := adobe.credentials(t)
	p := startProxy(t, map[string]string{
		"IMSPROXY_ROUTES":              "stock",
		"IMSPROXY_IMS_URL":             adobe.URL,
		"IMSPROXY_STOCK_UPSTREAM":      adobe.URL,
		"IMSPROXY_STOCK_CLIENT_ID":     c.ClientID,
		"IMSPROXY_STOCK_CLIENT_SECRET": c.ClientSecret,
		"IMSPROXY_STOCK_SCOPES":        strings.Join(c.Scopes, ","),
	})
	p.waitReady(t)
	if code, out := runWithEnv(p.env, bin.imsproxy, argv[1:]...); code != 0 {
		t.Errorf("the HEALTHCHECK against a ready proxy: exit %d, want 0\n%s", code, out)
	}
	env := maps.Clone(p.env)
	env["IMSPROXY_ADMIN_LISTEN"] = closedAddr(t)
	if code, out := runWithEnv(env, bin.imsproxy, argv[1:]...); code != 1 {
		t.Errorf("the HEALTHCHECK with nothing on the admin address: exit %d, want 1\n%s", code, out)
	}
}
