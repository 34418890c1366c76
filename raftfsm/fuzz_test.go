package raftfsm

import (
	"testing"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
)

// FuzzApply feeds arbitrary encoded commands to Apply on a small state: it
// must never panic or mutate its input, every accepted state must be valid,
// the serial rule must hold, and the same command must give the same bytes.
func FuzzApply(f *testing.F) {
	for _, l := range sampleLog(f) {
		f.Add(l.Data)
	}
	base := EmptyState()
	for _, l := range sampleLog(f)[:4] {
		cmd := &shoalv1.Command{}
		if err := proto.Unmarshal(l.Data, cmd); err != nil {
			f.Fatal(err)
		}
		if res, err := Apply(base, cmd); err == nil {
			base = res.State
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd := &shoalv1.Command{}
		if proto.Unmarshal(data, cmd) != nil {
			return
		}
		before := proto.Clone(base)
		res, err := Apply(base, cmd)
		if !proto.Equal(before, base) {
			t.Fatal("Apply mutated the state")
		}
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if err := config.Validate(res.State.GetConfig()); err != nil {
			t.Fatalf("accepted an invalid state: %v", err)
		}
		old, now := base.Config.Serial, res.State.Config.Serial
		changed := !proto.Equal(base.Config, res.State.Config)
		switch {
		case changed && now != old+1:
			t.Fatalf("config changed but serial went %d -> %d", old, now)
		case !changed && now != old:
			t.Fatalf("config unchanged but serial went %d -> %d", old, now)
		case changed != (len(res.Changes) > 0):
			t.Fatalf("changed=%v but %d changes: %v", changed, len(res.Changes), res.Changes)
		}
		again, err := Apply(base, cmd)
		if err != nil {
			t.Fatalf("second Apply failed: %v", err)
		}
		a, _ := marshalSnapshot(res.State, 1)
		b, _ := marshalSnapshot(again.State, 1)
		if string(a) != string(b) {
			t.Fatal("the same command gave different states")
		}
	})
}
