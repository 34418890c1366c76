package main

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// describeAfterTag is what git describe prints for a commit past a tag:
// TAG-N-gHASH.
var describeAfterTag = regexp.MustCompile(`^(.+)-([0-9]+)-g([0-9a-f]+)$`)

// releaseTag is a tag that names a release: v1.4.0, 1.4, v2.0.0-rc.1. A
// bare commit hash, which git describe --always prints before the first
// tag, is not one even when it starts with a digit.
var releaseTag = regexp.MustCompile(`^v?[0-9]+\.[0-9]+`)

// debVersionChars is what a Debian upstream version may hold (it has no
// revision here, so no hyphen).
var debVersionChars = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)

// debVersion turns a release as `git describe --tags --always --dirty`
// names it into a Debian version that sorts the same way:
//
//	v1.4.0                  1.4.0
//	v1.4.0-rc.1             1.4.0~rc.1              (before 1.4.0)
//	v1.4.0-3-gabc1234       1.4.0+git3.gabc1234     (after 1.4.0)
//	v1.4.0-dirty            1.4.0+dirty
//	abc1234 (no tag yet)    0.0.0~git20261207030000.gabc1234
//	devel                   0.0.0~git20261207030000.devel
//
// A build from no tag sorts by its date, before any release. date is the
// build's, RFC 3339.
func debVersion(version, date string) (string, error) {
	v, dirty := strings.CutSuffix(version, "-dirty")
	var out string
	tag, n, hash := v, "", ""
	if m := describeAfterTag.FindStringSubmatch(v); m != nil {
		tag, n, hash = m[1], m[2], m[3]
	}
	if releaseTag.MatchString(tag) {
		tag = strings.TrimPrefix(tag, "v")
		// A pre-release (v1.4.0-rc.1) comes before its release.
		out = strings.Replace(tag, "-", "~", 1)
		out = strings.ReplaceAll(out, "-", ".")
		if n != "" {
			out += "+git" + n + ".g" + hash
		}
		if dirty {
			if strings.Contains(out, "+") {
				out += ".dirty"
			} else {
				out += "+dirty"
			}
		}
	} else {
		t, err := time.Parse(time.RFC3339, date)
		if err != nil {
			return "", fmt.Errorf("version %q has no release tag, and the build date %q is not RFC 3339: %w", version, date, err)
		}
		what := "devel"
		if v != "devel" {
			what = "g" + v
		}
		out = "0.0.0~git" + t.UTC().Format("20060102150405") + "." + what
		if dirty {
			out += ".dirty"
		}
	}
	if !debVersionChars.MatchString(out) {
		return "", fmt.Errorf("version %q makes the Debian version %q, which holds characters Debian does not allow", version, out)
	}
	return out, nil
}
