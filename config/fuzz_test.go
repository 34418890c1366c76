package config

import (
	"fmt"
	"testing"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
)

// FuzzNormalizeValidate: Normalize is idempotent, Validate and Admit never
// panic and agree before and after Normalize, a config never differs from
// itself, and Admit never refuses in a change what the old config had.
func FuzzNormalizeValidate(f *testing.F) {
	seed, _ := proto.Marshal(web())
	f.Add(seed)
	for _, s := range addressSeeds() {
		b, _ := proto.Marshal(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &shoalv1.Config{}
		if proto.Unmarshal(data, c) != nil {
			return
		}
		verdict := Validate(c) == nil
		admitted := Admit(nil, c) == nil
		if Admit(c, c) != nil {
			t.Fatal("Admit(c, c) refuses what c already has")
		}
		Normalize(c)
		once := proto.Clone(c)
		Normalize(c)
		if !proto.Equal(once, c) {
			t.Fatal("Normalize is not idempotent")
		}
		if (Validate(c) == nil) != verdict {
			t.Fatal("Validate disagrees before and after Normalize")
		}
		// The FSM judges whole configurations with ValidateNormalized:
		// the same errors, in the same order, and c untouched.
		if got, want := fmt.Sprint(ValidateNormalized(c)), fmt.Sprint(Validate(c)); got != want {
			t.Fatalf("ValidateNormalized = %s, Validate = %s", got, want)
		}
		if !proto.Equal(once, c) {
			t.Fatal("ValidateNormalized changed its configuration")
		}
		if (Admit(nil, c) == nil) != admitted {
			t.Fatal("Admit disagrees before and after Normalize")
		}
		if d := Diff(c, once.(*shoalv1.Config)); len(d) != 0 {
			t.Fatalf("config differs from itself: %v", d)
		}
	})
}

// addressSeeds are web() with each address Admit refuses in each place it
// looks, and the neighbours it allows (loopback real server, link-local VIP
// on an interface, the last address of a /31).
func addressSeeds() []*shoalv1.Config {
	var out []*shoalv1.Config
	for _, a := range []string{"0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255", "::1", "fe80::1", "::", "ff02::1", "169.254.0.1", "::ffff:127.0.0.1"} {
		c := web()
		c.Services[0].Vip.Address = a
		out = append(out, c)
		c = web()
		c.Global = &shoalv1.Global{NatRouter: &shoalv1.Address{Address: a}}
		out = append(out, c)
	}
	for _, a := range []string{"0.0.0.0", "224.0.0.5", "255.255.255.255", "127.0.0.1", "::", "ff05::2"} {
		c := web()
		c.Services[0].RealServers[0].Address = a
		c.Services[0].SorryServer = &shoalv1.RealServer{Address: a, Port: 8080}
		out = append(out, c)
	}
	for _, v := range []*shoalv1.Address{
		{Address: "192.0.2.255", PrefixLength: 24},
		{Address: "192.0.2.255", PrefixLength: 31},
		{Address: "fe80::1", PrefixLength: 64, Interface: "eth0"},
	} {
		c := web()
		c.Services[0].Vip = v
		out = append(out, c)
	}
	return out
}
