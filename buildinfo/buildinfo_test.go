package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	vcs := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/shoal-lb/shoal", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "dd856e2aa5a0f1a4b6c9e0d1f2a3b4c5d6e7f809"},
			{Key: "vcs.time", Value: "2026-12-07T02:47:56Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	tests := []struct {
		name                  string
		version, commit, date string
		bi                    *debug.BuildInfo
		want                  Info
	}{{
		name:    "stamped by the Makefile",
		version: "v1.4.0", commit: "0123456789abcdef0123456789abcdef01234567", date: "2026-12-07T03:00:00Z",
		bi:   vcs,
		want: Info{Version: "v1.4.0", Commit: "0123456789abcdef0123456789abcdef01234567", Date: "2026-12-07T03:00:00Z", GoVersion: "go1.26.8"},
	}, {
		name:    "stamped from a dirty tree",
		version: "v1.4.0-3-g0123456-dirty", commit: "0123456789abcdef0123456789abcdef01234567",
		want: Info{Version: "v1.4.0-3-g0123456-dirty", Commit: "0123456789abcdef0123456789abcdef01234567", Modified: true, GoVersion: runtime.Version()},
	}, {
		name: "go build in a git tree: the toolchain's VCS stamp",
		bi:   vcs,
		want: Info{Version: Devel, Commit: "dd856e2aa5a0f1a4b6c9e0d1f2a3b4c5d6e7f809", Date: "2026-12-07T02:47:56Z", Modified: true, GoVersion: "go1.26.8"},
	}, {
		name: "go install module@version",
		bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.0"}},
		want: Info{Version: "v1.4.0", GoVersion: "go1.26.8"},
	}, {
		name: "nothing known",
		want: Info{Version: Devel, GoVersion: runtime.Version()},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resolve(tt.version, tt.commit, tt.date, tt.bi)
			tt.want.Platform = runtime.GOOS + "/" + runtime.GOARCH
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	i := Info{Version: "v1.4.0", Commit: "0123456789abcdef0123", Modified: true, Date: "2026-12-07T03:00:00Z", GoVersion: "go1.26.8", Platform: "linux/amd64"}
	if got, want := i.String(), "v1.4.0 (commit 0123456789ab-dirty, built 2026-12-07T03:00:00Z, go1.26.8 linux/amd64)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	i = Info{Version: Devel, GoVersion: "go1.26.8", Platform: "linux/amd64"}
	if got, want := i.String(), "devel (go1.26.8 linux/amd64)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// TestGet checks what this test binary (built by go test, unstamped)
// says of itself.
func TestGet(t *testing.T) {
	i := Get()
	if i.Version == "" || i.GoVersion != runtime.Version() || !strings.Contains(i.Platform, "/") {
		t.Errorf("Get() = %+v", i)
	}
}
