package raftfsm

import (
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// slowDiskWrite is how long a write of raft's log or of its term and vote
// may take before it is logged: each is an fsync, taking 2 ms here (p99 6
// ms under full CPU load), and the log write is on the leader's commit path,
// the term and vote on an election's.
const slowDiskWrite = 100 * time.Millisecond

var diskWriteSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Name: "shoal_raft_disk_write_seconds",
	Help: "How long raft's writes to disk took: store=log for log entries (the leader's commit path), " +
		"store=stable for the current term and vote (an election's).",
	Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
}, []string{"store"})

func init() { prometheus.MustRegister(diskWriteSeconds) }

// diskWrites times one store's writes and logs the slow ones, and the
// failed ones.
type diskWrites struct {
	store string
	log   *slog.Logger
	slow  time.Duration
	// file is raft.db; fails, if set, is shared by a node's stores.
	file  string
	fails *diskFailures
}

// diskFailures is what a node's stores share about failed writes.
type diskFailures struct {
	limiter logLimiter
	// stuck is set while a write of the current term waits for space.
	stuck atomic.Bool
}

func (d diskWrites) done(start time.Time, what string, n int) {
	took := time.Since(start)
	diskWriteSeconds.WithLabelValues(d.store).Observe(took.Seconds())
	if took >= d.slow && d.log != nil {
		d.log.Warn("slow raft disk write", "store", d.store, "what", what, "entries", n, "took", took)
	}
}

// failed logs a write that failed, a few times a minute at most: raft
// tries again at once, and a follower's leader resends.
func (d diskWrites) failed(what string, err error) {
	if d.log == nil || d.fails == nil {
		return
	}
	ok, skipped := d.fails.limiter.allow(d.store, time.Now())
	if !ok {
		return
	}
	msg := "raft cannot write to its data dir"
	if IsDiskFull(err) {
		msg = "raft cannot write to its data dir: no space left on device; this node stores no log entry, " +
			"and a leader commits none, until space is freed there"
	}
	d.log.Error(msg, "data_dir", filepath.Dir(d.file), "file", d.file, "store", d.store, "what", what, "err", err, "suppressed", skipped)
}

// termWaitRetry is how often a write of the current term that found the
// disk full is tried again.
const termWaitRetry = 200 * time.Millisecond

// timedLogs is a raft.LogStore whose writes are timed (diskWrites).
type timedLogs struct {
	raft.LogStore
	d diskWrites
}

func (s timedLogs) StoreLog(l *raft.Log) error {
	defer s.d.done(time.Now(), "log entries", 1)
	err := s.LogStore.StoreLog(l)
	if err != nil {
		s.d.failed("log entries", err)
	}
	return err
}

// StoreLogs passes a failure on to raft, which copes: a leader answers the
// writes with the error and steps down, a follower refuses the entries.
// bbolt commits a batch whole or not at all.
func (s timedLogs) StoreLogs(ls []*raft.Log) error {
	defer s.d.done(time.Now(), "log entries", len(ls))
	err := s.LogStore.StoreLogs(ls)
	if err != nil {
		s.d.failed("log entries", err)
	}
	return err
}

// timedStable is a raft.StableStore whose writes are timed (diskWrites).
type timedStable struct {
	raft.StableStore
	d diskWrites
}

func (s timedStable) Set(k, v []byte) error {
	defer s.d.done(time.Now(), string(k), 1)
	err := s.StableStore.Set(k, v)
	if err != nil {
		s.d.failed(string(k), err)
	}
	return err
}

// SetUint64 waits for space when the disk is full and k is the current
// term: raft panics when it cannot save its term, and would take the node
// down with no word of why. The node stands still meanwhile, as it would
// anyway without a term it can keep; Node.Shutdown does not wait for it.
// A vote that cannot be saved is raft's to refuse.
func (s timedStable) SetUint64(k []byte, v uint64) error {
	defer s.d.done(time.Now(), string(k), 1)
	err := s.StableStore.SetUint64(k, v)
	if err != nil && IsDiskFull(err) && string(k) == keyCurrentTerm && s.d.fails != nil {
		s.d.fails.stuck.Store(true)
		for err != nil && IsDiskFull(err) {
			s.d.failed(string(k), err)
			time.Sleep(termWaitRetry)
			err = s.StableStore.SetUint64(k, v)
		}
		s.d.fails.stuck.Store(false)
	}
	if err != nil {
		s.d.failed(string(k), err)
	}
	return err
}

// keyCurrentTerm is the stable store's key of raft's current term.
const keyCurrentTerm = "CurrentTerm"
