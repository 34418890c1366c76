package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// defaultRTPriority is what --realtime alone means: the priority of the
// kernel's threaded IRQ handlers (SCHED_FIFO 50) and a common
// vrrp_rt_priority for keepalived. Higher would let a busy lvsd delay the
// network interrupts it depends on.
const defaultRTPriority = 50

// rtPriority is --realtime[=PRIORITY]: 0 means off. It is a "bool flag" to
// the flag package so that a bare --realtime is accepted.
type rtPriority int

func (p *rtPriority) String() string { return strconv.Itoa(int(*p)) }

// IsBoolFlag lets --realtime stand alone; flag then calls Set("true").
func (p *rtPriority) IsBoolFlag() bool { return true }

func (p *rtPriority) Set(s string) error {
	switch s {
	case "true":
		*p = defaultRTPriority
		return nil
	case "false":
		*p = 0
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 99 {
		return fmt.Errorf("want a SCHED_RR priority 1-99, got %q", s)
	}
	*p = rtPriority(n)
	return nil
}

// setRealtime puts every thread of this process under SCHED_RR at prio.
//
// Why: under full CPU load a heartbeat that waits a few milliseconds for a
// CPU behind ordinary processes makes the leader's lease run out, and the
// fast profile then changes leader for nothing (measured in
// e2e/failover/README.md). A real-time policy lets lvsd's threads preempt
// those processes the moment a packet or timer wakes them.
//
// The policy is per thread on Linux and the Go runtime has already started
// several threads by the time main runs, so every task in /proc/self/task
// is set. Threads created later inherit the policy of the thread that
// creates them (SCHED_FLAG_RESET_ON_FORK is deliberately not set: it would
// also drop the policy for the runtime's future threads), so once all
// current threads are set the whole process stays real-time. A thread that
// appears while the list is walked was created by one not yet set, so the
// walk repeats until a pass finds no thread it has not seen.
//
// Processes lvsd starts (an external health-check program) inherit the
// policy too; they are expected to be short.
//
// It returns how many threads it set.
func setRealtime(prio int) (int, error) {
	done := map[int]bool{}
	for pass := 0; pass < 10; pass++ {
		tids, err := threadIDs()
		if err != nil {
			return len(done), err
		}
		fresh := 0
		for _, tid := range tids {
			if done[tid] {
				continue
			}
			fresh++
			attr := unix.SchedAttr{Policy: unix.SCHED_RR, Priority: uint32(prio)}
			if err := unix.SchedSetAttr(tid, &attr, 0); err != nil {
				if errors.Is(err, unix.ESRCH) {
					continue // the thread exited meanwhile
				}
				if errors.Is(err, unix.EPERM) {
					return len(done), fmt.Errorf("--realtime: set SCHED_RR priority %d on thread %d: %w "+
						"(needs CAP_SYS_NICE or an RLIMIT_RTPRIO of at least %d; under systemd use "+
						"CPUSchedulingPolicy=rr and CPUSchedulingPriority=%d instead of the flag)", prio, tid, err, prio, prio)
				}
				return len(done), fmt.Errorf("--realtime: set SCHED_RR priority %d on thread %d: %w", prio, tid, err)
			}
			done[tid] = true
		}
		if fresh == 0 {
			return len(done), nil
		}
	}
	return len(done), errors.New("--realtime: threads kept appearing while setting SCHED_RR; some may run without it")
}

// threadIDs lists this process's threads.
func threadIDs() ([]int, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, fmt.Errorf("list threads: %w", err)
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}
