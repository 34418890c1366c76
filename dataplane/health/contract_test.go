package health_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-lb/shoal/dataplane"
	"github.com/shoal-lb/shoal/dataplane/health"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// The dataplane asks the monitor for verdicts through its own small interface.
var _ dataplane.Health = (*health.Monitor)(nil)

// Example shows the wiring lvsd does: the monitor's verdicts feed the
// dataplane's Health, its changes kick a reconcile, and every committed
// config reaches the monitor before the dataplane.
func Example() {
	kick := make(chan struct{}, 1) // stands for Dataplane.HealthChanged
	m := health.New(health.Options{
		NodeID:     "r1",
		Registerer: prometheus.NewRegistry(),
		OnChange: func() {
			select {
			case kick <- struct{}{}:
			default:
			}
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()

	m.SetConfig(&shoalv1.Config{Services: []*shoalv1.VirtualService{{
		Name: "web", Vip: &shoalv1.Address{Address: "192.0.2.10"}, Port: 80,
		HealthCheck: &shoalv1.HealthCheck{Kind: "none"},
		RealServers: []*shoalv1.RealServer{{Address: "10.0.0.1"}},
	}}})
	<-kick
	fmt.Println(m.Healthy("web", netip.MustParseAddrPort("10.0.0.1:80")))
	for _, st := range m.Status() {
		fmt.Println(st.Service, st.Address, st.Port, st.State, st.Reason)
	}
	cancel()
	fmt.Println(<-done)
	// Output:
	// true
	// web 10.0.0.1 80 up no health check
	// <nil>
}
