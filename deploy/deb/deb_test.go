package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestPackage builds the package as `make deb` does, into a temporary
// directory, and reads it back with an ar and tar reader of its own: the
// control fields, the conffile, the maintainer scripts, every file with
// its mode, the unit as installed, and lvsd's --version from the packed
// binary. dpkg-deb, where there is one, must read it the same way.
func TestPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds lvsd and lvsctl (-short)")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const (
		version = "v1.4.0-3-g0123456"
		commit  = "0123456789abcdef0123456789abcdef01234567"
		date    = "2026-12-07T03:00:00Z"
	)
	// The builder's own settings must not reach the man pages (lvsctl's
	// flag defaults come from these).
	t.Setenv("SHOAL_SERVER", "leak.invalid:7070")
	t.Setenv("SHOAL_CACERT", "/leak/ca.crt")
	var log bytes.Buffer
	path, err := build(ctx, options{root: root, out: t.TempDir(), version: version, commit: commit, date: date, maintainer: defaultMaintainer, log: &log})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	if want := "shoal_1.4.0+git3.g0123456_" + runtime.GOARCH + ".deb"; filepath.Base(path) != want {
		t.Errorf("package file %s, want %s", filepath.Base(path), want)
	}
	if strings.Contains(log.String(), "warning") {
		t.Errorf("the build warned:\n%s", log.String())
	}
	d := readDeb(t, path)

	// Control fields.
	fields := controlFields(t, d.control["control"].body)
	for k, want := range map[string]string{
		"Package": "shoal", "Version": "1.4.0+git3.g0123456", "Architecture": runtime.GOARCH,
		"Section": "net", "Priority": "optional", "Maintainer": defaultMaintainer,
		"Homepage": "https://github.com/shoal-lb/shoal", "Suggests": "ipvsadm",
	} {
		if fields[k] != want {
			t.Errorf("control %s: %q, want %q", k, fields[k], want)
		}
	}
	if !strings.HasPrefix(fields["Description"], "clustered LVS director") || fields["Installed-Size"] == "" {
		t.Errorf("control: %q", d.control["control"].body)
	}
	if _, ok := fields["Depends"]; ok {
		t.Errorf("static binaries depend on nothing: Depends: %s", fields["Depends"])
	}
	if got := d.control["conffiles"].body; got != "/etc/default/lvsd\n" {
		t.Errorf("conffiles %q", got)
	}
	// Maintainer scripts: only systemd bookkeeping; nothing enables or
	// starts lvsd, which needs its flags first.
	for _, name := range []string{"postinst", "prerm", "postrm"} {
		f, ok := d.control[name]
		if !ok || f.mode != 0o755 || !strings.HasPrefix(f.body, "#!/bin/sh\n") {
			t.Errorf("%s: %+v", name, f)
			continue
		}
		for _, bad := range []string{"systemctl start", "systemctl enable", "systemctl restart", "--now lvsd.service\n"} {
			if strings.Contains(f.body, bad) && name != "prerm" {
				t.Errorf("%s holds %q", name, bad)
			}
		}
		if name == "prerm" && (strings.Contains(f.body, "enable") || !strings.Contains(f.body, `"$1" = remove`)) {
			t.Errorf("prerm must act on removal only, never enable:\n%s", f.body)
		}
	}
	if !strings.Contains(d.control["postinst"].body, "try-restart lvsd.service") || !strings.Contains(d.control["postinst"].body, "daemon-reload") {
		t.Errorf("postinst:\n%s", d.control["postinst"].body)
	}

	// Every file, with its mode; the man pages are lvsd(8), lvsctl(1)
	// and one per lvsctl command.
	want := map[string]int64{
		"/usr/bin/lvsd":                                    0o755,
		"/usr/bin/lvsctl":                                  0o755,
		"/lib/systemd/system/lvsd.service":                 0o644,
		"/etc/default/lvsd":                                0o644,
		"/usr/share/bash-completion/completions/lvsctl":    0o644,
		"/usr/share/zsh/vendor-completions/_lvsctl":        0o644,
		"/usr/share/fish/vendor_completions.d/lvsctl.fish": 0o644,
		"/usr/share/doc/shoal/copyright":                   0o644,
		"/usr/share/man/man8/lvsd.8.gz":                    0o644,
		"/usr/share/man/man1/lvsctl.1.gz":                  0o644,
		"/usr/share/man/man1/lvsctl-version.1.gz":          0o644,
		"/usr/share/man/man1/lvsctl-cluster-status.1.gz":   0o644,
	}
	for name, mode := range want {
		f, ok := d.data[name]
		if !ok {
			t.Errorf("no %s in the package", name)
		} else if f.mode != mode || f.uid != 0 || f.gid != 0 {
			t.Errorf("%s: mode %o uid %d gid %d, want %o root", name, f.mode, f.uid, f.gid, mode)
		}
	}
	// The default --script-dir, root's alone.
	if f, ok := d.data["/etc/shoal/scripts/"]; !ok || f.mode != 0o755 || f.uid != 0 || f.gid != 0 {
		t.Errorf("/etc/shoal/scripts/: %+v (present %t), want a directory 0755 root", f, ok)
	}
	for name, f := range d.data {
		if _, ok := want[name]; ok || strings.HasSuffix(name, "/") {
			continue
		}
		if !strings.HasPrefix(name, "/usr/share/man/man1/lvsctl-") || !strings.HasSuffix(name, ".1.gz") || f.mode != 0o644 {
			t.Errorf("unexpected file %s (mode %o)", name, f.mode)
		}
	}
	for name, f := range d.data {
		if strings.HasSuffix(name, ".gz") {
			page := gunzip(t, name, f.body)
			if !strings.Contains(page, ".TH ") || !strings.Contains(page, "shoal "+version) {
				t.Errorf("%s is not a man page of this build:\n%.200s", name, page)
			}
			if strings.Contains(page, "leak") {
				t.Errorf("%s shows the builder's environment", name)
			}
		}
	}
	if page := gunzip(t, "lvsd.8.gz", d.data["/usr/share/man/man8/lvsd.8.gz"].body); !strings.Contains(page, `\fB\-\-bootstrap\fR`) {
		t.Errorf("lvsd(8) lacks --bootstrap")
	}
	for name, want := range map[string]string{
		"/usr/share/bash-completion/completions/lvsctl":    "# bash completion",
		"/usr/share/zsh/vendor-completions/_lvsctl":        "#compdef lvsctl",
		"/usr/share/fish/vendor_completions.d/lvsctl.fish": "# fish completion for lvsctl",
	} {
		if !strings.HasPrefix(d.data[name].body, want) {
			t.Errorf("%s begins %.60q, want %q", name, d.data[name].body, want)
		}
	}
	copyright := d.data["/usr/share/doc/shoal/copyright"].body
	for _, want := range []string{"github.com/hashicorp/raft v1.7.3, replaced by ./third_party/raft", "google.golang.org/grpc ", "Go standard library and runtime go1"} {
		if !strings.Contains(copyright, want) {
			t.Errorf("copyright lacks %q", want)
		}
	}
	if strings.Contains(copyright, "no license file") {
		t.Errorf("a module compiled in has no license file:\n%s", copyright[:strings.Index(copyright, "=====")])
	}

	// The unit as installed: the packaged binary, always restarted, only
	// the capabilities lvsd needs.
	unit := d.data["/lib/systemd/system/lvsd.service"].body
	for _, want := range []string{
		"\nExecStart=/usr/bin/lvsd $LVSD_OPTS\n", "\nRestart=always\n", "\nEnvironmentFile=-/etc/default/lvsd\n",
		"\nCapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW\n", "\nAmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW\n",
		"\nDynamicUser=yes\n", "\nStateDirectory=shoal\n", "\nNoNewPrivileges=yes\n", "\nWantedBy=multi-user.target\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	if strings.Contains(unit, "/usr/local/bin") {
		t.Error("unit names /usr/local/bin")
	}
	if def := d.data["/etc/default/lvsd"].body; !strings.Contains(def, "\nLVSD_OPTS=\"\"\n") || !strings.Contains(def, "#LVSD_OPTS=\"--id r1 ") {
		t.Errorf("/etc/default/lvsd:\n%s", def)
	}

	// The packed lvsd says which build it is.
	bin := filepath.Join(t.TempDir(), "lvsd")
	if err := os.WriteFile(bin, []byte(d.data["/usr/bin/lvsd"].body), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if want := "lvsd " + version + " (commit 0123456789ab, built " + date + ", go"; err != nil || !strings.HasPrefix(string(out), want) {
		t.Errorf("lvsd --version: %v %q, want %q...", err, out, want)
	}

	// dpkg-deb agrees.
	if _, err := exec.LookPath("dpkg-deb"); err == nil {
		out, err := exec.CommandContext(ctx, "dpkg-deb", "-f", path, "Package", "Version", "Architecture").CombinedOutput()
		if want := fmt.Sprintf("Package: shoal\nVersion: 1.4.0+git3.g0123456\nArchitecture: %s\n", runtime.GOARCH); err != nil || string(out) != want {
			t.Errorf("dpkg-deb -f: %v\n%s", err, out)
		}
		out, err = exec.CommandContext(ctx, "dpkg-deb", "-c", path).CombinedOutput()
		if err != nil || !strings.Contains(string(out), " ./usr/bin/lvsd\n") || !strings.Contains(string(out), " ./etc/default/lvsd\n") {
			t.Errorf("dpkg-deb -c: %v\n%s", err, out)
		}
	}
}

