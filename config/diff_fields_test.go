package config

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
)

// A field added to VirtualService or RealServer must be named in the
// written-out diff too; until it is, the diff falls back to reflection.
func TestFastDiffCoversEveryField(t *testing.T) {
	if serviceFields.reflective {
		t.Error("serviceFields does not name every field of VirtualService (but real_servers) in order")
	}
	if realServerFields.reflective {
		t.Error("realServerFields does not name every field of RealServer in order")
	}
}

// The written-out diff says what the reflective one says, word for word,
// on random pairs of services and real servers that differ in a few
// fields (or none), set and unset, nested messages included.
func TestFastDiffMatchesReflective(t *testing.T) {
	r := rand.New(rand.NewPCG(22, 5))
	for i := range 20000 {
		o := &shoalv1.VirtualService{}
		randomize(r, o.ProtoReflect(), 0)
		n := proto.Clone(o).(*shoalv1.VirtualService)
		mutate(r, n.ProtoReflect(), r.IntN(4))
		want := fieldDiff("", o, n, map[string]bool{"real_servers": true})
		if got := serviceFields.diff("", o, n); !slices.Equal(got, want) {
			t.Fatalf("case %d, service\n o %v\n n %v\n got  %q\n want %q", i, o, n, got, want)
		}
		ors := &shoalv1.RealServer{}
		randomize(r, ors.ProtoReflect(), 0)
		nrs := proto.Clone(ors).(*shoalv1.RealServer)
		mutate(r, nrs.ProtoReflect(), r.IntN(4))
		want = fieldDiff("", ors, nrs, nil)
		if got := realServerFields.diff("", ors, nrs); !slices.Equal(got, want) {
			t.Fatalf("case %d, real server\n o %v\n n %v\n got  %q\n want %q", i, ors, nrs, got, want)
		}
	}
}

// randomize sets each field of m or leaves it unset, from a few values
// each, so that two random messages are often equal in a field.
func randomize(r *rand.Rand, m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		if r.IntN(3) > 0 {
			setRandom(r, m, fields.Get(i), depth)
		}
	}
}

// mutate changes k random fields of m: a new value, or unset.
func mutate(r *rand.Rand, m protoreflect.Message, k int) {
	fields := m.Descriptor().Fields()
	for range k {
		fd := fields.Get(r.IntN(fields.Len()))
		switch {
		case r.IntN(4) == 0:
			m.Clear(fd)
		case fd.Kind() == protoreflect.MessageKind && !fd.IsList() && m.Has(fd) && r.IntN(2) == 0:
			// A change inside a nested message.
			mutate(r, m.Mutable(fd).Message(), 1)
		default:
			setRandom(r, m, fd, 1)
		}
	}
}

func setRandom(r *rand.Rand, m protoreflect.Message, fd protoreflect.FieldDescriptor, depth int) {
	if fd.IsMap() {
		return
	}
	if fd.IsList() {
		m.Clear(fd)
		l := m.Mutable(fd).List()
		for range r.IntN(3) {
			if fd.Kind() == protoreflect.MessageKind {
				e := l.NewElement()
				if depth < 2 {
					randomize(r, e.Message(), depth+1)
				}
				l.Append(e)
			} else {
				l.Append(scalar(r, fd))
			}
		}
		return
	}
	if fd.Kind() == protoreflect.MessageKind {
		if fd.Message().FullName() == "google.protobuf.Duration" {
			m.Set(fd, protoreflect.ValueOfMessage(durationpb.New(time.Duration(durations[r.IntN(len(durations))])).ProtoReflect()))
			return
		}
		v := m.NewField(fd)
		if depth < 2 {
			randomize(r, v.Message(), depth+1)
		}
		m.Set(fd, v)
		return
	}
	m.Set(fd, scalar(r, fd))
}

var durations = []int64{0, 1e9, 2e9, 5e8}

func scalar(r *rand.Rand, fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString([]string{"", "a", "b c", "10.0.0.1", "2001:db8::1", `q"uote`}[r.IntN(6)])
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(r.IntN(2) == 0)
	case protoreflect.Uint32Kind:
		return protoreflect.ValueOfUint32([]uint32{0, 1, 80, 8080}[r.IntN(4)])
	case protoreflect.Int32Kind:
		return protoreflect.ValueOfInt32([]int32{0, 1, -1, 3}[r.IntN(4)])
	case protoreflect.Uint64Kind:
		return protoreflect.ValueOfUint64([]uint64{0, 1, 7}[r.IntN(3)])
	case protoreflect.Int64Kind:
		return protoreflect.ValueOfInt64([]int64{0, 1, -7}[r.IntN(3)])
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vals.Get(r.IntN(vals.Len())).Number())
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([][]byte{nil, {1}, {2, 3}}[r.IntN(3)])
	}
	panic("scalar: kind " + fd.Kind().String() + " of " + string(fd.FullName()) + " not handled; add it")
}

