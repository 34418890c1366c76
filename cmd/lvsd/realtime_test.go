package main

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRealtimeFlag(t *testing.T) {
	tests := []struct {
		args []string
		want rtPriority
		bad  bool
	}{
		{nil, 0, false},
		{[]string{"--realtime"}, 50, false},
		{[]string{"--realtime=70"}, 70, false},
		{[]string{"--realtime=false"}, 0, false},
		{[]string{"--realtime=0"}, 0, true},
		{[]string{"--realtime=100"}, 0, true},
		{[]string{"--realtime=high"}, 0, true},
	}
	for _, tt := range tests {
		f, err := parseFlags(append([]string{"--id", "n1"}, tt.args...))
		if (err != nil) != tt.bad || (!tt.bad && f.realtime != tt.want) {
			t.Errorf("%v: %+v %v, want %d", tt.args, f, err, tt.want)
		}
	}
}

// TestSetRealtime runs in a child process, because the policy it sets
// would otherwise stay on the test binary's threads.
func TestSetRealtime(t *testing.T) {
	if os.Getenv("LVSD_REALTIME_CHILD") == "" {
		if os.Geteuid() != 0 {
			t.Skip("setting SCHED_RR needs root (CAP_SYS_NICE)")
		}
		runChild(t, "TestSetRealtime")
		return
	}
	// More threads than the runtime starts on its own, some locked, so
	// there is something to walk.
	var ready, release sync.WaitGroup
	release.Add(1)
	for range 4 {
		ready.Add(1)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			ready.Done()
			release.Wait()
		}()
	}
	ready.Wait()
	defer release.Done()

	n, err := setRealtime(33)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			t.Skipf("not permitted here: %v", err)
		}
		t.Fatal(err)
	}
	if n < 5 {
		t.Errorf("set %d threads, want at least 5", n)
	}
	check := func(when string) {
		// t.Error, not t.Fatal: this also runs on other goroutines.
		tids, err := threadIDs()
		if err != nil {
			t.Error(err)
			return
		}
		for _, tid := range tids {
			a, err := unix.SchedGetAttr(tid, 0)
			if errors.Is(err, unix.ESRCH) {
				continue
			}
			if err != nil {
				t.Error(err)
				continue
			}
			if a.Policy != unix.SCHED_RR || a.Priority != 33 {
				t.Errorf("%s: thread %d has policy %d priority %d, want SCHED_RR 33", when, tid, a.Policy, a.Priority)
			}
		}
	}
	check("after setRealtime")
	// A thread the runtime creates afterwards inherits the policy.
	var more sync.WaitGroup
	for range 4 {
		more.Add(1)
		go func() {
			defer more.Done()
			runtime.LockOSThread()
			check("new thread")
		}()
	}
	more.Wait()
}

func TestSetRealtimeNotPermitted(t *testing.T) {
	if os.Getenv("LVSD_REALTIME_CHILD") == "" {
		if os.Geteuid() != 0 {
			t.Skip("dropping the permission needs root to start with")
		}
		runChild(t, "TestSetRealtimeNotPermitted")
		return
	}
	// Without CAP_SYS_NICE and with RLIMIT_RTPRIO 0 the kernel refuses
	// SCHED_RR: become nobody (Go changes the IDs of every thread).
	if err := unix.Setrlimit(unix.RLIMIT_RTPRIO, &unix.Rlimit{Cur: 0, Max: 0}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setresuid(65534, 65534, 65534); err != nil {
		t.Skipf("cannot drop to nobody: %v", err)
	}
	_, err := setRealtime(50)
	if !errors.Is(err, unix.EPERM) {
		t.Fatalf("setRealtime as nobody: %v, want EPERM", err)
	}
	t.Log(err)
}

// runChild runs one test of this binary in a child process.
func runChild(t *testing.T, name string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.v")
	cmd.Env = append(os.Environ(), "LVSD_REALTIME_CHILD=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil {
		t.Fatalf("child %s: %v", name, err)
	}
}
