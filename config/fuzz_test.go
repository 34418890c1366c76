package config

import (
	"testing"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
)

// FuzzNormalizeValidate: Normalize is idempotent, Validate never panics and
// agrees before and after Normalize, and a config never differs from itself.
func FuzzNormalizeValidate(f *testing.F) {
	seed, _ := proto.Marshal(web())
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &shoalv1.Config{}
		if proto.Unmarshal(data, c) != nil {
			return
		}
		verdict := Validate(c) == nil
		Normalize(c)
		once := proto.Clone(c)
		Normalize(c)
		if !proto.Equal(once, c) {
			t.Fatal("Normalize is not idempotent")
		}
		if (Validate(c) == nil) != verdict {
			t.Fatal("Validate disagrees before and after Normalize")
		}
		if d := Diff(c, once.(*shoalv1.Config)); len(d) != 0 {
			t.Fatalf("config differs from itself: %v", d)
		}
	})
}
