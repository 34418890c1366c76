package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/shoal-lb/shoal/buildinfo"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// fakeNode is a NodeService that answers GetNodeStatus with a fixed status.
type fakeNode struct {
	shoalv1.UnimplementedNodeServiceServer
	status *shoalv1.NodeStatus
}

func (f fakeNode) GetNodeStatus(context.Context, *shoalv1.GetNodeStatusRequest) (*shoalv1.GetNodeStatusResponse, error) {
	return &shoalv1.GetNodeStatusResponse{Status: f.status}, nil
}

func startFakeNode(t *testing.T, st *shoalv1.NodeStatus) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	shoalv1.RegisterNodeServiceServer(gs, fakeNode{status: st})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

var v150 = &shoalv1.BuildInfo{Version: "v1.5.0", Commit: "89abcdef0123456789abcdef0123456789abcdef", BuildDate: "2026-12-01T00:00:00Z", GoVersion: "go1.26.8", Platform: "linux/amd64"}

func TestVersionCommand(t *testing.T) {
	client := buildinfo.Get()
	addr := startFakeNode(t, &shoalv1.NodeStatus{Id: "r1", Build: v150})
	old := startFakeNode(t, &shoalv1.NodeStatus{Id: "r0"})

	out, _, err := runCtl(t, "-s", addr, "version")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Client: " + client.String() + "\n",
		"Server: v1.5.0 (commit 89abcdef0123, built 2026-12-01T00:00:00Z, go1.26.8 linux/amd64), node r1 at " + addr + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	out, _, err = runCtl(t, "-s", addr, "-o", "json", "version")
	if err != nil {
		t.Fatal(err)
	}
	var j struct {
		Client, Server struct{ Version, Commit string }
		ServerNode     string `json:"server_node"`
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil || j.Client.Version != client.Version || j.Server.Version != "v1.5.0" || j.Server.Commit != v150.Commit || j.ServerNode != "r1" {
		t.Errorf("-o json: %+v %v\n%s", j, err, out)
	}

	// An lvsd from before version reporting answers without a build.
	out, _, err = runCtl(t, "-s", old, "version")
	if err != nil || !strings.Contains(out, "Server: unknown, node r0 at "+old+" runs an lvsd from before version reporting") {
		t.Errorf("old server: %v\n%s", err, out)
	}

	// --client asks nobody; without it, no server is an error after the
	// client's version.
	dead := deadAddr(t)
	out, _, err = runCtl(t, "-s", dead, "version", "--client")
	if err != nil || out != "Client: "+client.String()+"\n" {
		t.Errorf("--client: %v\n%s", err, out)
	}
	out, _, err = runCtl(t, "-s", dead, "--request-timeout", "1s", "version")
	if err == nil || !strings.HasPrefix(out, "Client: ") || strings.Contains(out, "Server:") {
		t.Errorf("no server: %v\n%s", err, out)
	}
}

// deadAddr is a loopback address that nothing listens on.
func deadAddr(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// TestClusterTableVersions: a VERSION column, and a line naming who runs
// what while the routers do not all run one version.
func TestClusterTableVersions(t *testing.T) {
	v140 := &shoalv1.BuildInfo{Version: "v1.4.0"}
	dev := &shoalv1.BuildInfo{Version: "devel", Commit: "0123456789abcdef0123"}
	resp := &shoalv1.GetClusterStatusResponse{LeaderId: "r1", Members: []*shoalv1.Member{
		{Id: "r1", Role: "leader", Build: v140},
		{Id: "r2", Role: "follower", Build: v140},
		{Id: "r3", Role: "follower", Build: v150},
		{Id: "r4", Role: "follower"},
		{Id: "r5", Role: "unreachable", Error: "connection refused"},
		{Id: "r6", Role: "follower", Build: dev},
	}}
	var b bytes.Buffer
	if err := clusterTable(&b, resp); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, "mixed versions: devel+0123456789ab (r6), unknown (r4), v1.4.0 (r1, r2), v1.5.0 (r3); see docs/operations.md on upgrades\n") {
		t.Errorf("no mixed-versions line:\n%s", out)
	}
	lines := strings.Split(out, "\n")
	var header string
	cols := map[string]string{}
	for _, l := range lines {
		f := strings.Fields(l)
		switch {
		case len(f) > 0 && f[0] == "ID":
			header = l
		case header != "" && len(f) > 0:
			cols[f[0]] = strings.TrimSpace(l[strings.Index(header, "VERSION"):min(len(l), strings.Index(header, "ERROR"))])
		}
	}
	want := map[string]string{"r1": "v1.4.0", "r2": "v1.4.0", "r3": "v1.5.0", "r4": "unknown", "r5": "-", "r6": "devel+0123456789ab"}
	for id, v := range want {
		if cols[id] != v {
			t.Errorf("%s: VERSION %q, want %q\n%s", id, cols[id], v, out)
		}
	}

	// One version: no line.
	resp.Members = resp.Members[:2]
	b.Reset()
	if err := clusterTable(&b, resp); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "mixed") {
		t.Errorf("one version reported as mixed:\n%s", b.String())
	}
}

// TestGenMan writes the manual pages as the package build does.
func TestGenMan(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := runCtl(t, "__gen-man", dir); err != nil {
		t.Fatal(err)
	}
	for _, page := range []string{"lvsctl.1", "lvsctl-version.1", "lvsctl-cluster-status.1", "lvsctl-completion-bash.1"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Error(err)
			continue
		}
		if !strings.HasPrefix(string(b), ".nh\n.TH ") || strings.Contains(string(b), "Auto generated") {
			t.Errorf("%s:\n%.300s", page, b)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "lvsctl-__gen-man.1")); err == nil {
		t.Error("the hidden __gen-man has a page")
	}
}
