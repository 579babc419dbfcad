package version

import (
	"runtime/debug"
	"testing"
	"time"
)

func TestRead(t *testing.T) {
	rev := "0123456789abcdef0123456789abcdef01234567"
	withVCS := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: rev}, {Key: "vcs.time", Value: "2026-11-30T01:02:03Z"}, {Key: "vcs.modified", Value: "true"},
		}}, true
	}
	tagged := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, true
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	tests := []struct {
		name    string
		release string
		bi      func() (*debug.BuildInfo, bool)
		want    string
	}{
		{"the release stamped at build time wins", "v2.0.0", withVCS, "v2.0.0"},
		{"module version", "", tagged, "v1.4.0"},
		{"a work tree build names its revision", "", withVCS, "dev-0123456789ab"},
		{"nothing recorded", "", none, "dev"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := read(tt.release, "", tt.bi).Version; got != tt.want {
				t.Errorf("Version = %q, want %q", got, tt.want)
			}
		})
	}
	info := read("", "", withVCS)
	if info.Revision != rev || !info.Modified || !info.Time.Equal(time.Date(2026, 11, 30, 1, 2, 3, 0, time.UTC)) {
		t.Errorf("VCS fields = %+v", info)
	}
	if info.GoVersion == "" {
		t.Error("GoVersion is empty")
	}
}

// An image build has no .git for the toolchain to read: the revision it
// is given is stamped instead, and one the toolchain recorded wins.
func TestRead_StampedRevision(t *testing.T) {
	stamped := "fedcba9876543210fedcba9876543210fedcba98"
	noVCS := func() (*debug.BuildInfo, bool) { return &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true }
	if info := read("v1.2.3", stamped, noVCS); info.Revision != stamped || info.Version != "v1.2.3" {
		t.Errorf("stamped: %+v", info)
	}
	if info := read("", stamped, noVCS); info.Version != "dev-fedcba987654" {
		t.Errorf("stamped without a release: version %q, want dev-fedcba987654", info.Version)
	}
	withVCS := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123"}}}, true
	}
	if info := read("", stamped, withVCS); info.Revision != "0123" {
		t.Errorf("recorded and stamped: revision %q, want the recorded one", info.Revision)
	}
}
