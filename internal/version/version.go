// Package version tells which imsproxy is running: the release stamped at
// build time, else what the Go toolchain recorded in the binary (the module
// version, the VCS revision and its time).
package version

import (
	"runtime"
	"runtime/debug"
	"sync"
	"time"
)

// release and revision are set at build time, where the Go toolchain
// cannot read the VCS (an image build, whose context has no .git):
//
//	go build -ldflags "-X github.com/imsproxy/imsproxy/internal/version.release=v1.2.3 \
//	  -X github.com/imsproxy/imsproxy/internal/version.revision=$(git rev-parse HEAD)"
var release, revision string

// Info describes the running binary.
type Info struct {
	Version   string    // the release, the module version, or "dev"
	Revision  string    // VCS revision; "" when not recorded
	Time      time.Time // time of the revision; zero when not recorded
	Modified  bool      // built from a work tree with uncommitted changes
	GoVersion string
}

// Get returns the binary's Info, read once.
var Get = sync.OnceValue(func() Info { return read(release, revision, debug.ReadBuildInfo) })

// read returns the Info of a binary stamped with release and revision
// (either may be empty) whose toolchain recorded buildInfo. The VCS
// revision recorded by the toolchain wins over a stamped one.
func read(release, revision string, buildInfo func() (*debug.BuildInfo, bool)) Info {
	info := Info{Version: release, Revision: revision, GoVersion: runtime.Version()}
	bi, ok := buildInfo()
	if !ok {
		if info.Version == "" {
			info.Version = "dev"
		}
		return info
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time, _ = time.Parse(time.RFC3339, s.Value)
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	if info.Version == "" {
		switch v := bi.Main.Version; {
		case v != "" && v != "(devel)":
			info.Version = v
		case len(info.Revision) >= 12:
			info.Version = "dev-" + info.Revision[:12]
		default:
			info.Version = "dev"
		}
	}
	return info
}

// String is the version alone, as in the default X-Product
// "imsproxy/<version>".
func String() string { return Get().Version }
