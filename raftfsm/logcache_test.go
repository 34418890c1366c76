package raftfsm

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
)

// countingLogs counts the reads that reach the store under the cache.
type countingLogs struct {
	raft.LogStore
	reads map[uint64]int
}

func (c countingLogs) GetLog(idx uint64, l *raft.Log) error {
	c.reads[idx]++
	return c.LogStore.GetLog(idx, l)
}

// TestLogStoreKeepsLargeEntriesOutOfTheCache: small entries are served
// from memory; a batch with a large entry is stored, and read back whole,
// from the store alone.
func TestLogStoreKeepsLargeEntriesOutOfTheCache(t *testing.T) {
	disk := countingLogs{raft.NewInmemStore(), map[uint64]int{}}
	s, err := newLogStore(disk)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte{7}, maxCachedEntry+1)
	if err := s.StoreLogs([]*raft.Log{{Index: 1, Data: []byte("a")}, {Index: 2, Data: []byte("b")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs([]*raft.Log{{Index: 3, Data: []byte("c")}, {Index: 4, Data: big}}); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLog(&raft.Log{Index: 5, Data: []byte("e")}); err != nil {
		t.Fatal(err)
	}
	for idx, want := range map[uint64][]byte{1: []byte("a"), 2: []byte("b"), 3: []byte("c"), 4: big, 5: []byte("e")} {
		var l raft.Log
		if err := s.GetLog(idx, &l); err != nil || !bytes.Equal(l.Data, want) {
			t.Errorf("entry %d: %d bytes, %v", idx, len(l.Data), err)
		}
	}
	if disk.reads[1]+disk.reads[2]+disk.reads[5] != 0 {
		t.Errorf("small entries read from the store: %v", disk.reads)
	}
	if disk.reads[3] != 1 || disk.reads[4] != 1 {
		t.Errorf("the batch with a large entry was served from the cache: %v", disk.reads)
	}
	if last, err := s.LastIndex(); err != nil || last != 5 {
		t.Errorf("last index %d, %v", last, err)
	}
}
