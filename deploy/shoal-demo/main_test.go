package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// script is an HTTP server whose answers follow a list: a name answers
// with that name, "" fails the request; the last entry repeats.
type script struct {
	mu      sync.Mutex
	answers []string
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	a := s.answers[0]
	if len(s.answers) > 1 {
		s.answers = s.answers[1:]
	}
	s.mu.Unlock()
	if a == "" {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	responder(a).ServeHTTP(w, r)
}

func TestProbe(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answers []string
		args    []string
		want    []probeEvent // event, name and failures only
	}{{
		name:    "switch to another director",
		answers: []string{"d1", "d1", "d1", "", "", "d2"},
		args:    []string{"-from", "d1", "-ready", "2"},
		want:    []probeEvent{{Event: "ready", Name: "d1"}, {Event: "switched", Name: "d2", Failures: 2}},
	}, {
		name:    "first answer names the old node",
		answers: []string{"d3", "d3", "d1"},
		args:    []string{"-ready", "1"},
		want:    []probeEvent{{Event: "ready", Name: "d3"}, {Event: "switched", Name: "d1"}},
	}, {
		name:    "failures before ready are not an outage",
		answers: []string{"", "d1", "d1", "d2"},
		args:    []string{"-from", "d1", "-ready", "2"},
		want:    []probeEvent{{Event: "ready", Name: "d1"}, {Event: "switched", Name: "d2"}},
	}, {
		name:    "after-failure: real servers take turns, the switch is the answer after an outage",
		answers: []string{"rs1", "rs2", "rs1", "", "rs2"},
		args:    []string{"-after-failure", "-ready", "2"},
		want:    []probeEvent{{Event: "ready", Name: "rs2"}, {Event: "switched", Name: "rs2", Failures: 1}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(&script{answers: tc.answers})
			defer srv.Close()
			var out bytes.Buffer
			args := append([]string{"-url", srv.URL, "-interval", "1ms", "-max", "10s"}, tc.args...)
			if err := probe(context.Background(), &out, args); err != nil {
				t.Fatalf("probe: %v\n%s", err, out.String())
			}
			var got []probeEvent
			dec := json.NewDecoder(&out)
			for dec.More() {
				var ev probeEvent
				if err := dec.Decode(&ev); err != nil {
					t.Fatal(err)
				}
				if ev.Event == "switched" && (ev.FirstNew == 0 || ev.LastOld == 0 || ev.FirstNew < ev.LastOld) {
					t.Errorf("switched times: last old %d, first new %d", ev.LastOld, ev.FirstNew)
				}
				got = append(got, probeEvent{Event: ev.Event, Name: ev.Name, Failures: ev.Failures})
			}
			if len(got) != len(tc.want) {
				t.Fatalf("events %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("event %d: %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestProbeGivesUp(t *testing.T) {
	srv := httptest.NewServer(&script{answers: []string{"d1"}})
	defer srv.Close()
	var out bytes.Buffer
	err := probe(context.Background(), &out, []string{"-url", srv.URL, "-interval", "1ms", "-max", "50ms", "-from", "d1"})
	if err == nil || !strings.Contains(out.String(), `"event":"timeout"`) {
		t.Fatalf("probe = %v, output %q; want a timeout", err, out.String())
	}
}

func TestInterfaceIn(t *testing.T) {
	for _, tc := range []struct {
		prefix, want string
		wantErr      bool
	}{
		{prefix: "127.0.0.0/8", want: "lo"},
		{prefix: "0.0.0.0/32", wantErr: true}, // no interface has the unspecified address
		{prefix: "not-a-prefix", wantErr: true},
	} {
		got, err := interfaceIn(tc.prefix)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("interfaceIn(%q) = %q, %v; want %q (error %v)", tc.prefix, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestWaitAddr(t *testing.T) {
	var out bytes.Buffer
	// 127.0.0.1 is present at once: one "watching" line, then the moment.
	if err := waitAddr(context.Background(), &out, []string{"-addr", "127.0.0.1", "-max", "1s"}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || lines[0] != "watching present" {
		t.Fatalf("output %q", out.String())
	}
	out.Reset()
	start := time.Now()
	err := waitAddr(context.Background(), &out, []string{"-addr", "127.0.0.1", "-gone", "-max", "30ms"})
	if err == nil || time.Since(start) > 5*time.Second || !strings.HasPrefix(out.String(), "watching present") {
		t.Fatalf("waiting for lo's address to go: %v, output %q", err, out.String())
	}
}
