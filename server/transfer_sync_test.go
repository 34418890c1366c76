package server

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// fakeTable is a node's IPVS connection table with sync on.
type fakeTable struct {
	mu    sync.Mutex
	conns []string
	asked int
}

func (f *fakeTable) set(keys ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conns = slices.Clone(keys)
}

func (f *fakeTable) SyncEnabled() bool { return true }

func (f *fakeTable) SampleEstablished() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.conns), nil
}

func (f *fakeTable) MissingConns(keys []string) ([]string, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked++
	var out []string
	for _, k := range keys {
		if !slices.Contains(f.conns, k) {
			out = append(out, k)
		}
	}
	return out, len(f.conns), nil
}

func TestTransferWaitsForSync(t *testing.T) {
	tables := []*fakeTable{{}, {}, {}}
	nodes := startCluster(t, 3, clusterOptions{sync: func(i int) ConnectionSync { return tables[i] }})
	leader, followers := leaderOf(t, nodes)
	var lt, ft *fakeTable
	for i, n := range nodes {
		if n == leader {
			lt = tables[i]
		}
		if n == followers[0] {
			ft = tables[i]
		}
	}
	lt.set("TCP a", "TCP b", "TCP c")
	ft.set("TCP a")
	// The target receives the rest a little later, as a backup daemon
	// does; one connection ends on the leader meanwhile.
	go func() {
		time.Sleep(300 * time.Millisecond) // the kernel's sync lag, played
		ft.set("TCP a", "TCP b")
		lt.set("TCP a", "TCP b")
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	resp, err := leader.cluster().TransferLeadership(ctx, &shoalv1.TransferLeadershipRequest{Id: followers[0].id})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	s := resp.GetSync()
	if resp.GetLeaderId() != followers[0].id || !s.GetComplete() || s.GetChecked() != 3 || s.GetMissing() != 0 || s.GetTarget() != followers[0].id {
		t.Fatalf("transfer: %v", resp)
	}
	if took < 250*time.Millisecond || s.GetWaited().AsDuration() < 250*time.Millisecond {
		t.Errorf("transfer did not wait for the target's table: took %v, waited %v", took, s.GetWaited().AsDuration())
	}
	t.Logf("transfer took %v, sync %v", took, s)
}

func TestTransferGivesUpWaitingForSync(t *testing.T) {
	tables := []*fakeTable{{}, {}, {}}
	nodes := startCluster(t, 3, clusterOptions{sync: func(i int) ConnectionSync { return tables[i] }})
	leader, followers := leaderOf(t, nodes)
	for i, n := range nodes {
		if n == leader {
			tables[i].set("TCP a", "TCP b")
		} else {
			tables[i].set("TCP a")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// No target named: the leader waits for any follower, then moves
	// leadership all the same and says what was missing.
	// The wait is long enough for a loaded host to answer the leader's
	// questions; the tables never match, so it runs out all the same.
	const wait = 1500 * time.Millisecond
	resp, err := followers[1].cluster().TransferLeadership(ctx, &shoalv1.TransferLeadershipRequest{SyncWait: durationpb.New(wait)})
	if err != nil {
		t.Fatal(err)
	}
	s := resp.GetSync()
	if resp.GetLeaderId() == "" || resp.GetLeaderId() == leader.id || s.GetComplete() || s.GetMissing() != 1 || s.GetChecked() != 2 {
		t.Fatalf("transfer: %v", resp)
	}
	if w := s.GetWaited().AsDuration(); w < wait || w > wait+5*time.Second {
		t.Errorf("waited %v for a %v wait", w, wait)
	}

	// sync_wait 0: no waiting, no report.
	leader, _ = leaderOf(t, nodes)
	resp, err = leader.cluster().TransferLeadership(ctx, &shoalv1.TransferLeadershipRequest{SyncWait: durationpb.New(0)})
	if err != nil || resp.GetSync() != nil {
		t.Fatalf("transfer without waiting: %v, %v", resp, err)
	}
}
