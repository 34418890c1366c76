package main

import (
	"bytes"
	"compress/gzip"
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

// defaultMaintainer is the Maintainer field unless -maintainer says
// otherwise. The project has no mailing address of its own; .invalid says
// so rather than invent one.
const defaultMaintainer = "shoal developers <shoal@shoal-lb.invalid>"

// buildinfoPkg is where the linker stamps the version (package buildinfo).
const buildinfoPkg = "github.com/shoal-lb/shoal/buildinfo"

// The files beside this program that go into the package as they are.
var (
	//go:embed lvsd.default
	lvsdDefault []byte
	//go:embed postinst
	postinst []byte
	//go:embed prerm
	prerm []byte
	//go:embed postrm
	postrm []byte
)

// options says what to build and where.
type options struct {
	root, out             string
	version, commit, date string
	maintainer            string
	log                   io.Writer
	goCmd                 string
}

// build writes the package into o.out and returns its path.
func build(ctx context.Context, o options) (string, error) {
	if err := o.defaults(ctx); err != nil {
		return "", err
	}
	version, err := debVersion(o.version, o.date)
	if err != nil {
		return "", err
	}
	stage, err := os.MkdirTemp("", "shoal-deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	s := &staging{o: o, dir: stage}
	if err := s.binaries(ctx); err != nil {
		return "", err
	}
	if err := s.generated(ctx); err != nil {
		return "", err
	}
	if err := s.unit(); err != nil {
		return "", err
	}
	if err := s.copyright(ctx); err != nil {
		return "", err
	}
	for name, b := range map[string][]byte{"lvsd.default": lvsdDefault, "postinst": postinst, "prerm": prerm, "postrm": postrm} {
		mode := os.FileMode(0o755)
		if name == "lvsd.default" {
			mode = 0o644
		}
		if err := os.WriteFile(filepath.Join(stage, name), b, mode); err != nil {
			return "", err
		}
	}
	return s.pack(version)
}

// defaults fills in the version, commit and date from git and the clock.
func (o *options) defaults(ctx context.Context) error {
	if o.goCmd == "" {
		o.goCmd = "go"
		if _, err := exec.LookPath("go"); err != nil {
			o.goCmd = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
	}
	if o.log == nil {
		o.log = io.Discard
	}
	git := func(args ...string) string {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = o.root
		out, err := cmd.Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	if o.version == "" {
		o.version = git("describe", "--tags", "--always", "--dirty")
	}
	if o.version == "" {
		o.version = "devel"
	}
	if o.commit == "" {
		o.commit = git("rev-parse", "HEAD")
	}
	if o.date == "" {
		t := time.Now()
		if e := os.Getenv("SOURCE_DATE_EPOCH"); e != "" {
			sec, err := strconv.ParseInt(e, 10, 64)
			if err != nil {
				return fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", e, err)
			}
			t = time.Unix(sec, 0)
		}
		o.date = t.UTC().Format(time.RFC3339)
	}
	if _, err := time.Parse(time.RFC3339, o.date); err != nil {
		return fmt.Errorf("-date %q: want RFC 3339 (2026-12-07T03:00:00Z): %w", o.date, err)
	}
	return nil
}

// staging is the directory the package's files are made in.
type staging struct {
	o   options
	dir string
}

func (s *staging) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

// run runs a command in dir with the environment env.
func (s *staging) run(ctx context.Context, stdout io.Writer, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// goEnv is the caller's environment for the Go toolchain, for a static
// build for linux on this machine's architecture.
func (s *staging) goEnv() []string {
	return append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
}

// toolEnv is the environment the built lvsd and lvsctl run in to write
// their man pages and completions: none of the caller's but PATH, so that
// neither $SHOAL_* (lvsctl's flag defaults) nor the machine's locale end
// up in what they write.
func (s *staging) toolEnv() []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.dir, "LC_ALL=C"}
}

// binaries builds lvsd and lvsctl as `make bin` does, stamped.
func (s *staging) binaries(ctx context.Context) error {
	ldflags := fmt.Sprintf("-s -w -X %[1]s.version=%[2]s -X %[1]s.commit=%[3]s -X %[1]s.date=%[4]s", buildinfoPkg, s.o.version, s.o.commit, s.o.date)
	fmt.Fprintf(s.o.log, "deb: go build lvsd, lvsctl (%s)\n", s.o.version)
	return s.run(ctx, nil, s.o.root, s.goEnv(), s.o.goCmd, "build", "-trimpath", "-ldflags", ldflags, "-o", s.path("bin")+"/", "./cmd/lvsd", "./cmd/lvsctl")
}

// generated runs the binaries just built for lvsctl's shell completions
// (cobra's) and both commands' manual pages, gzipped as Debian's policy
// asks.
func (s *staging) generated(ctx context.Context) error {
	lvsd, lvsctl := s.path("bin", "lvsd"), s.path("bin", "lvsctl")
	for _, sh := range []string{"bash", "zsh", "fish"} {
		var b bytes.Buffer
		if err := s.run(ctx, &b, s.dir, s.toolEnv(), lvsctl, "completion", sh); err != nil {
			return err
		}
		if err := os.MkdirAll(s.path("completion"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(s.path("completion", sh), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	raw := s.path("man-raw")
	if err := os.MkdirAll(raw, 0o755); err != nil {
		return err
	}
	if err := s.run(ctx, nil, s.dir, s.toolEnv(), lvsctl, "__gen-man", raw); err != nil {
		return err
	}
	var lvsd8 bytes.Buffer
	if err := s.run(ctx, &lvsd8, s.dir, s.toolEnv(), lvsd, "__gen-man"); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(raw, "lvsd.8"), lvsd8.Bytes(), 0o644); err != nil {
		return err
	}
	pages, err := os.ReadDir(raw)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.path("man"), 0o755); err != nil {
		return err
	}
	for _, p := range pages {
		b, err := os.ReadFile(filepath.Join(raw, p.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(s.path("man", p.Name()+".gz"), gzipped(b), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// gzipped is b compressed as `gzip -9n` does: no name, no time, so that a
// rebuild makes the same bytes.
func gzipped(b []byte) []byte {
	var out bytes.Buffer
	w, _ := gzip.NewWriterLevel(&out, gzip.BestCompression)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

// unit is deploy/lvsd.service with the binaries where the package puts
// them.
func (s *staging) unit() error {
	b, err := os.ReadFile(filepath.Join(s.o.root, "deploy", "lvsd.service"))
	if err != nil {
		return err
	}
	b = bytes.ReplaceAll(b, []byte("/usr/local/bin/"), []byte("/usr/bin/"))
	return os.WriteFile(s.path("lvsd.service"), b, 0o644)
}

// pack writes the package with nfpm.
func (s *staging) pack(version string) (string, error) {
	c := func(src, dst string, mode os.FileMode) *files.Content {
		return &files.Content{Source: s.path(src), Destination: dst, FileInfo: &files.ContentFileInfo{Mode: mode}}
	}
	contents := files.Contents{
		c("bin/lvsd", "/usr/bin/lvsd", 0o755),
		c("bin/lvsctl", "/usr/bin/lvsctl", 0o755),
		c("lvsd.service", "/lib/systemd/system/lvsd.service", 0o644),
		c("completion/bash", "/usr/share/bash-completion/completions/lvsctl", 0o644),
		c("completion/zsh", "/usr/share/zsh/vendor-completions/_lvsctl", 0o644),
		c("completion/fish", "/usr/share/fish/vendor_completions.d/lvsctl.fish", 0o644),
		c("copyright", "/usr/share/doc/shoal/copyright", 0o644),
	}
	conf := c("lvsd.default", "/etc/default/lvsd", 0o644)
	conf.Type = files.TypeConfig
	contents = append(contents, conf)
	// lvsd's default --script-dir: root's, so that no one else can put a
	// program there that every router would run.
	contents = append(contents, &files.Content{Destination: "/etc/shoal/scripts", Type: files.TypeDir,
		FileInfo: &files.ContentFileInfo{Mode: 0o755, Owner: "root", Group: "root"}})
	pages, err := os.ReadDir(s.path("man"))
	if err != nil {
		return "", err
	}
	for _, p := range pages {
		section := strings.TrimSuffix(p.Name(), ".gz")
		section = section[strings.LastIndex(section, ".")+1:]
		contents = append(contents, c("man/"+p.Name(), "/usr/share/man/man"+section+"/"+p.Name(), 0o644))
	}
	mtime, _ := time.Parse(time.RFC3339, s.o.date)
	info := nfpm.WithDefaults(&nfpm.Info{
		Name:          "shoal",
		Arch:          runtime.GOARCH,
		Platform:      "linux",
		Version:       version,
		VersionSchema: "none",
		Section:       "net",
		Priority:      "optional",
		Maintainer:    s.o.maintainer,
		Homepage:      "https://github.com/shoal-lb/shoal",
		Description: "clustered LVS director: Raft-replicated IPVS and virtual IPs\n" +
			"shoal runs on three or five routers that form a Raft group and agree on\n" +
			"one virtual-server configuration. The leader holds the virtual IPs and\n" +
			"announces them with gratuitous ARP; every router keeps the same IPVS\n" +
			"table, so a takeover only moves addresses. It does the job of\n" +
			"keepalived's VRRP and checkers (and of Piranha's pulse and nanny), with\n" +
			"a gRPC API and the lvsctl client.\n" +
			"This package holds lvsd (the daemon, as lvsd.service) and lvsctl.",
		MTime: mtime,
		Overridables: nfpm.Overridables{
			Contents: contents,
			Suggests: []string{"ipvsadm"},
			Scripts: nfpm.Scripts{
				PostInstall: s.path("postinst"),
				PreRemove:   s.path("prerm"),
				PostRemove:  s.path("postrm"),
			},
			Deb: nfpm.Deb{Compression: "gzip"},
		},
	})
	if err := nfpm.Validate(info); err != nil {
		return "", fmt.Errorf("package: %w", err)
	}
	if err := os.MkdirAll(s.o.out, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(s.o.out, deb.Default.ConventionalFileName(info))
	tmp, err := os.CreateTemp(s.o.out, ".shoal-*.deb")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if err := deb.Default.Package(info, tmp); err != nil {
		tmp.Close()
		return "", fmt.Errorf("package: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	fmt.Fprintf(s.o.log, "deb: %s (%d files)\n", path, len(contents))
	return path, nil
}
