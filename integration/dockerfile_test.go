package integration

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// dockerStage is one FROM ... AS name stage of the Dockerfile.
type dockerStage struct {
	from, name string
	lines      []dockerLine // the instructions after FROM
}

// dockerLine is one instruction: its keyword (upper case) and the rest.
type dockerLine struct {
	op, args string
}

// parseDockerfile reads the Dockerfile of the repository: stages and their
// instructions, comments dropped, continuation lines joined.
func parseDockerfile(t *testing.T) []dockerStage {
	t.Helper()
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
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
			words := strings.Fields(args)
			st := dockerStage{from: words[0]}
			if len(words) == 3 && strings.EqualFold(words[1], "AS") {
				st.name = words[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile: %s before FROM", op)
		}
		stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, dockerLine{op, args})
	}
	if err := sc.Err(); err != nil {
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

// dockerBuilt holds the binaries built by the Dockerfile's own go build
// lines, once per test binary (in TestMain's directory, removed at exit).
var dockerBuilt struct {
	once sync.Once
	dir  string
	err  error
	out  string
}

// dockerfileTestVersion is the VERSION build argument the tests pass.
const dockerfileTestVersion = "v0.0.0-dockerfile-test"

// buildAsDockerfile runs every RUN line of the Dockerfile's build stages as
// the image build would (its ENV, the VERSION build argument), with /out
// moved to a local directory, and returns that directory.
func buildAsDockerfile(t *testing.T) string {
	t.Helper()
	stages := parseDockerfile(t)
	dockerBuilt.once.Do(func() {
		dockerBuilt.dir = filepath.Join(filepath.Dir(imsproxyBin), "docker-out")
		env := append(os.Environ(), "VERSION="+dockerfileTestVersion)
		for _, st := range stages {
			if !strings.HasPrefix(st.from, "golang:") && stageNamed(stages, st.from) == nil {
				continue // a final image: nothing is run there
			}
			for _, l := range st.lines {
				switch l.op {
				case "ENV":
					env = append(env, strings.Join(strings.Fields(l.args), "="))
				case "RUN":
					if strings.HasPrefix(l.args, "go mod download") {
						continue // the module cache is already here
					}
					cmd := exec.Command("sh", "-c", strings.ReplaceAll(l.args, "/out/", dockerBuilt.dir+"/"))
					cmd.Dir, cmd.Env = "..", env
					out, err := cmd.CombinedOutput()
					if err != nil {
						dockerBuilt.err, dockerBuilt.out = err, l.args+"\n"+string(out)
						return
					}
				}
			}
		}
	})
	if dockerBuilt.err != nil {
		t.Fatalf("a RUN line of the Dockerfile failed: %v\n%s", dockerBuilt.err, dockerBuilt.out)
	}
	return dockerBuilt.dir
}

// TestDockerfile_BuildsStaticNonRootImages checks what can be checked
// without a Docker engine: the stages and files it names exist, its go
// build lines work and make static binaries with the version stamped in,
// and the final images run as a non-root user what they copied.
func TestDockerfile_BuildsStaticNonRootImages(t *testing.T) {
	t.Parallel()
	stages := parseDockerfile(t)

	// The builder's Go is the module's.
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goVersion == nil || stages[0].from != "golang:"+string(goVersion[1]) {
		t.Errorf("builder image %s, want golang:%s as go.mod says", stages[0].from, goVersion[1])
	}

	for _, st := range stages {
		for _, l := range st.lines {
			if l.op != "COPY" {
				continue
			}
			words := strings.Fields(l.args)
			var from string
			var paths []string
			for _, w := range words {
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
				if _, err := os.Stat(filepath.Join("..", src)); err != nil {
					t.Errorf("COPY %s: %v", src, err)
				}
			}
		}
	}

	dir := buildAsDockerfile(t)
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
		checkStatic(t, filepath.Join(dir, final.binary))
	}

	out, err := exec.Command(filepath.Join(dir, "imsproxy"), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "imsproxy "+dockerfileTestVersion+" ") {
		t.Errorf("imsproxy version of the Dockerfile build: %q %v, want the VERSION build argument", out, err)
	}
	if out, err := exec.Command(filepath.Join(dir, "fakeadobe"), "-h").CombinedOutput(); err != nil {
		t.Errorf("fakeadobe -h: %v\n%s", err, out)
	}
	if fi, err := os.Stat(filepath.Join(dir, "creds")); err != nil || !fi.IsDir() {
		t.Errorf("the credentials directory the fakeadobe image copies: %v", err)
	}
}

// checkStatic fails unless path is an ELF executable with no dynamic
// loader and no shared libraries: it must run in an image without libc.
func checkStatic(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a dynamic loader: not a static binary", filepath.Base(path))
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", filepath.Base(path), libs)
	}
}
