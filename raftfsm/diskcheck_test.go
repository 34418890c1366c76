package raftfsm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/shoal-lb/shoal/e2e/harness"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// diskNode is a node of one with its stores in dir, as lvsd runs it.
type diskNode struct {
	t    *testing.T
	g    *netGroup
	dir  string
	addr string
}

func newDiskNode(t *testing.T, dir string) *diskNode {
	return &diskNode{t: t, g: newNetGroup(t, nil), dir: dir, addr: harness.FreeAddr(t)}
}

func (d *diskNode) open() (*Node, error) {
	n, err := d.g.open(Options{ID: "solo", RaftAddr: d.addr, DataDir: d.dir, Bootstrap: servers("solo", d.addr)})
	if err == nil {
		leaderOf(d.t, n)
	}
	return n, err
}

func (d *diskNode) mustOpen() *Node {
	d.t.Helper()
	n, err := d.open()
	if err != nil {
		d.t.Fatalf("open: %v", err)
	}
	return n
}

// history writes a few commands, and with snapshot, takes a snapshot after
// the first ones and compacts the log behind it, as raft does once the log
// has grown past its trailing entries. It returns the final state.
func (d *diskNode) history(snapshot, compact bool) *shoalv1.State {
	d.t.Helper()
	n := d.mustOpen()
	mustApply(d.t, n, createWeb())
	for i := range 3 {
		mustApply(d.t, n, addRS(fmt.Sprintf("10.0.1.%d", i)))
	}
	if snapshot {
		if err := n.Raft().Snapshot().Error(); err != nil {
			d.t.Fatal(err)
		}
	}
	for i := range 3 {
		mustApply(d.t, n, addRS(fmt.Sprintf("10.0.2.%d", i)))
	}
	st := n.FSM().State()
	if err := n.Shutdown(); err != nil {
		d.t.Fatal(err)
	}
	if compact {
		snaps, err := readSnapshots(filepath.Join(d.dir, snapshotsDir))
		if err != nil || len(snaps) != 1 {
			d.t.Fatalf("snapshots: %v %v", snaps, err)
		}
		bolt, err := raftboltdb.NewBoltStore(filepath.Join(d.dir, raftDBFile))
		if err != nil {
			d.t.Fatal(err)
		}
		first, _ := bolt.FirstIndex()
		if err := bolt.DeleteRange(first, snaps[0].index); err != nil {
			d.t.Fatal(err)
		}
		bolt.Close()
	}
	return st
}

func (d *diskNode) snapshotDir() string {
	d.t.Helper()
	snaps, err := readSnapshots(filepath.Join(d.dir, snapshotsDir))
	if err != nil || len(snaps) == 0 {
		d.t.Fatalf("no snapshot: %v", err)
	}
	return snaps[0].dir
}

