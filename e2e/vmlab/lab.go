// Package vmlab boots a Debian kernel that has IPVS under QEMU (software
// emulation, no KVM) and runs shoal against it: real lvsd processes in
// director namespaces, real servers and a client in their own namespaces,
// NAT and DR traffic through the VIPs, failover under load. The host kernel
// here and in CI has no IPVS; this lab is where the IPVS backend meets a real
// kernel.
//
// The host side (this package) fetches and caches the kernel package, picks
// the modules IPVS needs, builds static binaries and an initramfs, boots it and
// reads the guest's verdicts from the serial console. The guest side is
// ./guest, which runs as /init. See README.md.
package vmlab

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ErrUnavailable marks errors that mean the lab cannot run on this machine
// (no QEMU, no apt, no kernel package), as opposed to the lab failing.
var ErrUnavailable = errors.New("vm lab unavailable")

// Options configure one run of the lab.
type Options struct {
	Root      string   // the shoal module root (where go.mod is)
	Work      string   // scratch directory for binaries and the initramfs
	Scenarios []string // run only these (and their prerequisites' names must be listed too); empty = all
	// LvsdFlags are extra lvsd flags, e.g. Raft timing suited to emulation
	// speed (default in the guest: --profile=wan). Values may not contain
	// spaces or commas: they travel on the kernel command line.
	LvsdFlags []string
	// Scale is the number of services (of 10 real servers) of the opt-in
	// scale scenario; 0 = the guest's default.
	Scale    int
	MemoryMB int
	CPUs     int
	Console  func(line string) // every console line; nil discards
	Logf     func(format string, args ...any)
}

// Run prepares everything and boots the lab once, returning the guest's
// report. An error wrapping ErrUnavailable means the machine cannot run the
// lab at all.
func Run(ctx context.Context, o Options) (*Report, error) {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return nil, fmt.Errorf("%w: qemu-system-x86_64 not found (run e2e/vmlab/install.sh)", ErrUnavailable)
	}
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%w: %s not found: the lab takes its kernel from Debian's archive", ErrUnavailable, tool)
		}
	}
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	pkg, err := KernelPackage()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	t0 := time.Now()
	k, err := FetchKernel(cache, pkg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	logf("kernel %s from %s (%.1fs)", k.Version, filepath.Dir(filepath.Dir(k.Image)), time.Since(t0).Seconds())
	mods, err := k.ResolveModules(LabModules, OptionalModules)
	if err != nil {
		return nil, err
	}
	var modNames []string
	for _, m := range mods {
		modNames = append(modNames, m.Name)
	}
	logf("modules in load order: %s", strings.Join(modNames, " "))

	t0 = time.Now()
	bin := filepath.Join(o.Work, "bin")
	if err := goBuild(ctx, o.Root, bin, "./e2e/vmlab/guest"); err != nil {
		return nil, err
	}
	missing := map[string]string{}
	if err := goBuild(ctx, o.Root, bin, "./cmd/lvsd", "./cmd/lvsctl"); err != nil {
		missing["lvsd"] = err.Error()
		missing["lvsctl"] = err.Error()
	}
	if err := goTestBuild(ctx, o.Root, filepath.Join(bin, "dataplane.test"), "./dataplane"); err != nil {
		missing["dataplane.test"] = err.Error()
	}
	logf("binaries built (%.1fs); missing: %v", time.Since(t0).Seconds(), keysOf(missing))

	rd := NewInitramfs()
	rd.HostFile("init", filepath.Join(bin, "guest"), 0o755)
	// A binary that did not build is left out with the reason beside it;
	// the guest reports that reason instead of a bare "not found".
	for name, why := range missing {
		rd.File("lab/"+name+".missing", []byte(why), 0o644)
	}
	for _, name := range []string{"lvsd", "lvsctl", "dataplane.test"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err == nil && missing[name] == "" {
			rd.HostFile("bin/"+name, filepath.Join(bin, name), 0o755)
		}
	}
	// busybox is there for a human debugging the lab (and for exec checks);
	// the lab itself needs only the Go binaries. Only a static one runs in
	// the guest, which has no shared libraries.
	if bb, err := exec.LookPath("busybox"); err == nil && isStatic(bb) {
		rd.HostFile("bin/busybox", bb, 0o755)
		rd.Symlink("bin/sh", "busybox")
	}
	for _, d := range []string{"dev", "proc", "sys", "tmp", "run", "var/lib/shoal", "lab"} {
		rd.Dir(d)
	}
	var order strings.Builder
	for _, m := range mods {
		b, err := ModuleBytes(m.Path)
		if err != nil {
			return nil, err
		}
		rd.File("lib/modules/"+m.Name+".ko", b, 0o644)
		order.WriteString(m.Name + "\n")
	}
	rd.File("lib/modules/order", []byte(order.String()), 0o644)
	if slices.Contains(o.Scenarios, "scale-cluster") && o.MemoryMB == 0 {
		// Three lvsd with 100,000 real servers each, and their kernels'.
		o.MemoryMB = 3072
	}
	if slices.Contains(o.Scenarios, "scale") {
		// The scale scenario's baseline; without it the scenario still
		// measures shoal and says why there is no baseline.
		files, err := FetchIPVSAdm(cache)
		if err != nil {
			rd.File("lab/ipvsadm.missing", []byte(err.Error()), 0o644)
		}
		for guest, host := range files {
			rd.HostFile(guest, host, 0o755)
		}
	}
	initrd := filepath.Join(o.Work, "initrd.gz")
	f, err := os.Create(initrd)
	if err != nil {
		return nil, err
	}
	n, err := rd.WriteTo(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write initramfs: %w", err)
	}
	logf("initramfs %.1f MB", float64(n)/1e6)

	var app []string
	if len(o.Scenarios) > 0 {
		app = append(app, "vmlab.run="+strings.Join(o.Scenarios, ","))
	}
	if o.Scale > 0 {
		app = append(app, fmt.Sprintf("vmlab.scale=%d", o.Scale))
	}
	if len(o.LvsdFlags) > 0 {
		app = append(app, "vmlab.lvsd="+strings.Join(o.LvsdFlags, ","))
	}
	return Boot(ctx, BootOptions{
		QEMU: qemu, Kernel: k.Image, Initrd: initrd,
		MemoryMB: o.MemoryMB, CPUs: o.CPUs, Append: strings.Join(app, " "), Console: o.Console,
	})
}

// goBuild builds static linux/amd64 binaries of pkgs into dir.
func goBuild(ctx context.Context, root, dir string, pkgs ...string) error {
	args := append([]string{"build", "-trimpath", "-ldflags=-s -w", "-o", dir + "/"}, pkgs...)
	return goCmd(ctx, root, args...)
}

// goTestBuild builds pkg's test binary, static, as out.
func goTestBuild(ctx context.Context, root, out, pkg string) error {
	return goCmd(ctx, root, "test", "-c", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
}

func goCmd(ctx context.Context, root string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, lastLines(out, 10))
	}
	return nil
}

// isStatic reports whether an ELF executable needs no dynamic loader.
func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
