package raftfsm

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	dto "github.com/prometheus/client_model/go"
)

// stallingStore is an in-memory store whose writes take stall.
type stallingStore struct {
	*raft.InmemStore
	stall time.Duration
}

func (s stallingStore) StoreLogs(ls []*raft.Log) error {
	time.Sleep(s.stall)
	return s.InmemStore.StoreLogs(ls)
}

func (s stallingStore) SetUint64(k []byte, v uint64) error {
	time.Sleep(s.stall)
	return s.InmemStore.SetUint64(k, v)
}

func diskWriteCount(t *testing.T, store string) uint64 {
	t.Helper()
	var m dto.Metric
	if err := diskWriteSeconds.WithLabelValues(store).(interface{ Write(*dto.Metric) error }).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// TestDiskWritesTimed checks that raft's writes pass through to the store,
// are counted in the histogram, and that only the slow ones are logged.
func TestDiskWritesTimed(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	const slow = 50 * time.Millisecond
	for _, stall := range []time.Duration{0, 2 * slow} {
		buf.Reset()
		mem := stallingStore{raft.NewInmemStore(), stall}
		logs := timedLogs{mem, diskWrites{store: "log", log: log, slow: slow}}
		stable := timedStable{mem, diskWrites{store: "stable", log: log, slow: slow}}
		logsBefore, stableBefore := diskWriteCount(t, "log"), diskWriteCount(t, "stable")

		if err := logs.StoreLogs([]*raft.Log{{Index: 1, Term: 1}, {Index: 2, Term: 1}}); err != nil {
			t.Fatal(err)
		}
		if err := stable.SetUint64([]byte("CurrentTerm"), 7); err != nil {
			t.Fatal(err)
		}
		if last, _ := mem.LastIndex(); last != 2 {
			t.Errorf("stall %v: last index %d, want 2", stall, last)
		}
		if term, _ := mem.GetUint64([]byte("CurrentTerm")); term != 7 {
			t.Errorf("stall %v: term %d, want 7", stall, term)
		}
		if got := diskWriteCount(t, "log") - logsBefore; got != 1 {
			t.Errorf("stall %v: %d log writes observed, want 1", stall, got)
		}
		if got := diskWriteCount(t, "stable") - stableBefore; got != 1 {
			t.Errorf("stall %v: %d stable writes observed, want 1", stall, got)
		}
		out := buf.String()
		want := 0
		if stall >= slow {
			want = 2
		}
		if n := strings.Count(out, "slow raft disk write"); n != want {
			t.Errorf("stall %v: %d slow-write warnings, want %d:\n%s", stall, n, want, out)
		}
		if stall >= slow && (!strings.Contains(out, "entries=2") || !strings.Contains(out, "what=CurrentTerm")) {
			t.Errorf("stall %v: the warnings do not say what was written:\n%s", stall, out)
		}
	}
}

// fullStore is an in-memory stable store whose writes find the disk full
// while full is set.
type fullStore struct {
	*raft.InmemStore
	full atomic.Bool
}

func (s *fullStore) SetUint64(k []byte, v uint64) error {
	if s.full.Load() {
		return &os.PathError{Op: "write", Path: "raft.db", Err: syscall.ENOSPC}
	}
	return s.InmemStore.SetUint64(k, v)
}

// TestTermWriteWaitsForSpace: raft panics when it cannot save its current
// term, so on a full disk that write waits, logged, until space is freed;
// other writes fail at once, logged, for raft to handle.
func TestTermWriteWaitsForSpace(t *testing.T) {
	var buf lockedBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	mem := &fullStore{InmemStore: raft.NewInmemStore()}
	fails := &diskFailures{limiter: logLimiter{every: time.Minute}}
	stable := timedStable{mem, diskWrites{store: "stable", log: log, slow: time.Hour, file: "/var/lib/shoal/raft.db", fails: fails}}
	mem.full.Store(true)

	if err := stable.SetUint64([]byte("LastVoteTerm"), 3); !IsDiskFull(err) {
		t.Errorf("a vote's write: %v, want no space left on device", err)
	}
	done := make(chan error, 1)
	go func() { done <- stable.SetUint64([]byte(keyCurrentTerm), 3) }()
	eventually(t, 5*time.Second, "the term write to wait", fails.stuck.Load)
	select {
	case err := <-done:
		t.Fatalf("the term write returned %v on a full disk", err)
	case <-time.After(3 * termWaitRetry):
	}
	mem.full.Store(false)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if v, _ := mem.GetUint64([]byte(keyCurrentTerm)); v != 3 || fails.stuck.Load() {
		t.Errorf("term %d, stuck %v after space was freed", v, fails.stuck.Load())
	}
	buf.mu.Lock()
	out := buf.b.String()
	buf.mu.Unlock()
	if n := strings.Count(out, "no space left on device"); n == 0 || !strings.Contains(out, "data_dir=/var/lib/shoal") {
		t.Errorf("the log does not say so:\n%s", out)
	}
	if n := strings.Count(out, "level=ERROR"); n != 1 {
		t.Errorf("%d error lines in a minute, want 1 (rate-limited):\n%s", n, out)
	}
}
