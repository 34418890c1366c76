package vmlab

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Kernel is an extracted Debian kernel package: the image QEMU boots and the
// tree of loadable modules that goes into the initramfs.
type Kernel struct {
	Package string // e.g. linux-image-6.1.0-50-cloud-amd64
	Version string // the modules directory name, e.g. 6.1.0-50-cloud-amd64
	Image   string // path of vmlinuz
	Modules string // path of lib/modules/<Version>
}

// Module is one kernel module file, in load order among its fellows.
type Module struct {
	Name string // canonical name (dashes as underscores)
	Path string // file in the extracted package; may be compressed
}

// LabModules are the modules the lab needs beyond what the cloud kernel has
// built in: IPVS with every scheduler shoal accepts, and the virtual network
// devices the lab is made of. Their dependencies are found by ResolveModules.
var LabModules = []string{
	"ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_lc", "ip_vs_wlc", "ip_vs_lblc",
	"ip_vs_lblcr", "ip_vs_dh", "ip_vs_sh", "ip_vs_sed", "ip_vs_nq", "ip_vs_mh",
	"ip_vs_fo", "ip_vs_ovf", "veth", "bridge", "ipip",
}

// OptionalModules are loaded when the kernel has them as modules; when it
// does not they are built in (or absent, which the scenarios report).
//
// xfrm_user and nfnetlink are here because netlink.NewHandle without a family
// list opens NETLINK_XFRM and NETLINK_NETFILTER sockets too; a real system
// autoloads their modules through modprobe on the first such socket, and the
// guest has no modprobe to do so.
var OptionalModules = []string{"af_packet", "ip_vs_twos", "dummy", "xfrm_user", "nfnetlink"}

// CacheDir is where downloaded kernels are kept between runs:
// $SHOAL_VMLAB_CACHE, else $XDG_CACHE_HOME/shoal-vmlab, else ~/.cache/shoal-vmlab.
func CacheDir() (string, error) {
	if d := os.Getenv("SHOAL_VMLAB_CACHE"); d != "" {
		return d, nil
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find cache dir: %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "shoal-vmlab"), nil
}

// KernelPackage names the kernel package to boot: $SHOAL_VMLAB_KERNEL if set,
// else what Debian's linux-image-cloud-amd64 meta-package currently depends on
// (the cloud flavour is small and has IPVS as modules), else the newest
// linux-image-*-cloud-amd64 that apt-cache lists.
func KernelPackage() (string, error) {
	if p := os.Getenv("SHOAL_VMLAB_KERNEL"); p != "" {
		return p, nil
	}
	out, err := exec.Command("apt-cache", "depends", "linux-image-cloud-amd64").Output()
	if err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
				return f[1], nil
			}
		}
	}
	out, err = exec.Command("apt-cache", "search", "--names-only", `^linux-image-[0-9.]+-[0-9]+-cloud-amd64$`).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache search linux-image-*-cloud-amd64: %w", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	if len(names) == 0 {
		return "", errors.New("apt-cache lists no linux-image-*-cloud-amd64 package (apt-get update?)")
	}
	sort.Slice(names, func(i, j int) bool { return versionLess(names[i], names[j]) })
	return names[len(names)-1], nil
}

// versionLess orders package names by their embedded numbers so that
// 6.1.0-9 sorts before 6.1.0-50.
func versionLess(a, b string) bool {
	na, nb := numbers(a), numbers(b)
	for i := 0; i < len(na) && i < len(nb); i++ {
		if na[i] != nb[i] {
			return na[i] < nb[i]
		}
	}
	return len(na) < len(nb)
}

func numbers(s string) []int {
	var out []int
	n, in := 0, false
	for _, r := range s {
		if r >= '0' && r <= '9' {
			n, in = n*10+int(r-'0'), true
			continue
		}
		if in {
			out = append(out, n)
		}
		n, in = 0, false
	}
	if in {
		out = append(out, n)
	}
	return out
}