// TestDiskFaultsAtStart: a damaged data dir stops Open with an error that
// names the file and what is wrong with it, never a panic, and never a
// start from less than the node had. A snapshot raft can do without is
// skipped, and the state is the same.
func TestDiskFaultsAtStart(t *testing.T) {
	overwrite := func(path string, off int64, n int) error {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		junk := make([]byte, n)
		for i := range junk {
			junk[i] = byte(i*7 + 13)
		}
		_, err = f.WriteAt(junk, off)
		return err
	}
	tests := []struct {
		name              string
		snapshot, compact bool
		damage            func(d *diskNode) error
		// file and problem are what the error says; "" for a start that
		// must work, with the same state.
		file, problem string
		lost          bool
	}{
		{name: "meta pages overwritten", damage: func(d *diskNode) error {
			return overwrite(filepath.Join(d.dir, raftDBFile), 0, 8192)
		}, file: raftDBFile, problem: "damaged: invalid database", lost: true},
		{name: "data pages overwritten", damage: func(d *diskNode) error {
			return overwrite(filepath.Join(d.dir, raftDBFile), 2*4096, 4*4096)
		}, file: raftDBFile, problem: "damaged", lost: true},
		{name: "truncated", damage: func(d *diskNode) error {
			p := filepath.Join(d.dir, raftDBFile)
			st, err := os.Stat(p)
			if err != nil {
				return err
			}
			return os.Truncate(p, st.Size()/2)
		}, file: raftDBFile, problem: "damaged: truncated", lost: true},
		{name: "truncated to nothing", damage: func(d *diskNode) error {
			return os.Truncate(filepath.Join(d.dir, raftDBFile), 0)
		}, file: raftDBFile, problem: "is empty (0 bytes), but the data dir has been used", lost: true},
		{name: "missing", damage: func(d *diskNode) error {
			return os.Remove(filepath.Join(d.dir, raftDBFile))
		}, file: raftDBFile, problem: "is missing, but the data dir has been used", lost: true},
		{name: "snapshot without state.bin", snapshot: true, compact: true, damage: func(d *diskNode) error {
			return os.Remove(filepath.Join(d.snapshotDir(), "state.bin"))
		}, file: "state.bin", problem: "missing; the snapshot held the state up to index", lost: true},
		{name: "snapshot without meta.json", snapshot: true, compact: true, damage: func(d *diskNode) error {
			return os.Remove(filepath.Join(d.snapshotDir(), "meta.json"))
		}, file: "meta.json", problem: "missing; the snapshot held", lost: true},
		{name: "snapshot with a flipped byte", snapshot: true, compact: true, damage: func(d *diskNode) error {
			return overwrite(filepath.Join(d.snapshotDir(), "state.bin"), 20, 1)
		}, file: "state.bin", problem: "checksum does not match", lost: true},
		{name: "log compacted past the snapshot", snapshot: true, compact: true, damage: func(d *diskNode) error {
			bolt, err := raftboltdb.NewBoltStore(filepath.Join(d.dir, raftDBFile))
			if err != nil {
				return err
			}
			defer bolt.Close()
			first, _ := bolt.FirstIndex()
			return bolt.DeleteRange(first, first)
		}, file: raftDBFile, problem: "does not follow on from the newest snapshot", lost: true},
		// The log still holds everything: raft restores without the
		// snapshot, to the same state.
		{name: "snapshot without state.bin, log whole", snapshot: true, damage: func(d *diskNode) error {
			return os.Remove(filepath.Join(d.snapshotDir(), "state.bin"))
		}},
		{name: "snapshot without meta.json, log whole", snapshot: true, damage: func(d *diskNode) error {
			return os.Remove(filepath.Join(d.snapshotDir(), "meta.json"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDiskNode(t, t.TempDir())
			want := d.history(tt.snapshot, tt.compact)
			if err := tt.damage(d); err != nil {
				t.Fatal(err)
			}
			n, err := d.open()
			if tt.file == "" {
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				eventually(t, 5*time.Second, "the state it had", func() bool { return proto.Equal(n.FSM().State(), want) })
				if !strings.Contains(d.g.logs(), "moved a damaged snapshot aside") {
					t.Error("the damaged snapshot went unmentioned")
				}
				if ents, err := os.ReadDir(filepath.Join(d.dir, snapshotsDir+".damaged")); err != nil || len(ents) != 1 {
					t.Errorf("snapshots moved aside: %v %v", ents, err)
				}
				return
			}
			var de *DataDirError
			if !errors.As(err, &de) {
				t.Fatalf("open: %v, want a DataDirError", err)
			}
			t.Logf("%v", err)
			if !strings.HasPrefix(de.File, d.dir) || filepath.Base(de.File) != tt.file || !strings.Contains(de.Problem, tt.problem) || de.Lost != tt.lost {
				t.Errorf("error names %s: %q (lost %v), want %s: %q (lost %v)", de.File, de.Problem, de.Lost, tt.file, tt.problem, tt.lost)
			}
		})
	}
}

// TestRaftDBLocked: a second process on the same data dir is told so
// within a second, rather than waiting for bolt's lock for ever.
func TestRaftDBLocked(t *testing.T) {
	d := newDiskNode(t, t.TempDir())
	d.history(false, false)
	db, err := bbolt.Open(filepath.Join(d.dir, raftDBFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	start := time.Now()
	_, err = d.open()
	var de *DataDirError
	if !errors.As(err, &de) || !strings.Contains(de.Problem, "in use by another process") || de.Lost {
		t.Fatalf("open a locked raft.db: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s to give up", took)
	}
}

// TestDiskFull runs a node on a small tmpfs and fills it: the writes that
// find no space fail, clearly, and change nothing; once space is freed
// the node takes writes again, and starts again from what it has. A start
// on a full disk fails with the data dir's name. Needs root, for mount.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	if testing.Short() {
		t.Skip("fills a tmpfs; skipped with -short")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	dir := filepath.Join(mnt, "data")
	d := newDiskNode(t, dir)
	n := d.mustOpen()
	mustApply(t, n, createWeb())

	filler := filepath.Join(mnt, "filler")
	fill(t, filler)
	before := n.FSM().State()
	var failed error
	for i := 0; i < 500 && failed == nil; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, failed = n.Apply(ctx, addBig(i))
		cancel()
		if failed == nil {
			before = n.FSM().State()
		}
	}
	if failed == nil || !strings.Contains(failed.Error(), "no space left on device") {
		t.Fatalf("writes on a full disk: %v, want no space left on device", failed)
	}
	t.Logf("the write that found the disk full: %v", failed)
	eventually(t, 5*time.Second, "a log line naming the data dir", func() bool {
		logs := d.g.logs()
		return strings.Contains(logs, "no space left on device") && strings.Contains(logs, "data_dir="+dir)
	})
	// Nothing half applied: the failed write is not in the state, and
	// does not turn up later either.
	time.Sleep(3 * fastTiming.Heartbeat) // let an election (if any) play out; not synchronisation
	if !proto.Equal(n.FSM().State(), before) {
		t.Error("the state changed after the failed write")
	}

	// A start on the full disk, in a new data dir: a clear error.
	g2 := newNetGroup(t, nil)
	_, err := g2.open(Options{ID: "other", RaftAddr: harness.FreeAddr(t), DataDir: filepath.Join(mnt, "other"), Bootstrap: servers("other", "127.0.0.1:1")})
	if err == nil || !IsDiskFull(err) || !strings.Contains(err.Error(), filepath.Join(mnt, "other")) {
		t.Errorf("open on a full disk: %v, want no space left on device naming the data dir", err)
	} else {
		t.Logf("open on a full disk: %v", err)
	}

	// Space freed: the node leads again and takes writes, after the state
	// it had.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	leaderOf(t, n)
	res := mustApply(t, n, addRS("10.0.3.1"))
	if got, want := res.State.GetConfig().GetSerial(), before.GetConfig().GetSerial()+1; got != want {
		t.Errorf("serial %d after the disk was freed, want %d", got, want)
	}
	after := n.FSM().State()
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	n = d.mustOpen()
	eventually(t, 5*time.Second, "the restarted node to apply its log", func() bool { return proto.Equal(n.FSM().State(), after) })
	if os.Getenv("SHOAL_TEST_LOG") != "" {
		t.Log(d.g.logs())
	}
}

// fill writes path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	// Single bytes, for the last partial block.
	for {
		if _, err := f.Write(buf[:1]); err != nil {
			break
		}
	}
}

// addBig is a write of some size: a service with many real servers.
func addBig(i int) *shoalv1.Command {
	vs := &shoalv1.VirtualService{Name: fmt.Sprintf("big%d", i), Vip: &shoalv1.Address{Address: fmt.Sprintf("192.0.2.%d", 20+i%200)}, Port: uint32(1000 + i)}
	for j := range 200 {
		vs.RealServers = append(vs.RealServers, &shoalv1.RealServer{Address: fmt.Sprintf("10.%d.%d.%d", 1+i/250, i%250, 1+j)})
	}
	return &shoalv1.Command{Op: &shoalv1.Command_CreateVirtualService{CreateVirtualService: &shoalv1.CreateVirtualServiceRequest{Service: vs}}}
}

// BenchmarkCheckRaftDB times the start-up check of a large raft.db: raft
// keeps up to 10240 entries behind its latest snapshot plus those since
// (8192 at most before the next), so some 20,000 entries of a few KB each
// is a large log; 100,000 is far past what raft leaves on disk.
func BenchmarkCheckRaftDB(b *testing.B) {
	for _, size := range []struct{ entries, bytes int }{{20000, 4096}, {100000, 4096}} {
		b.Run(fmt.Sprintf("%dx%dB", size.entries, size.bytes), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), raftDBFile)
			bolt, err := raftboltdb.New(raftboltdb.Options{Path: path, NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			data := make([]byte, size.bytes)
			for i := 0; i < size.entries; i += 500 {
				var batch []*raft.Log
				for j := i; j < min(i+500, size.entries); j++ {
					batch = append(batch, &raft.Log{Index: uint64(j + 1), Term: 1, Type: raft.LogCommand, Data: data})
				}
				if err := bolt.StoreLogs(batch); err != nil {
					b.Fatal(err)
				}
			}
			bolt.Close()
			st, _ := os.Stat(path)
			log := slog.New(slog.DiscardHandler)
			b.ResetTimer()
			for range b.N {
				if _, err := checkBoltFile(path, st.Size(), log); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(st.Size())/1e6, "MB")
			b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/check")
		})
	}
}
