package vmlab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ipvsadmPackages are Debian's ipvsadm and the shared libraries it links
// (ldd /sbin/ipvsadm: libnl-genl-3, libnl-3, libpopt, libc). The guest has no
// libraries of its own, so they come along with the dynamic loader.
var ipvsadmPackages = []string{"ipvsadm", "libnl-3-200", "libnl-genl-3-200", "libpopt0", "libc6"}

// ipvsadmFiles are where the guest wants each file (the loader where
// ipvsadm's PT_INTERP names it, the libraries in the loader's default
// path) and the end of its path in the unpacked packages (a soname, which
// may be a symlink there; the initramfs gets the file it points to).
var ipvsadmFiles = map[string]string{
	"sbin/ipvsadm":                             "sbin/ipvsadm",
	"lib64/ld-linux-x86-64.so.2":               "ld-linux-x86-64.so.2",
	"lib/x86_64-linux-gnu/libc.so.6":           "libc.so.6",
	"lib/x86_64-linux-gnu/libnl-3.so.200":      "libnl-3.so.200",
	"lib/x86_64-linux-gnu/libnl-genl-3.so.200": "libnl-genl-3.so.200",
	"lib/x86_64-linux-gnu/libpopt.so.0":        "libpopt.so.0",
}

// FetchIPVSAdm unpacks Debian's ipvsadm and its libraries into the cache
// (once: `apt-get download`, `dpkg-deb -x`) and returns the files the
// initramfs needs, guest path → host path. The scale scenario measures
// shoal against `ipvsadm -R` of the same table in the same VM.
func FetchIPVSAdm(cache string) (map[string]string, error) {
	dir := filepath.Join(cache, "ipvsadm")
	if _, err := os.Stat(dir); err != nil {
		if err := os.MkdirAll(cache, 0o755); err != nil {
			return nil, fmt.Errorf("create ipvsadm cache: %w", err)
		}
		tmp, err := os.MkdirTemp(cache, ".fetch-")
		if err != nil {
			return nil, fmt.Errorf("create ipvsadm cache: %w", err)
		}
		defer os.RemoveAll(tmp)
		// apt's download sandbox user must be able to write here.
		if err := os.Chmod(tmp, 0o777); err != nil {
			return nil, fmt.Errorf("create ipvsadm cache: %w", err)
		}
		cmd := exec.Command("apt-get", append([]string{"download", "-q"}, ipvsadmPackages...)...)
		cmd.Dir = tmp
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("apt-get download %v: %w: %s", ipvsadmPackages, err, lastLines(out, 5))
		}
		debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
		if len(debs) != len(ipvsadmPackages) {
			return nil, fmt.Errorf("apt-get download %v: expected %d .deb files, found %d", ipvsadmPackages, len(ipvsadmPackages), len(debs))
		}
		root := filepath.Join(tmp, "root")
		for _, deb := range debs {
			if out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("dpkg-deb -x %s: %w: %s", deb, err, lastLines(out, 5))
			}
		}
		if err := os.Rename(root, dir); err != nil {
			return nil, fmt.Errorf("install ipvsadm into cache: %w", err)
		}
	}
	found := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		for guest, name := range ipvsadmFiles {
			if strings.HasSuffix(path, "/"+name) && found[guest] == "" {
				found[guest] = path
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ipvsadm cache %s: %w", dir, err)
	}
	for guest, name := range ipvsadmFiles {
		if found[guest] == "" {
			return nil, fmt.Errorf("ipvsadm cache %s: no %s (delete it to refetch)", dir, name)
		}
	}
	return found, nil
}
