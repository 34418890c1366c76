package raftfsm

import (
	"bytes"
	"runtime"
	"testing"
	"weak"

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

// TestLogCacheLetsLargeEntriesGo: entries are served from memory, a large
// one too while it is among the latest stored; once later entries are
// stored it is read from the disk store, whole.
func TestLogCacheLetsLargeEntriesGo(t *testing.T) {
	disk := countingLogs{raft.NewInmemStore(), map[uint64]int{}}
	c := newLogCache(8, disk)
	big := bytes.Repeat([]byte{7}, largeEntry)
	get := func(idx uint64, want []byte) {
		t.Helper()
		var l raft.Log
		if err := c.GetLog(idx, &l); err != nil || !bytes.Equal(l.Data, want) {
			t.Errorf("entry %d: %d bytes, %v", idx, len(l.Data), err)
		}
	}
	if err := c.StoreLogs([]*raft.Log{{Index: 1, Data: []byte("a")}, {Index: 2, Data: big}}); err != nil {
		t.Fatal(err)
	}
	get(1, []byte("a"))
	get(2, big)
	if len(disk.reads) != 0 {
		t.Errorf("the latest entries were read from disk: %v", disk.reads)
	}
	if err := c.StoreLog(&raft.Log{Index: 3, Data: []byte("c")}); err != nil {
		t.Fatal(err)
	}
	get(1, []byte("a"))
	get(2, big)
	get(3, []byte("c"))
	if disk.reads[1] != 0 || disk.reads[3] != 0 || disk.reads[2] != 1 {
		t.Errorf("reads from disk %v, want entry 2 alone", disk.reads)
	}
	// Wrapping around the ring, and a deleted range, are misses.
	for i := uint64(4); i <= 11; i++ {
		if err := c.StoreLog(&raft.Log{Index: i, Data: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	get(3, []byte("c"))
	if disk.reads[3] != 1 {
		t.Errorf("entry 3, overwritten in the ring, was not read from disk: %v", disk.reads)
	}
	if err := c.DeleteRange(10, 11); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := c.GetLog(11, &l); err == nil {
		t.Error("a deleted entry is still served")
	}
	if last, err := c.LastIndex(); err != nil || last != 9 {
		t.Errorf("last index %d, %v; want 9", last, err)
	}
}

// TestLogCacheKeepsNoFuture: on the leader raft stores pointers into the
// futures of the writes; the cache must keep the entries without keeping
// those futures, and so the writes' results, alive.
func TestLogCacheKeepsNoFuture(t *testing.T) {
	c := newLogCache(8, copyingLogs{raft.NewInmemStore()})
	type future struct {
		log      raft.Log
		response []byte // the write's Result, in raft's logFuture
	}
	f := &future{log: raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte("cmd")}, response: make([]byte, 1<<20)}
	gone := weak.Make(f)
	if err := c.StoreLogs([]*raft.Log{&f.log}); err != nil {
		t.Fatal(err)
	}
	f = nil
	runtime.GC()
	if gone.Value() != nil {
		t.Fatal("the cache keeps the future of a stored entry alive")
	}
	var l raft.Log
	if err := c.GetLog(1, &l); err != nil || string(l.Data) != "cmd" {
		t.Fatalf("GetLog: %v, %q", err, l.Data)
	}
}

// copyingLogs stores copies of the entries, as a store on disk does;
// raft's in-memory store keeps the pointers it is given.
type copyingLogs struct{ *raft.InmemStore }

func (c copyingLogs) StoreLogs(logs []*raft.Log) error {
	for _, l := range logs {
		copied := *l
		if err := c.InmemStore.StoreLog(&copied); err != nil {
			return err
		}
	}
	return nil
}
