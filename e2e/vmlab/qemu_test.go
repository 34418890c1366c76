package vmlab

import (
	"strings"
	"testing"
)

func TestReadConsoleStopsAtSoftLockup(t *testing.T) {
	console := strings.Join([]string{
		"VMLAB PASS boot 29 modules loaded",
		"[   32.462396] watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [lvsd:120]",
		"[   32.554503] watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [lvsd:121]",
	}, "\n")
	rep := &Report{}
	wedged := 0
	readConsole(strings.NewReader(console), rep, nil, func() { wedged++ })
	if wedged != 1 {
		t.Errorf("wedged called %d times, want 1", wedged)
	}
	if want := "[   32.462396] watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [lvsd:120]"; rep.Lockup != want {
		t.Errorf("Lockup = %q, want %q", rep.Lockup, want)
	}
	if len(rep.Results) != 1 || rep.Results[0].Name != "boot" {
		t.Errorf("Results = %+v, want the boot line", rep.Results)
	}
}
