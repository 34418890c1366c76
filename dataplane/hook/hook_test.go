package hook

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoal-lb/shoal/dataplane/script"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// lab is a script directory, a directory the script user may write its
// findings to, and a Dispatcher running programs from the first.
type lab struct {
	dir, out string
	reg      *prometheus.Registry
	d        *Dispatcher
}

func newLab(t testing.TB, o Options) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: hooks run root-owned programs as the script user")
	}
	base := t.TempDir()
	for p := base; p != os.TempDir(); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l := &lab{dir: filepath.Join(base, "scripts"), out: filepath.Join(base, "out"), reg: prometheus.NewRegistry()}
	for _, d := range []string{l.dir, l.out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(l.out, 0o777); err != nil {
		t.Fatal(err)
	}
	r, err := script.New(script.Options{Dirs: []string{l.dir}})
	if err != nil {
		t.Fatal(err)
	}
	o.Scripts, o.Registerer, o.Node = r, l.reg, "r1"
	l.d = New(o)
	t.Cleanup(l.d.Close)
	return l
}

func (l *lab) script(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(l.dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func eventually(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *lab) read(name string) string {
	b, _ := os.ReadFile(filepath.Join(l.out, name))
	return string(b)
}

func TestHookGetsTheEventInItsEnvironment(t *testing.T) {
	l := newLab(t, Options{})
	prog := l.script(t, "notify", `env | grep ^SHOAL_ | sort > "$1/$SHOAL_EVENT"; echo "args:$#" >> "$1/$SHOAL_EVENT"`)
	l.d.SetHooks([]*shoalv1.Hook{{Events: []string{"leader", "server-down"}, Command: []string{prog, l.out}}})
	evil := "x'; touch /tmp/pwned; $(id)"
	l.d.Emit(Event{Name: "leader", VIPs: []string{"192.0.2.10", "192.0.2.11"}, Serial: 7, Reason: evil})
	l.d.Emit(Event{Name: "follower", Serial: 8}) // not asked for
	eventually(t, 5*time.Second, "the leader hook", func() bool { return strings.Contains(l.read("leader"), "args:") })
	want := "SHOAL_EVENT=leader\nSHOAL_NODE=r1\nSHOAL_REASON=" + evil + "\nSHOAL_SERIAL=7\nSHOAL_SERVER=\nSHOAL_SERVICE=\nSHOAL_VIPS=192.0.2.10 192.0.2.11\nargs:1\n"
	if got := l.read("leader"); got != want {
		t.Errorf("environment:\n%s\nwant:\n%s", got, want)
	}
	if !l.d.Flush(5 * time.Second) {
		t.Fatal("queues did not drain")
	}
	if l.read("follower") != "" {
		t.Error("a hook ran for an event it does not name")
	}
	if got := value(t, l.d.metrics.runs.WithLabelValues("leader", "ok")); got != 1 {
		t.Errorf("shoal_hook_runs_total{leader,ok} = %v, want 1", got)
	}
}

func TestHangingHookIsKilledAndTheNextEventRuns(t *testing.T) {
	l := newLab(t, Options{})
	prog := l.script(t, "slow", `if [ "$SHOAL_SERIAL" = 1 ]; then sleep 60 & wait; fi; echo "$SHOAL_SERIAL" >> "$1/ran"`)
	l.d.SetHooks([]*shoalv1.Hook{{Events: []string{"leader"}, Command: []string{prog, l.out}, Timeout: durationpb.New(300 * time.Millisecond)}})
	start := time.Now()
	l.d.Emit(Event{Name: "leader", Serial: 1})
	l.d.Emit(Event{Name: "leader", Serial: 2})
	eventually(t, 10*time.Second, "the second event's run", func() bool { return l.read("ran") == "2\n" })
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the second event waited %s", took)
	}
	if got := value(t, l.d.metrics.runs.WithLabelValues("leader", "timeout")); got != 1 {
		t.Errorf("shoal_hook_runs_total{leader,timeout} = %v, want 1", got)
	}
}

func TestEmitNeverBlocks(t *testing.T) {
	l := newLab(t, Options{Queue: 2, Concurrency: 1})
	prog := l.script(t, "stuck", "sleep 60")
	l.d.SetHooks([]*shoalv1.Hook{{Events: []string{"server-down"}, Command: []string{prog}, Timeout: durationpb.New(time.Minute)}})
	start := time.Now()
	for range 100 {
		l.d.Emit(Event{Name: "server-down", Service: "web", Server: "10.0.0.1:80"})
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("100 events behind a stuck hook took %s to emit", took)
	}
	// One runs, two wait, the rest are dropped and counted.
	if got := value(t, l.d.metrics.dropped.WithLabelValues("server-down")); got < 97 {
		t.Errorf("dropped %v events, want at least 97", got)
	}
}

func TestRefusedHookIsCounted(t *testing.T) {
	l := newLab(t, Options{})
	l.d.SetHooks([]*shoalv1.Hook{{Events: []string{"fence-lapse"}, Command: []string{"/bin/sh", "-c", "id"}}})
	l.d.Emit(Event{Name: "fence-lapse"})
	eventually(t, 5*time.Second, "the refusal", func() bool {
		return value(t, l.d.metrics.runs.WithLabelValues("fence-lapse", "refused")) == 1
	})
}

func TestMatches(t *testing.T) {
	down := Event{Name: "server-down", Service: "web", Server: "10.0.0.1:80"}
	for _, tt := range []struct {
		hook *shoalv1.Hook
		want bool
	}{
		{&shoalv1.Hook{Events: []string{"server-down"}}, true},
		{&shoalv1.Hook{Events: []string{"server-up"}}, false},
		{&shoalv1.Hook{Events: []string{"server-down"}, Service: "web"}, true},
		{&shoalv1.Hook{Events: []string{"server-down"}, Service: "db"}, false},
		{&shoalv1.Hook{Events: []string{"server-down"}, RealServer: "10.0.0.1"}, true},
		{&shoalv1.Hook{Events: []string{"server-down"}, RealServer: "10.0.0.1:80"}, true},
		{&shoalv1.Hook{Events: []string{"server-down"}, RealServer: "10.0.0.1:81"}, false},
		{&shoalv1.Hook{Events: []string{"server-down"}, RealServer: "10.0.0.2"}, false},
	} {
		if got := matches(tt.hook, down); got != tt.want {
			t.Errorf("matches(%v) = %t, want %t", tt.hook, got, tt.want)
		}
	}
}

func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// BenchmarkEmitBehindHungHook measures what a caller on the takeover path
// pays to emit an event while the hook it matches hangs and its queue is
// full: the cost of a drop, never a wait.
func BenchmarkEmitBehindHungHook(b *testing.B) {
	l := newLab(b, Options{Queue: 1, Concurrency: 1, Logger: slog.New(slog.DiscardHandler)})
	prog := filepath.Join(l.dir, "hang")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\nsleep 60\n"), 0o755); err != nil {
		b.Fatal(err)
	}
	l.d.SetHooks([]*shoalv1.Hook{{Events: []string{"leader"}, Command: []string{prog}, Timeout: durationpb.New(time.Minute)}})
	e := Event{Name: "leader", VIPs: []string{"192.0.2.10"}, Serial: 1}
	l.d.Emit(e)
	l.d.Emit(e)
	b.ResetTimer()
	for b.Loop() {
		l.d.Emit(e)
	}
	b.StopTimer()
	l.d.Close()
}
