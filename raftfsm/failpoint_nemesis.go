//go:build nemesis

package raftfsm

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// This file is built only with -tags nemesis (the e2e/nemesis test builds
// lvsd so): it lets a test slow down or stall this node's raft log writes
// while lvsd runs, as a failing or overloaded disk would.
//
// Before each write of log entries the store reads
// $SHOAL_FAILPOINT_DIR/<node id>/disk-delay, a Go duration ("250ms", "10s";
// a missing or empty file, or 0, is no delay), and waits that long. It reads
// the file again every few milliseconds while it waits, so a test that
// clears it releases a stalled write at once. Without SHOAL_FAILPOINT_DIR
// the store is returned unwrapped.

// failpointPoll is how often a delayed write looks at the file again.
const failpointPoll = 20 * time.Millisecond

// diskFailpoint wraps the log store of node id with the disk-delay
// failpoint; the build without the nemesis tag returns s as it is.
func diskFailpoint(id string, s raft.LogStore) raft.LogStore {
	dir := os.Getenv("SHOAL_FAILPOINT_DIR")
	if dir == "" {
		return s
	}
	return delayedLogs{LogStore: s, path: filepath.Join(dir, id, "disk-delay")}
}

// delayedLogs delays StoreLog and StoreLogs by the duration in path.
type delayedLogs struct {
	raft.LogStore
	path string
}

func (d delayedLogs) StoreLog(l *raft.Log) error {
	d.wait()
	return d.LogStore.StoreLog(l)
}

func (d delayedLogs) StoreLogs(ls []*raft.Log) error {
	d.wait()
	return d.LogStore.StoreLogs(ls)
}

// wait sleeps until the delay the file names has passed since the write
// began, re-reading it so that a shorter (or no) delay takes effect at once.
func (d delayedLogs) wait() {
	start := time.Now()
	for {
		left := d.delay() - time.Since(start)
		if left <= 0 {
			return
		}
		time.Sleep(min(left, failpointPoll))
	}
}

func (d delayedLogs) delay() time.Duration {
	b, err := os.ReadFile(d.path)
	if err != nil {
		return 0
	}
	v, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil || v < 0 {
		return 0
	}
	return v
}
