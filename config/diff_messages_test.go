package config

import (
	"strings"
	"testing"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// A change of a list of messages (hooks, BGP peers) reads as their fields,
// not as Go pointers.
func TestDiffListsOfMessages(t *testing.T) {
	old := &shoalv1.Config{Global: &shoalv1.Global{}}
	n := &shoalv1.Config{Global: &shoalv1.Global{Hooks: []*shoalv1.Hook{
		{Events: []string{"leader", "follower"}, Command: []string{"/etc/shoal/scripts/notify", "--site", "lab one"}},
	}}}
	ch := Diff(old, n)
	if len(ch) != 1 {
		t.Fatalf("Diff = %v", ch)
	}
	want := `hooks: [] -> [{events=[leader follower] command=[/etc/shoal/scripts/notify --site "lab one"]}]`
	if got := ch[0].GetDetail(); got != want || strings.Contains(got, "0x") {
		t.Errorf("detail\n got %s\nwant %s", got, want)
	}
}
