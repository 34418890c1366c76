package raftfsm

import (
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// largeEntry is the size from which logCache keeps an entry only until
// the next entries are stored. The cache holds the latest logCacheSize
// entries until as many more are written, and an apply of a large table
// is one entry of megabytes (7 MB for 100,000 real servers) that would
// stay in every node's memory until 1,024 more writes came. While it is
// the latest entry, the leader still replicates it from memory (decoding
// it from disk takes a third of a second per follower).
const largeEntry = 256 << 10

// logCache is raft.LogCache's ring buffer of the latest entries over the
// disk, which lets a large entry go once later entries are stored: only
// a follower that is behind by then reads it from disk.
//
// It keeps copies of the entries, not raft's pointers: on the leader
// those point into the futures of the writes, whose responses (each
// write's Result, with its changes and the state it made) the cache
// would keep alive too. A whole table's apply kept its 110,000 changes
// on the leader that way, and every cached write a state of its own.
type logCache struct {
	disk raft.LogStore

	mu    sync.RWMutex
	ring  []raft.Log // an entry's slot holds it while its Index is the entry's
	large []uint64   // indexes of the large entries in ring
}

var _ raft.MonotonicLogStore = (*logCache)(nil)

func newLogCache(size int, disk raft.LogStore) *logCache {
	return &logCache{disk: disk, ring: make([]raft.Log, size)}
}

// IsMonotonic passes on the disk store's answer, as raft.LogCache does.
func (c *logCache) IsMonotonic() bool {
	m, ok := c.disk.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

func (c *logCache) GetLog(idx uint64, l *raft.Log) error {
	c.mu.RLock()
	cached := c.ring[idx%uint64(len(c.ring))]
	c.mu.RUnlock()
	if cached.Index == idx && idx != 0 {
		*l = cached
		return nil
	}
	return c.disk.GetLog(idx, l)
}

func (c *logCache) StoreLog(l *raft.Log) error { return c.StoreLogs([]*raft.Log{l}) }

func (c *logCache) StoreLogs(logs []*raft.Log) error {
	if err := c.disk.StoreLogs(logs); err != nil {
		return fmt.Errorf("store log entries: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, idx := range c.large {
		if slot := idx % uint64(len(c.ring)); c.ring[slot].Index == idx {
			c.ring[slot] = raft.Log{}
		}
	}
	c.large = c.large[:0]
	for _, l := range logs {
		c.ring[l.Index%uint64(len(c.ring))] = *l
		if len(l.Data) >= largeEntry {
			c.large = append(c.large, l.Index)
		}
	}
	return nil
}

func (c *logCache) FirstIndex() (uint64, error) { return c.disk.FirstIndex() }
func (c *logCache) LastIndex() (uint64, error)  { return c.disk.LastIndex() }

func (c *logCache) DeleteRange(lo, hi uint64) error {
	c.mu.Lock()
	clear(c.ring)
	c.large = c.large[:0]
	c.mu.Unlock()
	return c.disk.DeleteRange(lo, hi)
}
