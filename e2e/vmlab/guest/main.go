// Command vmguest is the VM lab's /init: it runs inside a QEMU guest booted
// from a Debian kernel that has IPVS, builds the lab's network out of network
// namespaces, veth pairs and bridges, runs the scenarios and reports each one
// on the serial console in the protocol vmlab.ParseLine reads.
//
// The same binary also provides the small programs the lab runs inside
// namespaces (an HTTP server that answers with its name, an HTTP client that
// prints which server answered), so the initramfs needs nothing but this
// binary, lvsd, lvsctl and the modules. It must never touch anything outside
// the VM: the guest has no network device to the host.
package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) > 1 {
		if err := subcommand(os.Args[1], os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "vmguest %s: %v\n", os.Args[1], err)
			os.Exit(1)
		}
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "vmguest: run as /init inside the VM lab, or with a subcommand (httpd, get, stream, hold)")
		os.Exit(2)
	}
	runInit()
}

// reporter writes the lab's protocol lines. One write per line, under a lock,
// so that concurrent reports and log lines never interleave.
type reporter struct {
	mu    sync.Mutex
	fails int
	start time.Time
}

func (r *reporter) line(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	os.Stdout.WriteString(fmt.Sprintf(format, a...) + "\n")
}

func (r *reporter) pass(name, detail string) { r.line("VMLAB PASS %s %s", name, detail) }
func (r *reporter) skip(name, why string)    { r.line("VMLAB SKIP %s: %s", name, oneLine(why)) }
func (r *reporter) info(name, format string, a ...any) {
	r.line("VMLAB INFO %s: %s", name, oneLine(fmt.Sprintf(format, a...)))
}
func (r *reporter) fail(name string, err error) {
	r.mu.Lock()
	r.fails++
	r.mu.Unlock()
	r.line("VMLAB FAIL %s: %s", name, oneLine(err.Error()))
}

// logf is progress for a human reading the console; the host ignores it.
func (r *reporter) logf(format string, a ...any) {
	r.line("vmlab %6.1fs "+format, append([]any{time.Since(r.start).Seconds()}, a...)...)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

var rep = &reporter{start: time.Now()}

func runInit() {
	defer poweroff()
	if err := mountBasics(); err != nil {
		rep.fail("boot", err)
		return
	}
	var uts unix.Utsname
	unix.Uname(&uts)
	rep.info("boot", "kernel %s", unix.ByteSliceToString(uts.Release[:]))
	n, err := loadModules("/lib/modules")
	if err != nil {
		rep.fail("boot", err)
		return
	}
	rep.pass("boot", fmt.Sprintf("%d modules loaded", n))

	// Runs until poweroff; it owns nothing that needs stopping.
	go stalls.run()
	opts := parseCmdline()
	runScenarios(opts)
	rep.line("VMLAB DONE")
}

// mountBasics mounts what the kernel does not: an initramfs starts with an
// empty root. The console is reopened on devtmpfs because the archive has no
// /dev/console node for the kernel to hand to init.
func mountBasics() error {
	for _, m := range []struct{ src, dst, fs string }{
		{"devtmpfs", "/dev", "devtmpfs"},
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"tmpfs", "/tmp", "tmpfs"},
		{"tmpfs", "/run", "tmpfs"},
	} {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fs, 0, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s on %s: %w", m.fs, m.dst, err)
		}
	}
	if f, err := os.OpenFile("/dev/console", os.O_RDWR, 0); err == nil {
		unix.Dup3(int(f.Fd()), 1, 0)
		unix.Dup3(int(f.Fd()), 2, 0)
	}
	os.MkdirAll("/var/lib/shoal", 0o755)
	return nil
}

// loadModules inserts the modules listed in dir/order, which the host wrote
// with every dependency before its users.
func loadModules(dir string) (int, error) {
	f, err := os.Open(filepath.Join(dir, "order"))
	if err != nil {
		return 0, fmt.Errorf("module list: %w", err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" {
			continue
		}
		m, err := os.Open(filepath.Join(dir, name+".ko"))
		if err != nil {
			return n, fmt.Errorf("module %s: %w", name, err)
		}
		err = unix.FinitModule(int(m.Fd()), "", 0)
		m.Close()
		if err != nil && err != unix.EEXIST {
			return n, fmt.Errorf("insmod %s: %w", name, err)
		}
		n++
	}
	return n, sc.Err()
}

func poweroff() {
	if r := recover(); r != nil {
		rep.fail("guest", fmt.Errorf("panic: %v", r))
	}
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

// options are read from the kernel command line, which the host sets.
type options struct {
	run       map[string]bool // scenarios to run; empty = all
	lvsdFlags []string        // extra lvsd flags, e.g. Raft timing for emulation speed
	scale     int             // services of the scale scenario; 0 = defaultScale
}

func parseCmdline() options {
	o := options{run: map[string]bool{}}
	b, _ := os.ReadFile("/proc/cmdline")
	for _, f := range strings.Fields(string(b)) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "vmlab.run":
			for _, s := range strings.Split(v, ",") {
				if s != "" {
					o.run[s] = true
				}
			}
		case "vmlab.scale":
			o.scale, _ = strconv.Atoi(v)
		case "vmlab.lvsd":
			for _, s := range strings.Split(v, ",") {
				if s != "" {
					o.lvsdFlags = append(o.lvsdFlags, s)
				}
			}
		}
	}
	return o
}

func (o options) wants(name string) bool { return len(o.run) == 0 || o.run[name] }
