package main

import (
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func init() { registerCommand(newNodeCmd) }

func newNodeCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Take a router out of service and back"}
	var timeout time.Duration
	var noWait bool
	drain := &cobra.Command{
		Use:   "drain ID",
		Short: "Withdraw the router's BGP routes and (l2) move leadership away, then wait for its connections to end",
		Long: "drain adds ID to global.drained_nodes, so the router stays drained across restarts until undrain. " +
			"A drained router announces no bgp-mode route and, while it leads, hands leadership to another voter (l2 mode). " +
			"The command then waits until the router holds no VIP, announces nothing and its IPVS connection count is 0, or --timeout passes.",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeMembers,
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			id := args[0]
			serial, err := a.setDrained(cmd, conn, id, true)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %s drained (serial %d)\n", id, serial)
			if noWait {
				return nil
			}
			return a.waitDrained(cmd, conn, id, timeout)
		},
	}
	drain.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the router's connections to end")
	drain.Flags().BoolVar(&noWait, "no-wait", false, "return once the drain is committed")
	undrain := &cobra.Command{
		Use:               "undrain ID",
		Short:             "Put a drained router back in service",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeMembers,
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			serial, err := a.setDrained(cmd, conn, args[0], false)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "node %s undrained (serial %d)\n", args[0], serial)
			return err
		},
	}
	cmd.AddCommand(drain, undrain)
	return cmd
}

// setDrained adds id to or removes it from global.drained_nodes with a
// compare-and-set on the serial, retried when another change came first.
func (a *app) setDrained(cmd *cobra.Command, conn *grpc.ClientConn, id string, drained bool) (uint64, error) {
	cs := shoalv1.NewConfigServiceClient(conn)
	for attempt := 0; ; attempt++ {
		ctx, cancel := a.context(cmd)
		cur, err := cs.GetConfig(ctx, &shoalv1.GetConfigRequest{})
		cancel()
		if err != nil {
			return 0, err
		}
		cfg := cur.GetConfig()
		if cfg.Global == nil {
			cfg.Global = &shoalv1.Global{}
		}
		has := slices.Contains(cfg.Global.DrainedNodes, id)
		if has == drained {
			return cfg.GetSerial(), nil // already so: nothing to commit
		}
		if drained {
			cfg.Global.DrainedNodes = append(cfg.Global.DrainedNodes, id)
		} else {
			cfg.Global.DrainedNodes = slices.DeleteFunc(cfg.Global.DrainedNodes, func(s string) bool { return s == id })
		}
		ctx, cancel = a.context(cmd)
		resp, err := cs.ApplyConfig(ctx, &shoalv1.ApplyConfigRequest{Config: cfg, ExpectedSerial: cfg.GetSerial()})
		cancel()
		if status.Code(err) == codes.FailedPrecondition && attempt < 5 {
			continue // the config changed under us: read it again
		}
		if err != nil {
			return 0, err
		}
		return resp.GetSerial(), nil
	}
}

// waitDrained polls the router's own status until it holds and announces
// nothing and has no IPVS connection left, or timeout passes.
func (a *app) waitDrained(cmd *cobra.Command, conn *grpc.ClientConn, id string, timeout time.Duration) error {
	out := cmd.OutOrStdout()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		st, err := a.memberStatus(cmd, conn, id)
		msg := ""
		switch {
		case err != nil:
			msg = "cannot ask the router: " + err.Error()
		default:
			msg = drainProgress(st)
			if msg == "" {
				_, err := fmt.Fprintf(out, "node %s is drained: no VIP held, nothing announced, no connection\n", id)
				return err
			}
		}
		if msg != last {
			fmt.Fprintf(out, "waiting: %s\n", msg)
			last = msg
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s still has %s after %v; it stays drained (lvsctl node undrain %s to undo)", id, msg, timeout, id)
		}
		select {
		case <-cmd.Context().Done():
			return cmd.Context().Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// drainProgress says what a drained router still carries ("" = nothing).
func drainProgress(st *shoalv1.NodeStatus) string {
	switch {
	case st.GetHoldsVips():
		return "VIPs held: " + fmt.Sprint(st.GetAddresses())
	case len(st.GetBgp().GetAnnounced()) > 0:
		return "routes announced: " + fmt.Sprint(st.GetBgp().GetAnnounced())
	}
	if c := st.GetConnections(); c != nil && c.GetActive()+c.GetInactive() > 0 {
		return fmt.Sprintf("%d active and %d inactive connections", c.GetActive(), c.GetInactive())
	}
	return ""
}

// memberStatus asks member id for its own status, through its API address.
func (a *app) memberStatus(cmd *cobra.Command, conn *grpc.ClientConn, id string) (*shoalv1.NodeStatus, error) {
	ctx, cancel := a.context(cmd)
	defer cancel()
	cs, err := shoalv1.NewClusterServiceClient(conn).GetClusterStatus(ctx, &shoalv1.GetClusterStatusRequest{})
	if err != nil {
		return nil, err
	}
	addr := ""
	for _, m := range cs.GetMembers() {
		if m.GetId() == id {
			addr = m.GetApiAddress()
		}
	}
	if addr == "" {
		return nil, fmt.Errorf("node %s: not a member with a registered API address", id)
	}
	// A second channel to the member, as status --node dials it; the
	// first stays for the next round.
	saved, savedConn := a.server, a.conn
	a.server, a.conn = addr, nil
	mc, err := a.dial()
	a.server, a.conn = saved, savedConn
	if err != nil {
		return nil, err
	}
	defer mc.Close()
	resp, err := shoalv1.NewNodeServiceClient(mc).GetNodeStatus(ctx, &shoalv1.GetNodeStatusRequest{})
	if err != nil {
		return nil, err
	}
	return resp.GetStatus(), nil
}
