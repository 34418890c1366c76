// Package buildinfo says which build of shoal a binary is: the release
// version, the git commit and the build date that the build stamped into
// it, and the Go toolchain that compiled it. lvsd prints it with
// --version, reports it in NodeStatus and as the shoal_build_info metric;
// lvsctl prints its own beside the server's (lvsctl version).
//
// The Makefile (bin, deb) and the package build (deploy/deb) stamp the
// three with the linker:
//
//	go build -ldflags "-X github.com/shoal-lb/shoal/buildinfo.version=v1.4.0 \
//	    -X github.com/shoal-lb/shoal/buildinfo.commit=$(git rev-parse HEAD) \
//	    -X github.com/shoal-lb/shoal/buildinfo.date=2026-12-07T03:00:00Z"
//
// A plain `go build` has no stamp: its version is "devel", and its commit
// and date come from the Go toolchain's VCS stamp (runtime/debug) when the
// toolchain wrote one (it does not with -buildvcs=false, or outside a git
// work tree). `go install module@v1.4.0` has the module's version.
//
// The package imports nothing of shoal's, so that every layer may use it.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Stamped by the linker (-ldflags -X); see the package comment.
var (
	version string
	commit  string
	date    string
)

// Devel is the version of a build that was given none.
const Devel = "devel"

// Info is what a binary knows of its own build.
type Info struct {
	// Version is the release as `git describe --tags --always --dirty`
	// names it (v1.4.0, v1.4.0-3-gabc1234, abc1234-dirty), or Devel.
	Version string
	// Commit is the full git commit hash; empty when unknown.
	Commit string
	// Modified is set when the work tree had uncommitted changes.
	Modified bool
	// Date is when the binary was built (RFC 3339, UTC), or with only the
	// toolchain's VCS stamp, the commit's time; empty when unknown.
	Date string
	// GoVersion is the toolchain that built it (go1.26.8).
	GoVersion string
	// Platform is GOOS/GOARCH.
	Platform string
}

// Get returns this binary's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(version, commit, date, bi)
}

// resolve combines the linker's stamp with the toolchain's build
// information, the stamp first.
func resolve(version, commit, date string, bi *debug.BuildInfo) Info {
	i := Info{
		Version:   version,
		Commit:    commit,
		Date:      date,
		Modified:  strings.HasSuffix(version, "-dirty"),
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
	if bi != nil {
		if bi.GoVersion != "" {
			i.GoVersion = bi.GoVersion
		}
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		if i.Commit == "" {
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					i.Commit = s.Value
				case "vcs.time":
					if i.Date == "" {
						i.Date = s.Value
					}
				case "vcs.modified":
					i.Modified = s.Value == "true"
				}
			}
		}
	}
	if i.Version == "" {
		i.Version = Devel
	}
	return i
}

// ShortCommit is the commit's first 12 hex digits, with "-dirty" when the
// tree was modified; empty when the commit is unknown.
func (i Info) ShortCommit() string {
	c := i.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	if c != "" && i.Modified {
		c += "-dirty"
	}
	return c
}

// String is the version with what else is known, on one line:
// "v1.4.0 (commit 0123456789ab, built 2026-12-07T03:00:00Z, go1.26.8 linux/amd64)".
func (i Info) String() string {
	var parts []string
	if c := i.ShortCommit(); c != "" {
		parts = append(parts, "commit "+c)
	}
	if i.Date != "" {
		parts = append(parts, "built "+i.Date)
	}
	parts = append(parts, strings.TrimSpace(i.GoVersion+" "+i.Platform))
	return fmt.Sprintf("%s (%s)", i.Version, strings.Join(parts, ", "))
}