// debFile is one file of a package's control or data archive.
type debFile struct {
	mode     int64
	uid, gid int
	body     string
}

type debContents struct {
	control, data map[string]debFile
}

// readDeb reads a .deb: an ar archive of debian-binary, control.tar.gz and
// data.tar.gz.
func readDeb(t *testing.T, path string) debContents {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const magic = "!<arch>\n"
	if !bytes.HasPrefix(b, []byte(magic)) {
		t.Fatalf("%s is not an ar archive", path)
	}
	members := map[string][]byte{}
	var order []string
	for r := b[len(magic):]; len(r) >= 60; {
		name := strings.TrimRight(strings.TrimSpace(string(r[:16])), "/")
		var size int
		if _, err := fmt.Sscan(strings.TrimSpace(string(r[48:58])), &size); err != nil || 60+size > len(r) {
			t.Fatalf("ar member %q: bad size", name)
		}
		members[name] = r[60 : 60+size]
		order = append(order, name)
		r = r[60+size+size%2:]
	}
	if got := strings.Join(order, " "); got != "debian-binary control.tar.gz data.tar.gz" {
		t.Fatalf("ar members %s", got)
	}
	if string(members["debian-binary"]) != "2.0\n" {
		t.Errorf("debian-binary %q", members["debian-binary"])
	}
	return debContents{control: readTarGz(t, members["control.tar.gz"], ""), data: readTarGz(t, members["data.tar.gz"], "/")}
}

// readTarGz returns the regular files of a tar.gz by path, each after
// prefix.
func readTarGz(t *testing.T, b []byte, prefix string) map[string]debFile {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string]debFile{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeDir {
			files[prefix+strings.TrimPrefix(h.Name, "./")] = debFile{mode: h.Mode & 0o7777, uid: h.Uid, gid: h.Gid}
			continue
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[prefix+strings.TrimPrefix(h.Name, "./")] = debFile{mode: h.Mode & 0o7777, uid: h.Uid, gid: h.Gid, body: string(body)}
	}
}

// controlFields parses a control file; a continuation line belongs to the
// field before it.
func controlFields(t *testing.T, s string) map[string]string {
	t.Helper()
	fields := map[string]string{}
	var last string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, " ") && last != "" {
			fields[last] += "\n" + l[1:]
			continue
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			t.Errorf("control line %q", l)
			continue
		}
		last = k
		fields[k] = strings.TrimSpace(v)
	}
	return fields
}

func gunzip(t *testing.T, name, s string) string {
	t.Helper()
	zr, err := gzip.NewReader(strings.NewReader(s))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return string(b)
}
