package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// licenseFile matches the files of a module's root that state its terms.
var licenseFile = regexp.MustCompile(`(?i)^(licen[cs]e|copying|notice|patents)([._-].*)?$`)

// module is one Go module compiled into the binaries.
type module struct {
	path, version string
	// replace says what replaced it (go.mod's replace), if anything.
	replace string
	dir     string
}

// copyright writes /usr/share/doc/shoal/copyright: shoal's notice, the
// list of what lvsd and lvsctl contain (they are statically linked), and
// the license texts of each: the Go distribution's and every module's, as
// found in the module's root.
func (s *staging) copyright(ctx context.Context) error {
	mods, err := s.modules(ctx)
	if err != nil {
		return err
	}
	var goroot, gover bytes.Buffer
	if err := s.run(ctx, &goroot, s.o.root, s.goEnv(), s.o.goCmd, "env", "GOROOT"); err != nil {
		return err
	}
	if err := s.run(ctx, &gover, s.o.root, s.goEnv(), s.o.goCmd, "env", "GOVERSION"); err != nil {
		return err
	}
	all := append([]module{{path: "Go standard library and runtime", version: strings.TrimSpace(gover.String()), dir: strings.TrimSpace(goroot.String())}}, mods...)

	var b bytes.Buffer
	b.WriteString(`shoal: a clustered LVS director
Source: https://github.com/shoal-lb/shoal
Copyright: the shoal authors

License: the shoal repository does not state a license for its own code
yet. Until it does, no licence to it is granted beyond what the law allows.

lvsd and lvsctl are statically linked Go programs. Besides shoal's own code
they contain the following, each under its own license; the license files
of each follow below, in this order.

`)
	type text struct{ head, body string }
	var texts []text
	for _, m := range all {
		name := strings.TrimSpace(m.path + " " + m.version)
		if m.replace != "" {
			name += ", replaced by " + m.replace
		}
		names, err := licenseFiles(m.dir)
		if err != nil {
			return err
		}
		if len(names) == 0 {
			fmt.Fprintf(s.o.log, "deb: warning: %s has no license file in %s\n", name, m.dir)
			fmt.Fprintf(&b, "  %s (no license file in the module)\n", name)
			continue
		}
		fmt.Fprintf(&b, "  %s\n", name)
		for _, n := range names {
			body, err := os.ReadFile(filepath.Join(m.dir, n))
			if err != nil {
				return err
			}
			texts = append(texts, text{name + ": " + n, strings.TrimRight(string(body), "\n")})
		}
	}
	rule := strings.Repeat("=", 72)
	for _, t := range texts {
		fmt.Fprintf(&b, "\n%s\n%s\n%s\n\n%s\n", rule, t.head, rule, t.body)
	}
	return os.WriteFile(s.path("copyright"), b.Bytes(), 0o644)
}

// modules lists the modules whose packages lvsd and lvsctl import, but
// shoal's own.
func (s *staging) modules(ctx context.Context) ([]module, error) {
	var out bytes.Buffer
	const f = `{{with .Module}}{{if not .Main}}{{.Path}}|{{.Version}}|{{with .Replace}}{{.Path}} {{.Version}}|{{.Dir}}{{else}}|{{.Dir}}{{end}}{{end}}{{end}}`
	if err := s.run(ctx, &out, s.o.root, s.goEnv(), s.o.goCmd, "list", "-deps", "-f", f, "./cmd/lvsd", "./cmd/lvsctl"); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var mods []module
	for _, l := range strings.Split(out.String(), "\n") {
		p := strings.Split(l, "|")
		if len(p) != 4 || seen[p[0]] {
			continue
		}
		seen[p[0]] = true
		mods = append(mods, module{path: p[0], version: p[1], replace: strings.TrimSpace(p[2]), dir: p[3]})
	}
	slices.SortFunc(mods, func(a, b module) int { return strings.Compare(a.path, b.path) })
	return mods, nil
}

// licenseFiles names the license files in dir, in order.
func licenseFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("license files of %s: %w", dir, err)
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && licenseFile.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}
