package main

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func TestNodeTableSync(t *testing.T) {
	st := &shoalv1.NodeStatus{Id: "r1", Role: "leader", Dataplane: "ipvs",
		Connections: &shoalv1.IpvsConnections{Active: 50, Inactive: 3},
		SyncDaemons: []*shoalv1.SyncDaemon{
			{State: "master", Interface: "eth0", SyncId: 7, Group: "224.0.0.81", Port: 8848, Ttl: 1, MaxLen: 1472},
			{State: "backup", Interface: "eth0", SyncId: 7, Group: "224.0.0.81", Port: 8848, Ttl: 1, MaxLen: 1472},
		}}
	var b strings.Builder
	if err := nodeTable(&b, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"connections:   50 active, 3 inactive",
		"sync daemons:  master on eth0 syncid 7 group 224.0.0.81:8848 ttl 1 maxlen 1472; backup on eth0 syncid 7 group 224.0.0.81:8848 maxlen 1472",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	st.SyncDaemons = nil
	if err := nodeTable(&b, st); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "sync daemons:  none") {
		t.Errorf("status without daemons:\n%s", b.String())
	}
}

func TestTransferSyncLine(t *testing.T) {
	w := durationpb.New(1234 * time.Millisecond)
	for _, tc := range []struct {
		s    *shoalv1.TransferSync
		want string
	}{
		{nil, ""},
		{&shoalv1.TransferSync{Target: "r2", Checked: 50, Complete: true, Waited: w}, "connections: r2 held all 50 established connections checked (waited 1.234s)\n"},
		{&shoalv1.TransferSync{Target: "r2", Checked: 50, Missing: 4, Waited: w}, "connections: r2 still lacked 4 of 50 established connections checked after 1.234s; leadership moved anyway\n"},
	} {
		if got := transferSyncLine(tc.s); got != tc.want {
			t.Errorf("transferSyncLine(%v) = %q, want %q", tc.s, got, tc.want)
		}
	}
}

// TestNodeTableChecks: a real server with several checks gets a row per
// check under its own.
func TestNodeTableChecks(t *testing.T) {
	st := &shoalv1.NodeStatus{Id: "r1", Role: "leader", Health: []*shoalv1.RealServerHealth{
		{Service: "web", Address: "10.0.0.1", Port: 80, State: "down", Reason: "check 1 (http:8081): status 500",
			LastLatency: durationpb.New(2 * time.Millisecond), Checks: []*shoalv1.CheckHealth{
				{Index: 0, Kind: "tcp", Port: 80, State: "up", Reason: "first check passed"},
				{Index: 1, Kind: "http", Port: 8081, State: "down", Reason: "status 500", LastLatency: durationpb.New(2 * time.Millisecond)},
			}},
		{Service: "web", Address: "10.0.0.2", Port: 80, State: "up", Reason: "first check passed"},
	}}
	var b strings.Builder
	if err := nodeTable(&b, st); err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.Contains(l, "10.0.0.") || strings.Contains(l, "check ") {
			rows = append(rows, strings.Join(strings.Fields(l), " "))
		}
	}
	want := []string{
		"web 10.0.0.1:80 down - 2ms check 1 (http:8081): status 500",
		"check 0 tcp:80 up - - first check passed",
		"check 1 http:8081 down - 2ms status 500",
		"web 10.0.0.2:80 up - - first check passed",
	}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Errorf("health rows:\n%s\nwant:\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
}
