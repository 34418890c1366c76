package config

import (
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func TestCloneServiceCoversEveryField(t *testing.T) {
	if !cloneWrittenOut {
		t.Error("CloneService does not name every field of VirtualService and RealServer in order; it falls back to proto.Clone")
	}
}

// CloneService gives what proto.Clone gives, on random services (nil
// real servers and unknown fields included), and shares nothing with the
// service it copied: changing every field of the clone leaves the
// original as it was.
func TestCloneServiceMatchesProtoClone(t *testing.T) {
	r := rand.New(rand.NewPCG(22, 55))
	for i := range 20000 {
		s := &shoalv1.VirtualService{}
		randomize(r, s.ProtoReflect(), 0)
		switch r.IntN(11) {
		case 10:
			s.RealServers = []*shoalv1.RealServer{}
		case 0:
			s.RealServers = append(s.RealServers, nil)
		case 1:
			s.ProtoReflect().SetUnknown([]byte{0xf8, 0x01, 0x01}) // field 31, varint 1
		case 2:
			if len(s.RealServers) > 0 && s.RealServers[0] != nil {
				s.RealServers[0].ProtoReflect().SetUnknown([]byte{0xf8, 0x01, 0x02})
			}
		}
		before := proto.Clone(s).(*shoalv1.VirtualService)
		got := CloneService(s)
		if !proto.Equal(before, got) {
			t.Fatalf("case %d: CloneService differs from proto.Clone\n want %v\n got  %v", i, before, got)
		}
		// proto.Equal sees a nil element of a list as an empty one, and
		// an empty list as an unset one; proto.Clone makes them so.
		if (got.RealServers == nil) != (before.RealServers == nil) {
			t.Fatalf("case %d: real servers %v, proto.Clone makes %v", i, got.RealServers, before.RealServers)
		}
		for k, rs := range got.RealServers {
			if (rs == nil) != (before.RealServers[k] == nil) {
				t.Fatalf("case %d: real server %d is %v, proto.Clone makes %v", i, k, rs, before.RealServers[k])
			}
		}
		mutate(r, got.ProtoReflect(), 8)
		for _, rs := range got.RealServers {
			mutate(r, rs.ProtoReflect(), 4)
		}
		if got.Active != nil {
			*got.Active = !*got.Active
		}
		for _, rs := range got.RealServers {
			if rs.Weight != nil {
				*rs.Weight++
			}
			if rs.Active != nil {
				*rs.Active = !*rs.Active
			}
		}
		if !proto.Equal(before, s) {
			t.Fatalf("case %d: changing the clone changed the original\n before %v\n after  %v", i, before, s)
		}
	}
	if CloneService(nil) != nil {
		t.Error("CloneService(nil) is not nil")
	}
}
