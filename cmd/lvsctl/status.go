package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func init() { registerCommand(newStatusCmd) }

func newStatusCmd(a *app) *cobra.Command {
	var node string
	cmd := &cobra.Command{
		Use:   "status [--node ID]",
		Short: "One node's view: raft, VIPs held, reconcile state, IPVS table and health verdicts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			if node != "" {
				// Find the member's API address through the node we know.
				cs, err := shoalv1.NewClusterServiceClient(conn).GetClusterStatus(ctx, &shoalv1.GetClusterStatusRequest{})
				if err != nil {
					return err
				}
				addr := ""
				for _, m := range cs.GetMembers() {
					if m.GetId() == node {
						addr = m.GetApiAddress()
					}
				}
				if addr == "" {
					return fmt.Errorf("node %s: not a member with a registered API address", node)
				}
				if err := a.close(); err != nil {
					return err
				}
				a.server = addr
				if conn, err = a.dial(); err != nil {
					return err
				}
			}
			resp, err := shoalv1.NewNodeServiceClient(conn).GetNodeStatus(ctx, &shoalv1.GetNodeStatusRequest{})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return nodeTable(w, resp.GetStatus()) })
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "ask this member instead of --server")
	_ = cmd.RegisterFlagCompletionFunc("node", a.completeMembers)
	return cmd
}

func nodeTable(w io.Writer, st *shoalv1.NodeStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("node", fmt.Sprintf("%s (api %s, raft %s)", st.GetId(), st.GetApiAddress(), st.GetRaftAddress()))
	row("role", fmt.Sprintf("%s, leader %s, term %d", st.GetRole(), orDash(st.GetLeaderId()), st.GetTerm()))
	row("applied", fmt.Sprintf("index %d, serial %d", st.GetAppliedIndex(), st.GetAppliedSerial()))
	if st.GetRole() != "leader" && st.GetLastContact() != nil {
		row("last contact", st.GetLastContact().AsDuration().Round(time.Millisecond).String())
	}
	row("dataplane", st.GetDataplane())
	row("holds VIPs", fmt.Sprint(st.GetHoldsVips()))
	if len(st.GetAddresses()) > 0 {
		row("addresses", strings.Join(st.GetAddresses(), ", "))
	}
	if c := st.GetConnections(); c != nil {
		row("connections", fmt.Sprintf("%d active, %d inactive", c.GetActive(), c.GetInactive()))
	}
	if len(st.GetSyncDaemons()) > 0 {
		var ds []string
		for _, d := range st.GetSyncDaemons() {
			ds = append(ds, syncDaemonString(d))
		}
		row("sync daemons", strings.Join(ds, "; "))
	} else if st.GetDataplane() == "ipvs" {
		row("sync daemons", "none")
	}
	rec := fmt.Sprintf("serial %d", st.GetReconciledSerial())
	if st.GetLastReconcile() != nil {
		rec += " at " + st.GetLastReconcile().AsTime().Local().Format(time.DateTime)
	}
	row("reconciled", rec)
	if st.GetReconcileError() != "" {
		row("reconcile error", st.GetReconcileError())
	}
	if b := st.GetBgp(); b != nil {
		ann := "none"
		if len(b.GetAnnounced()) > 0 {
			ann = strings.Join(b.GetAnnounced(), ", ")
		}
		if b.GetWithdrawnReason() != "" {
			ann += " (withdrawn: " + b.GetWithdrawnReason() + ")"
		}
		row("bgp announces", ann)
		if b.GetError() != "" {
			row("bgp error", b.GetError())
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if b := st.GetBgp(); b != nil && len(b.GetSessions()) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "BGP PEER\tASN\tSTATE\tSINCE")
		for _, s := range b.GetSessions() {
			since := "-"
			if s.GetSince() != nil {
				since = s.GetSince().AsTime().Local().Format(time.DateTime)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", s.GetPeer(), s.GetAsn(), s.GetState(), since)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(st.GetIpvs()) > 0 {
		fmt.Fprintln(w)
		if err := ipvsTable(w, st.GetIpvs()); err != nil {
			return err
		}
	}
	if len(st.GetHealth()) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SERVICE\tREAL SERVER\tSTATE\tSINCE\tLATENCY\tREASON")
		for _, h := range st.GetHealth() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", h.GetService(), hostPort(h.GetAddress(), h.GetPort()), h.GetState(),
				sinceWord(h.GetSince()), latencyWord(h.GetLastLatency()), reasonWord(h.GetReason(), h.GetLastError()))
			// A server with several checks: one row each under it.
			for _, c := range h.GetChecks() {
				what := fmt.Sprintf("  check %d %s", c.GetIndex(), c.GetKind())
				if c.GetPort() != 0 {
					what += ":" + strconv.FormatUint(uint64(c.GetPort()), 10)
				}
				fmt.Fprintf(tw, "\t%s\t%s\t%s\t%s\t%s\n", what, c.GetState(),
					sinceWord(c.GetSince()), latencyWord(c.GetLastLatency()), reasonWord(c.GetReason(), c.GetLastError()))
			}
		}
		return tw.Flush()
	}
	return nil
}

