package raftfsm

import (
	"log/slog"
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

// diskWrites times one store's writes and logs the slow ones.
type diskWrites struct {
	store string
	log   *slog.Logger
	slow  time.Duration
}

func (d diskWrites) done(start time.Time, what string, n int) {
	took := time.Since(start)
	diskWriteSeconds.WithLabelValues(d.store).Observe(took.Seconds())
	if took >= d.slow && d.log != nil {
		d.log.Warn("slow raft disk write", "store", d.store, "what", what, "entries", n, "took", took)
	}
}

// timedLogs is a raft.LogStore whose writes are timed (diskWrites).
type timedLogs struct {
	raft.LogStore
	d diskWrites
}

func (s timedLogs) StoreLog(l *raft.Log) error {
	defer s.d.done(time.Now(), "log entries", 1)
	return s.LogStore.StoreLog(l)
}

func (s timedLogs) StoreLogs(ls []*raft.Log) error {
	defer s.d.done(time.Now(), "log entries", len(ls))
	return s.LogStore.StoreLogs(ls)
}

// timedStable is a raft.StableStore whose writes are timed (diskWrites).
type timedStable struct {
	raft.StableStore
	d diskWrites
}

func (s timedStable) Set(k, v []byte) error {
	defer s.d.done(time.Now(), string(k), 1)
	return s.StableStore.Set(k, v)
}

func (s timedStable) SetUint64(k []byte, v uint64) error {
	defer s.d.done(time.Now(), string(k), 1)
	return s.StableStore.SetUint64(k, v)
}
