package raftfsm

import "github.com/hashicorp/raft"

// maxCachedEntry is the largest entry raft's log cache keeps. The cache
// holds the latest logCacheSize entries until as many more are written,
// and an apply of a large table is one entry of megabytes (7 MB for
// 100,000 real servers) that would stay in every node's memory for
// hours on a quiet cluster. Such an entry is read back from disk by the
// leader once per follower, which costs nothing worth keeping it for.
const maxCachedEntry = 256 << 10

// logStore is raft's log cache over the disk, except that a batch of
// entries holding a large one goes to disk alone. The cache then misses
// those indexes (its slots hold other indexes, or were cleared by the
// DeleteRange that precedes any rewrite of an index) and reads them from
// disk.
type logStore struct {
	*raft.LogCache
	disk raft.LogStore
}

func newLogStore(disk raft.LogStore) (logStore, error) {
	c, err := raft.NewLogCache(logCacheSize, disk)
	return logStore{LogCache: c, disk: disk}, err
}

func (s logStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s logStore) StoreLogs(logs []*raft.Log) error {
	for _, l := range logs {
		if len(l.Data) > maxCachedEntry {
			return s.disk.StoreLogs(logs)
		}
	}
	return s.LogCache.StoreLogs(logs)
}
