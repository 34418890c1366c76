package failover

import (
	"strings"
	"testing"
	"time"
)

func TestRTProbeRead(t *testing.T) {
	p := &rtProbe{start: time.Unix(1000, 0)}
	p.read(strings.NewReader("# /dev/cpu_dma_latency set to 0us\n" +
		"       0:       0:      12\n" +
		"       1:       0:      15\n" +
		"       0:       1:   12500\n" + // due at 2 ms, 12.5 ms late
		"       1:     999:    5000\n" + // exactly 5 ms: not over
		"       1:    1000:   25000\n" +
		"T: 0 ( 530) P:99 I:1000 C:   1000 Min:      6 Act:   30 Avg:   14 Max:      68\n"))
	if p.samples != 5 {
		t.Errorf("samples %d, want 5", p.samples)
	}
	want := []lateWake{
		{cpu: 0, at: time.Unix(1000, 0).Add(2 * time.Millisecond), by: 12500 * time.Microsecond},
		{cpu: 1, at: time.Unix(1000, 0).Add(1001 * time.Millisecond), by: 25 * time.Millisecond},
	}
	if len(p.late) != len(want) || p.late[0] != want[0] || p.late[1] != want[1] {
		t.Errorf("late %+v, want %+v", p.late, want)
	}
	if p.worst != 25*time.Millisecond {
		t.Errorf("worst %v", p.worst)
	}
	if got := rtProbeNote(p.samples, p.late, p.worst); !strings.Contains(got, "2 of 5 wakeups late over 5 ms, 2 over 10 ms, 1 over 20 ms, worst 25 ms") {
		t.Errorf("note %q", got)
	}
}
