package vmlab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The guest reports on the serial console, one line per event, so that the
// host needs nothing but QEMU's stdout to know what happened:
//
//	VMLAB PASS <name> [detail]
//	VMLAB FAIL <name>: <why>
//	VMLAB SKIP <name>: <why>
//	VMLAB INFO <name>: <figure an operator cares about>
//	VMLAB DONE
//
// Kernel messages share the console and may land in the middle of a line, so
// the marker is searched for anywhere in a line.
const marker = "VMLAB "

// Result is one reported line.
type Result struct {
	Kind   string // PASS, FAIL, SKIP or INFO
	Name   string
	Detail string
}

// Report is what one boot of the lab produced.
type Report struct {
	Results  []Result
	Done     bool          // the guest reached VMLAB DONE
	Duration time.Duration // from QEMU start to exit
	Lockup   string        // the guest kernel's soft-lockup report, if it wedged
}

// ErrGuestLockup means the emulated guest kernel reported a soft lockup: its
// CPUs stopped scheduling, so nothing the lab measures after it means
// anything. It has been seen under TCG at lab start-up, with both vCPUs stuck
// in the kernel for minutes; Boot stops QEMU at the first report instead of
// waiting for the deadline, and the caller may boot again.
var ErrGuestLockup = errors.New("guest kernel soft lockup")

// Scenarios returns the PASS/FAIL/SKIP verdicts in the order they came.
func (r *Report) Scenarios() []Result {
	var out []Result
	for _, x := range r.Results {
		if x.Kind != "INFO" {
			out = append(out, x)
		}
	}
	return out
}

// BootOptions says what to boot and how long to wait for it.
type BootOptions struct {
	QEMU     string // default qemu-system-x86_64
	Kernel   string
	Initrd   string
	MemoryMB int    // default 1024
	CPUs     int    // default 2
	Append   string // extra kernel command line, read by the guest from /proc/cmdline
	// Console receives every console line as it arrives (the kernel's and the
	// guest's), e.g. a test log or a file; nil discards.
	Console func(line string)
}

// Boot runs QEMU with software emulation and no network device, collects the
// guest's report lines until the guest powers off, and returns them. ctx
// bounds the whole boot: when it ends QEMU is killed and the report so far is
// returned with the context's error.
func Boot(ctx context.Context, o BootOptions) (*Report, error) {
	if o.QEMU == "" {
		o.QEMU = "qemu-system-x86_64"
	}
	if o.MemoryMB == 0 {
		o.MemoryMB = 1024
	}
	if o.CPUs == 0 {
		o.CPUs = 2
	}
	args := []string{
		"-nographic", "-no-reboot", "-nic", "none",
		// Multi-threaded TCG lets the guest's two CPUs use two host cores.
		"-accel", "tcg,thread=multi",
		"-m", strconv.Itoa(o.MemoryMB), "-smp", strconv.Itoa(o.CPUs),
		"-kernel", o.Kernel, "-initrd", o.Initrd,
		// panic=-1 with -no-reboot: if /init dies, QEMU exits instead of hanging.
		"-append", strings.TrimSpace("console=ttyS0 quiet panic=-1 " + o.Append),
	}
	start := time.Now()
	qctx, stop := context.WithCancel(ctx)
	defer stop()
	cmd := exec.CommandContext(qctx, o.QEMU, args...)
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("qemu stdout: %w", err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.QEMU, err)
	}
	rep := &Report{}
	readConsole(stdout, rep, o.Console, stop)
	err = cmd.Wait()
	rep.Duration = time.Since(start)
	if rep.Lockup != "" {
		return rep, fmt.Errorf("%w after %s: %s", ErrGuestLockup, rep.Duration.Round(time.Second), rep.Lockup)
	}
	if ctx.Err() != nil {
		return rep, fmt.Errorf("vm did not finish within its deadline (%s): %w", rep.Duration.Round(time.Second), ctx.Err())
	}
	if !rep.Done {
		if err == nil {
			err = errors.New("guest stopped without reporting VMLAB DONE")
		}
		return rep, fmt.Errorf("qemu: %w", err)
	}
	return rep, nil
}

// ansi matches the terminal escapes the firmware writes before the kernel
// takes over the console.
var ansi = regexp.MustCompile(`\x1b(\[[0-9;?]*[a-zA-Z]|c)`)

// readConsole collects report lines until QEMU's output ends; at the guest
// kernel's first soft-lockup report it records it and calls wedged.
func readConsole(r io.Reader, rep *Report, console func(string), wedged func()) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := ansi.ReplaceAllString(strings.TrimRight(sc.Text(), "\r"), "")
		if console != nil {
			console(line)
		}
		if rep.Lockup == "" && strings.Contains(line, "BUG: soft lockup") {
			rep.Lockup = strings.TrimSpace(line)
			wedged()
		}
		res, ok := ParseLine(line)
		if !ok {
			continue
		}
		if res.Kind == "DONE" {
			rep.Done = true
			continue
		}
		rep.Results = append(rep.Results, res)
	}
}

// ParseLine finds a report line in one console line.
func ParseLine(line string) (Result, bool) {
	i := strings.Index(line, marker)
	if i < 0 {
		return Result{}, false
	}
	rest := line[i+len(marker):]
	kind, rest, _ := strings.Cut(rest, " ")
	switch kind {
	case "DONE":
		return Result{Kind: kind}, true
	case "PASS", "FAIL", "SKIP", "INFO":
	default:
		return Result{}, false
	}
	name, detail, _ := strings.Cut(rest, " ")
	name = strings.TrimSuffix(name, ":")
	return Result{Kind: kind, Name: name, Detail: strings.TrimSpace(detail)}, true
}
