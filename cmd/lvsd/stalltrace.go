package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/trace"
	"slices"
	"sync"
	"time"
)

// stallTracer answers "why did the leader go quiet?" after the fact. It
// keeps the Go runtime's flight recorder (the last seconds of scheduler,
// GC and syscall events, in memory) and writes it to a file when raftfsm
// reports a stall: this leader's fence lapsing, or this follower starting
// an election because the leader went quiet. `go tool trace FILE` then
// shows what each goroutine and thread was waiting for: a reply that came
// late while the process idled points at the peer or the host, a goroutine
// runnable with no thread to run it at the host's scheduler, a GC phase at
// the runtime.
type stallTracer struct {
	fr        *trace.FlightRecorder
	dir, node string
	log       *slog.Logger
	keep      int // files of this node kept in dir, the newest

	mu      sync.Mutex
	next    time.Time // no new file before then
	stopped bool
	wg      sync.WaitGroup
}

const (
	stallTraceWindow = 2 * time.Second
	// stallTraceAfter is how much of what followed the event a file holds:
	// the election or the fence's recovery.
	stallTraceAfter = 300 * time.Millisecond
	// stallTraceEvery bounds the files (and the pauses writing them costs)
	// while a cluster flaps.
	stallTraceEvery = 10 * time.Second
	stallTraceKeep  = 20
)

func startStallTracer(dir, node string, log *slog.Logger) (*stallTracer, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("--stall-trace: %w", err)
	}
	fr := trace.NewFlightRecorder(trace.FlightRecorderConfig{MinAge: stallTraceWindow, MaxBytes: 16 << 20})
	if err := fr.Start(); err != nil {
		return nil, fmt.Errorf("--stall-trace: start the flight recorder: %w", err)
	}
	return &stallTracer{fr: fr, dir: dir, node: node, log: log, keep: stallTraceKeep}, nil
}

// stalled is raftfsm's Stalled hook: it returns at once and writes the
// file stallTraceAfter later, at most one per stallTraceEvery.
func (s *stallTracer) stalled(event string) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || now.Before(s.next) {
		return
	}
	s.next = now.Add(stallTraceEvery)
	name := filepath.Join(s.dir, fmt.Sprintf("%s-%s-%s.trace", s.node, now.UTC().Format("20060102T150405.000"), event))
	s.wg.Add(1)
	time.AfterFunc(stallTraceAfter, func() {
		defer s.wg.Done()
		if err := s.write(name); err != nil {
			s.log.Warn("stall trace not written", "event", event, "err", err)
			return
		}
		s.log.Info("stall trace written", "event", event, "file", name)
	})
}

func (s *stallTracer) write(name string) error {
	w, err := os.Create(name)
	if err != nil {
		return err
	}
	if _, err := s.fr.WriteTo(w); err != nil {
		w.Close()
		os.Remove(name)
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	// The names sort by time.
	old, err := filepath.Glob(filepath.Join(s.dir, s.node+"-*.trace"))
	if err != nil {
		return err
	}
	slices.Sort(old)
	for len(old) > s.keep {
		os.Remove(old[0])
		old = old[1:]
	}
	return nil
}

// stop waits for a pending file and stops the recorder.
func (s *stallTracer) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.wg.Wait()
	s.fr.Stop()
}
