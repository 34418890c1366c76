package main

import (
	"context"
	"fmt"
	"log/slog"

	"golang.org/x/sync/errgroup"

	"github.com/shoal-lb/shoal/raftfsm"
	"github.com/shoal-lb/shoal/server"
)

// dataplaneWiring connects the committed configuration and this node's
// leadership to the dataplane; with --dataplane none it does nothing.
type dataplaneWiring struct {
	mode string
	log  *slog.Logger
}

func newDataplane(f *flags, log *slog.Logger) (*dataplaneWiring, error) {
	switch f.dataplane {
	case "none":
		return &dataplaneWiring{mode: "none", log: log}, nil
	case "ipvs", "vip":
		return nil, fmt.Errorf("--dataplane %s: not built into this lvsd yet; use --dataplane none", f.dataplane)
	}
	return nil, fmt.Errorf("--dataplane %q: want ipvs, vip or none", f.dataplane)
}

// status and health are nil interfaces (not typed nils) when absent, so the
// server sees "no provider".
func (d *dataplaneWiring) status() server.DataplaneStatus { return nil }
func (d *dataplaneWiring) health() server.HealthStatus    { return nil }

// start runs the dataplane's goroutines in g until ctx ends; on return the
// VIPs are released.
func (d *dataplaneWiring) start(ctx context.Context, g *errgroup.Group, node *raftfsm.Node) {}