func sinceWord(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().Local().Format(time.TimeOnly)
}

func latencyWord(d *durationpb.Duration) string {
	if d == nil {
		return "-"
	}
	return d.AsDuration().Round(time.Microsecond).String()
}

func reasonWord(reason, lastErr string) string {
	if lastErr != "" && lastErr != reason {
		reason += " (last error: " + lastErr + ")"
	}
	return reason
}

// syncDaemonString is one sync daemon as ipvsadm -L --daemon would say it,
// with the parameters of Linux 4.3 when the kernel reports them.
func syncDaemonString(d *shoalv1.SyncDaemon) string {
	s := fmt.Sprintf("%s on %s syncid %d", d.GetState(), d.GetInterface(), d.GetSyncId())
	if d.GetGroup() != "" {
		s += " group " + hostPort(d.GetGroup(), d.GetPort())
	}
	if d.GetTtl() != 0 && d.GetState() == "master" {
		s += fmt.Sprintf(" ttl %d", d.GetTtl())
	}
	if d.GetMaxLen() != 0 {
		s += fmt.Sprintf(" maxlen %d", d.GetMaxLen())
	}
	return s
}

// ipvsTable prints the kernel table the way `ipvsadm -Ln --stats` does.
func ipvsTable(w io.Writer, services []*shoalv1.IpvsService) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "Prot LocalAddress:Port\tScheduler Flags\tConns\tInPkts\tOutPkts\tInBytes\tOutBytes")
	fmt.Fprintln(tw, "  -> RemoteAddress:Port\tForward Weight ActiveConn InActConn\t\t\t\t\t")
	for _, s := range services {
		ep := strings.ToUpper(s.GetProtocol()) + "  " + hostPort(s.GetAddress(), s.GetPort())
		if s.GetFwmark() != 0 {
			ep = fmt.Sprintf("FWM  %d", s.GetFwmark())
		}
		flags := strings.Join(s.GetFlags(), ",")
		if s.GetPersistenceTimeout() > 0 {
			flags = strings.TrimPrefix(flags+fmt.Sprintf(",persistent %d", s.GetPersistenceTimeout()), ",")
		}
		name := ""
		if s.GetName() != "" {
			name = " (" + s.GetName() + ")"
		}
		st := s.GetStats()
		fmt.Fprintf(tw, "%s%s\t%s %s\t%d\t%d\t%d\t%d\t%d\n", ep, name, s.GetScheduler(), flags,
			st.GetConnections(), st.GetPacketsIn(), st.GetPacketsOut(), st.GetBytesIn(), st.GetBytesOut())
		for _, d := range s.GetDestinations() {
			ds := d.GetStats()
			fmt.Fprintf(tw, "  -> %s\t%s %d %d %d\t%d\t%d\t%d\t%d\t%d\n", hostPort(d.GetAddress(), d.GetPort()),
				forwardWord(d.GetForward()), d.GetWeight(), d.GetActiveConnections(), d.GetInactiveConnections(),
				ds.GetConnections(), ds.GetPacketsIn(), ds.GetPacketsOut(), ds.GetBytesIn(), ds.GetBytesOut())
		}
	}
	return tw.Flush()
}

// forwardWord is ipvsadm's spelling of a forwarding method.
func forwardWord(f string) string {
	switch f {
	case "nat":
		return "Masq"
	case "dr":
		return "Route"
	case "tun":
		return "Tunnel"
	}
	return f
}
