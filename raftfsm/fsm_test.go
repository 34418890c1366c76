package raftfsm

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
)

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func logOf(t testing.TB, cmds ...*shoalv1.Command) []*raft.Log {
	var out []*raft.Log
	for i, c := range cmds {
		b, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: b})
	}
	return out
}

// sampleLog exercises every kind of command, including rejected ones.
func sampleLog(t testing.TB) []*raft.Log {
	return logOf(t,
		&shoalv1.Command{Op: &shoalv1.Command_CreateVirtualService{CreateVirtualService: &shoalv1.CreateVirtualServiceRequest{Service: webService()}}},
		&shoalv1.Command{Op: &shoalv1.Command_RegisterMember{RegisterMember: &shoalv1.RegisterMember{Id: "n2", ApiAddress: "127.0.0.2:7000"}}},
		&shoalv1.Command{Op: &shoalv1.Command_RegisterMember{RegisterMember: &shoalv1.RegisterMember{Id: "n1", ApiAddress: "127.0.0.1:7000"}}},
		&shoalv1.Command{Op: &shoalv1.Command_AddRealServer{AddRealServer: &shoalv1.AddRealServerRequest{Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.0.9"}}}},
		&shoalv1.Command{Op: &shoalv1.Command_DeleteVirtualService{DeleteVirtualService: &shoalv1.DeleteVirtualServiceRequest{Name: "missing"}}},
		&shoalv1.Command{Op: &shoalv1.Command_CreateVirtualService{CreateVirtualService: &shoalv1.CreateVirtualServiceRequest{Service: &shoalv1.VirtualService{
			Name: "dns", Vip: &shoalv1.Address{Address: "2001:db8::53"}, Port: 53, Protocol: "udp",
			RealServers: []*shoalv1.RealServer{{Address: "2001:db8::2"}, {Address: "2001:db8::1"}}}}}},
	)
}

func snapshotBytes(t testing.TB, f *FSM) []byte {
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	return sink.Bytes()
}

func TestFSMApplyResponses(t *testing.T) {
	f := NewFSM()
	logs := sampleLog(t)
	for _, l := range logs {
		r := f.Apply(l)
		switch l.Index {
		case 5:
			var e *Error
			if err, ok := r.(error); !ok || !errors.As(err, &e) || e.Kind != KindNotFound {
				t.Errorf("index 5: got %v, want KindNotFound", r)
			}
		default:
			if _, ok := r.(*Result); !ok {
				t.Errorf("index %d: got %v, want *Result", l.Index, r)
			}
		}
	}
	if got := f.AppliedIndex(); got != 6 {
		t.Errorf("applied index %d, want 6", got)
	}
	if got := f.State().Config.Serial; got != 3 {
		t.Errorf("serial %d, want 3 (members and rejections do not count)", got)
	}
	if r := f.Apply(&raft.Log{Index: 7, Data: []byte{0xff, 0xff}}); r == nil {
		t.Error("garbage command accepted")
	} else if _, ok := r.(error); !ok {
		t.Errorf("garbage command: %v", r)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	f := NewFSM()
	for _, l := range sampleLog(t) {
		f.Apply(l)
	}
	b := snapshotBytes(t, f)

	g := NewFSM()
	events, cancel := g.Subscribe(1)
	defer cancel()
	if err := g.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(f.State(), g.State()) {
		t.Errorf("restored state differs:\n%v\n%v", f.State(), g.State())
	}
	if g.AppliedIndex() != f.AppliedIndex() {
		t.Errorf("restored applied index %d, want %d", g.AppliedIndex(), f.AppliedIndex())
	}
	if ev := <-events; ev.State != g.State() || ev.Serial != 3 {
		t.Errorf("restore event %+v", ev)
	}
	if err := g.Restore(io.NopCloser(bytes.NewReader([]byte{9}))); err == nil {
		t.Error("restore of an unknown format succeeded")
	}
}

func TestDeterminism(t *testing.T) {
	a, b := NewFSM(), NewFSM()
	for _, l := range sampleLog(t) {
		a.Apply(l)
	}
	for _, l := range sampleLog(t) {
		b.Apply(l)
	}
	if !bytes.Equal(snapshotBytes(t, a), snapshotBytes(t, b)) {
		t.Error("the same log gave different snapshots")
	}
}

func TestSubscribe(t *testing.T) {
	f := NewFSM()
	fast, cancelFast := f.Subscribe(minEvents + 16)
	defer cancelFast()
	slow, cancelSlow := f.Subscribe(1)
	defer cancelSlow()
	logs := sampleLog(t)
	for _, l := range logs {
		f.Apply(l)
	}
	// Five commands changed something (the rejected one did not).
	var got []uint64
	for len(got) < 5 {
		got = append(got, (<-fast).Index)
	}
	if want := []uint64{1, 2, 3, 4, 6}; !slices.Equal(got, want) {
		t.Errorf("event indexes %v, want %v", got, want)
	}
	// The slow subscriber, which reads nothing, holds minEvents events
	// (several raft batches) and is dropped at the next.
	var more []*shoalv1.Command
	for i := len(got); i < minEvents; i++ {
		more = append(more, rsWeightCmd("web", "10.0.0.9", uint32(1+i%2)))
	}
	for _, l := range logOf(t, more...) {
		l.Index += uint64(len(logs))
		f.Apply(l)
	}
	if len(slow) != minEvents {
		t.Fatalf("slow subscriber holds %d events, want %d", len(slow), minEvents)
	}
	last := logOf(t, rsWeightCmd("web", "10.0.0.9", 7))[0]
	last.Index = uint64(len(logs) + len(more) + 1)
	f.Apply(last)
	for range minEvents {
		<-slow
	}
	if _, ok := <-slow; ok {
		t.Error("slow subscriber not dropped")
	}
	cancelSlow() // after the drop: must not panic
}

func TestWaitApplied(t *testing.T) {
	f := NewFSM()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.waitApplied(ctx, 3) }()
	for _, l := range sampleLog(t)[:3] {
		f.Apply(l)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithCancel(context.Background())
	cancelShort()
	if err := f.waitApplied(short, 100); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}
