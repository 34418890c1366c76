package failover

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// rtProbe runs cyclictest beside the load: one SCHED_FIFO 99 thread pinned
// to each CPU, waking every millisecond. Nothing in the lab runs at that
// priority, so a wakeup late by many milliseconds is time in which the
// guest's kernel did not run that CPU's most urgent thread: the hypervisor
// took the vCPU, or the kernel itself was busy. A leader stall at the same
// moment is then the host's, not lvsd's.
type rtProbe struct {
	start time.Time
	done  chan struct{}

	stderr strings.Builder
	err    error // how cyclictest ended, read after done

	mu      sync.Mutex
	samples int
	late    []lateWake // those over lateWakeMin
	worst   time.Duration
}

// lateWake is one wakeup of the probe that came late.
type lateWake struct {
	cpu int
	at  time.Time // when it was due, to within a millisecond or so
	by  time.Duration
}

const (
	rtProbeInterval = time.Millisecond
	lateWakeMin     = 5 * time.Millisecond
)

// startRTProbe starts cyclictest for d; it returns nil, nil when cyclictest
// (Debian's rt-tests) is not installed.
func startRTProbe(ctx context.Context, d time.Duration) (*rtProbe, error) {
	if _, err := exec.LookPath("cyclictest"); err != nil {
		return nil, nil
	}
	// -d 0: every thread at the same interval, so a sample's loop count
	// says when it was due.
	cmd := exec.CommandContext(ctx, "cyclictest", "-q", "-m", "-t", "-a", "-p", "99", "-d", "0",
		"-i", strconv.Itoa(int(rtProbeInterval/time.Microsecond)), "-v", "-D", strconv.Itoa(int(d.Seconds())))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &rtProbe{done: make(chan struct{})}
	cmd.Stderr = &p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cyclictest: %w", err)
	}
	go func() {
		defer close(p.done)
		p.read(out)
		p.err = cmd.Wait()
	}()
	return p, nil
}

// read takes cyclictest's verbose lines, "thread:loop:latency µs".
func (p *rtProbe) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) != 3 {
			continue
		}
		cpu, err1 := strconv.Atoi(strings.TrimSpace(f[0]))
		loop, err2 := strconv.Atoi(strings.TrimSpace(f[1]))
		us, err3 := strconv.Atoi(strings.TrimSpace(f[2]))
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		by := time.Duration(us) * time.Microsecond
		p.mu.Lock()
		p.samples++
		p.worst = max(p.worst, by)
		if by > lateWakeMin {
			p.late = append(p.late, lateWake{cpu: cpu, at: p.start.Add(time.Duration(loop+1) * rtProbeInterval), by: by})
		}
		p.mu.Unlock()
	}
}

// wait waits for cyclictest to end and returns the late wakeups, or an
// error when it measured nothing.
func (p *rtProbe) wait() (samples int, late []lateWake, worst time.Duration, err error) {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.samples == 0 {
		return 0, nil, 0, fmt.Errorf("cyclictest measured nothing: %v %s", p.err, strings.TrimSpace(p.stderr.String()))
	}
	return p.samples, p.late, p.worst, nil
}

// rtProbeNote summarises the probe for the load row.
func rtProbeNote(samples int, late []lateWake, worst time.Duration) string {
	n10, n20 := 0, 0
	for _, l := range late {
		if l.by > 10*time.Millisecond {
			n10++
		}
		if l.by > 20*time.Millisecond {
			n20++
		}
	}
	return fmt.Sprintf("real-time probe (cyclictest -p99, 1 ms, a thread per CPU): %d of %d wakeups late over 5 ms, %d over 10 ms, %d over 20 ms, worst %s ms",
		len(late), samples, n10, n20, ms(worst))
}