// FetchKernel returns the extracted kernel package pkg from the cache dir,
// downloading it with `apt-get download` and unpacking it with `dpkg-deb -x`
// on first use. A half-finished extraction is never used: the package lands
// in a temporary directory that is renamed into place only when complete.
func FetchKernel(cache, pkg string) (*Kernel, error) {
	dir := filepath.Join(cache, pkg)
	if _, err := os.Stat(dir); err != nil {
		if err := os.MkdirAll(cache, 0o755); err != nil {
			return nil, fmt.Errorf("create kernel cache: %w", err)
		}
		tmp, err := os.MkdirTemp(cache, ".fetch-")
		if err != nil {
			return nil, fmt.Errorf("create kernel cache: %w", err)
		}
		defer os.RemoveAll(tmp)
		// apt's download sandbox user must be able to write here.
		if err := os.Chmod(tmp, 0o777); err != nil {
			return nil, fmt.Errorf("create kernel cache: %w", err)
		}
		cmd := exec.Command("apt-get", "download", "-q", pkg)
		cmd.Dir = tmp
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("apt-get download %s: %w: %s", pkg, err, lastLines(out, 5))
		}
		debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
		if len(debs) != 1 {
			return nil, fmt.Errorf("apt-get download %s: expected one .deb, found %d", pkg, len(debs))
		}
		root := filepath.Join(tmp, "root")
		if out, err := exec.Command("dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("dpkg-deb -x %s: %w: %s", debs[0], err, lastLines(out, 5))
		}
		// Keep only what the lab uses; the firmware and docs are dead weight.
		os.RemoveAll(filepath.Join(root, "usr"))
		if err := os.Rename(root, dir); err != nil {
			return nil, fmt.Errorf("install kernel into cache: %w", err)
		}
	}
	images, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	mods, _ := filepath.Glob(filepath.Join(dir, "lib", "modules", "*"))
	if len(images) != 1 || len(mods) != 1 {
		return nil, fmt.Errorf("kernel cache %s: want one boot/vmlinuz-* and one lib/modules/*, found %d and %d (delete it to refetch)", dir, len(images), len(mods))
	}
	return &Kernel{Package: pkg, Version: filepath.Base(mods[0]), Image: images[0], Modules: mods[0]}, nil
}

// ResolveModules returns want and everything they depend on, dependencies
// before their users, which is the order insmod needs. Debian's package has no
// modules.dep (depmod runs at install time), so the dependencies are read from
// each module's own .modinfo section: the `depends=` string modinfo prints.
// Names in optional that the package lacks are skipped; a missing name in want
// is an error.
func (k *Kernel) ResolveModules(want, optional []string) ([]Module, error) {
	index := map[string]string{}
	err := filepath.WalkDir(filepath.Join(k.Modules, "kernel"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		name := d.Name()
		for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
			if strings.HasSuffix(name, ext) {
				index[canonical(strings.TrimSuffix(name, ext))] = p
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index modules of %s: %w", k.Version, err)
	}

	var order []Module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		switch state[name] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(chain, name), " -> "))
		}
		path, ok := index[name]
		if !ok {
			return fmt.Errorf("module %s not in %s (needed by %s)", name, k.Package, strings.Join(chain, " -> "))
		}
		state[name] = 1
		deps, err := moduleDepends(path)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, Module{Name: name, Path: path})
		return nil
	}
	for _, name := range want {
		if err := visit(canonical(name), []string{"lab"}); err != nil {
			return nil, err
		}
	}
	for _, name := range optional {
		if _, ok := index[canonical(name)]; !ok {
			continue
		}
		if err := visit(canonical(name), []string{"lab"}); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func canonical(name string) string { return strings.ReplaceAll(name, "-", "_") }

// ModuleBytes returns the module file uncompressed, ready for finit_module.
func ModuleBytes(path string) ([]byte, error) {
	var tool string
	switch {
	case strings.HasSuffix(path, ".xz"):
		tool = "xz"
	case strings.HasSuffix(path, ".zst"):
		tool = "zstd"
	case strings.HasSuffix(path, ".gz"):
		tool = "gzip"
	default:
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read module: %w", err)
		}
		return b, nil
	}
	out, err := exec.Command(tool, "-dc", path).Output()
	if err != nil {
		return nil, fmt.Errorf("%s -dc %s: %w", tool, path, err)
	}
	return out, nil
}

// moduleDepends reads the depends= entry of a module's .modinfo section.
func moduleDepends(path string) ([]string, error) {
	b, err := ModuleBytes(path)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("parse module %s: %w", path, err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s has no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo of %s: %w", path, err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d = strings.TrimSpace(d); d != "" {
					deps = append(deps, canonical(d))
				}
			}
			return deps, nil
		}
	}
	return nil, nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
