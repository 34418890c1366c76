package dataplane_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/shoal-lb/shoal/dataplane"
	"github.com/shoal-lb/shoal/dataplane/kernelfake"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// Example shows the wiring lvsd does: committed configs and leadership in,
// status out. With nil IPVS/Addresses/Announcer/Links the real kernel is used;
// here the fakes stand in.
func Example() {
	addrs := kernelfake.NewAddresses()
	d, err := dataplane.New(dataplane.Options{
		Mode: dataplane.ModeIPVS, NodeID: "r1", DefaultInterface: "eth0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		IPVS:   kernelfake.NewIPVS(), Addresses: addrs, Announcer: &kernelfake.Announcer{}, Links: kernelfake.NewLinks(),
		// Health: the health monitor (its OnChange calls d.HealthChanged).
		// StateFile: filepath.Join(dataDir, "dataplane.json"),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()

	// On every FSM event: d.SetConfig(ev.State.GetConfig()).
	d.SetConfig(&shoalv1.Config{Serial: 1, Services: []*shoalv1.VirtualService{{
		Name: "web", Vip: &shoalv1.Address{Address: "192.0.2.10"}, Port: 80,
		RealServers: []*shoalv1.RealServer{{Address: "10.0.0.1"}},
	}}})
	// On every value of Node.Leadership(): d.SetLeader(leader). While
	// d.Links().Subscribe() says false, a leader should transfer leadership.
	d.SetLeader(true)
	fmt.Println(addrs.Held())
	d.SetLeader(false)
	fmt.Println(addrs.Held())

	cancel()
	<-done // addresses are released when Run returns
	// Output:
	// [192.0.2.10/32 eth0]
	// []
}
