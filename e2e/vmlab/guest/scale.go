package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// defaultScale is the scale scenario's size when the host names none
// (SHOAL_VMLAB_SCALE): services of 10 real servers each.
const defaultScale = 1000

// scaleBench is issue 22's benchmark on a real kernel: the dataplane test
// binary's TestScaleRealIPVS programs services × 10 real servers from empty
// with shoal's reconciler and with `ipvsadm -R`, changes one weight both
// ways, times the idle resync and a leader change, each in a network
// namespace of its own; its figures go to the console as INFO lines. It is
// opt-in (the host must name it): at 10,000 services it takes minutes of
// emulated time.
func scaleBench(r *run) error {
	if _, err := os.Stat("/bin/dataplane.test"); err != nil {
		why, _ := os.ReadFile("/lab/dataplane.test.missing")
		return errSkip("no dataplane test binary: " + strings.TrimSpace(string(why)))
	}
	if why, err := os.ReadFile("/lab/ipvsadm.missing"); err == nil {
		rep.info("scale", "no ipvsadm baseline: %s", strings.TrimSpace(string(why)))
	}
	n := r.opts.scale
	if n <= 0 {
		n = defaultScale
	}
	ctx, cancel := context.WithTimeout(r.ctx, 25*time.Minute)
	defer cancel()
	cmd := execCommand(ctx, "/bin/dataplane.test", "-test.v", "-test.timeout", "24m", "-test.run", "^TestScaleRealIPVS$")
	cmd.Dir = "/tmp"
	cmd.Env = append(os.Environ(), fmt.Sprintf("SHOAL_IPVS_SCALE=%d", n), "PATH=/sbin:/bin")
	b, err := cmd.CombinedOutput()
	out := string(b)
	figures := 0
	for _, l := range strings.Split(out, "\n") {
		if _, f, ok := strings.Cut(l, "dataplane: scale "); ok {
			rep.info("scale", "%s", f)
			figures++
		}
	}
	if err != nil || !strings.Contains(out, "--- PASS: TestScaleRealIPVS") {
		for _, l := range lastN(strings.Split(out, "\n"), 30) {
			rep.line("dataplane.test| %s", l)
		}
		return fmt.Errorf("TestScaleRealIPVS at %d services: %v", n, err)
	}
	if figures == 0 {
		return fmt.Errorf("TestScaleRealIPVS printed no figures")
	}
	return nil
}