// BenchmarkDiffService is the diff of one weight change in a service of
// 10 real servers, what every write of a real server costs each node,
// written out and as it was (reflection, real servers paired by maps).
func BenchmarkDiffService(b *testing.B) {
	o := &shoalv1.VirtualService{Name: "web", Vip: &shoalv1.Address{Address: "10.0.0.10", PrefixLength: 24}, Port: 80}
	for j := range 10 {
		o.RealServers = append(o.RealServers, &shoalv1.RealServer{Address: "172.16.0." + string(rune('1'+j)), Weight: proto.Uint32(100), Forward: "dr"})
	}
	NormalizeService(&shoalv1.Config{}, o)
	n := proto.Clone(o).(*shoalv1.VirtualService)
	n.RealServers[3].Weight = proto.Uint32(7)
	b.Run("written_out", func(b *testing.B) {
		for b.Loop() {
			if len(DiffService(o, n)) != 1 {
				b.Fatal("want one change")
			}
		}
	})
	b.Run("reflective", func(b *testing.B) {
		for b.Loop() {
			if len(diffServiceByIdentity(o, n)) != 1 {
				b.Fatal("want one change")
			}
		}
	})
}

// DiffService of two versions of a service gives what the reflective,
// match-by-identity diff gives, on random real server lists: changed in
// place, some added, removed, reordered, listed twice, or nil.
func TestDiffServiceMatchesByIdentity(t *testing.T) {
	r := rand.New(rand.NewPCG(22, 6))
	addrs := []string{"10.0.0.1", "10.0.0.2", "10.0.0.10", "2001:db8::1", "2001:0db8::1", "x"}
	for i := range 20000 {
		o := &shoalv1.VirtualService{Name: "s", Port: 80}
		for range r.IntN(6) {
			rs := &shoalv1.RealServer{}
			randomize(r, rs.ProtoReflect(), 1)
			rs.Address, rs.Port = addrs[r.IntN(len(addrs))], []uint32{0, 80}[r.IntN(2)]
			o.RealServers = append(o.RealServers, rs)
		}
		n := proto.Clone(o).(*shoalv1.VirtualService)
		for range r.IntN(3) {
			if len(n.RealServers) == 0 {
				break
			}
			j := r.IntN(len(n.RealServers))
			switch r.IntN(8) {
			case 0:
				n.RealServers = slices.Delete(n.RealServers, j, j+1)
			case 1:
				n.RealServers = append(n.RealServers, &shoalv1.RealServer{Address: addrs[r.IntN(len(addrs))]})
			case 2:
				k := r.IntN(len(n.RealServers))
				n.RealServers[j], n.RealServers[k] = n.RealServers[k], n.RealServers[j]
			case 3:
				n.RealServers[j] = nil
			default:
				if n.RealServers[j] != nil {
					mutate(r, n.RealServers[j].ProtoReflect(), 1+r.IntN(2))
				}
			}
		}
		if r.IntN(4) == 0 {
			mutate(r, n.ProtoReflect(), 1)
		}
		got, want := DiffService(o, n), diffServiceByIdentity(o, n)
		if !slices.EqualFunc(got, want, func(a, b *shoalv1.Change) bool { return proto.Equal(a, b) }) {
			t.Fatalf("case %d\n o %v\n n %v\n got  %v\n want %v", i, o, n, got, want)
		}
	}
}

// diffServiceByIdentity is diffService as it was before the written-out
// diff: reflection for the fields, maps for matching real servers.
func diffServiceByIdentity(o, n *shoalv1.VirtualService) []*shoalv1.Change {
	var out []*shoalv1.Change
	if d := fieldDiff("", o, n, map[string]bool{"real_servers": true}); len(d) > 0 {
		out = append(out, &shoalv1.Change{Action: shoalv1.ChangeAction_CHANGE_ACTION_MODIFIED, Service: n.Name, Detail: strings.Join(d, ", ")})
	}
	olds, news := realServersByID(o), realServersByID(n)
	for _, id := range unionKeys(olds, news) {
		ors, nrs := olds[id], news[id]
		switch {
		case ors == nil:
			out = append(out, rsChange(shoalv1.ChangeAction_CHANGE_ACTION_ADDED, n, nrs, describeRealServer(nrs)))
		case nrs == nil:
			out = append(out, rsChange(shoalv1.ChangeAction_CHANGE_ACTION_REMOVED, o, ors, describeRealServer(ors)))
		default:
			if d := fieldDiff("", ors, nrs, nil); len(d) > 0 {
				out = append(out, rsChange(shoalv1.ChangeAction_CHANGE_ACTION_MODIFIED, n, nrs, strings.Join(d, ", ")))
			}
		}
	}
	return out
}
