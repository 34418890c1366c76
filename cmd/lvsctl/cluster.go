package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func init() { registerCommand(newClusterCmd) }

func newClusterCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Routers of the Raft group"}
	status := &cobra.Command{
		Use:   "status",
		Short: "Every member with what it reports of itself",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			resp, err := shoalv1.NewClusterServiceClient(conn).GetClusterStatus(ctx, &shoalv1.GetClusterStatusRequest{})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return clusterTable(w, resp) })
		},
	}
	remove := &cobra.Command{
		Use:               "remove ID",
		Short:             "Remove a router from the group",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeMembers,
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			resp, err := shoalv1.NewClusterServiceClient(conn).RemoveMember(ctx, &shoalv1.RemoveMemberRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "member %s removed\n", args[0])
				return err
			})
		},
	}
	var syncWait time.Duration
	transfer := &cobra.Command{
		Use:   "transfer [ID]",
		Short: "Hand leadership (and the VIPs) to ID, or to the most up-to-date follower",
		Long: `Hand leadership (and the VIPs) to ID, or to the most up-to-date follower.

With global.connection_sync on, the leader first waits (--sync-wait, default
5s) until the new leader's kernel holds its established connections, so
that they survive the move; when the wait runs out it moves all the same and
says how many were missing.`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: a.completeMembers,
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			req := &shoalv1.TransferLeadershipRequest{}
			if len(args) == 1 {
				req.Id = args[0]
			}
			if cmd.Flags().Changed("sync-wait") {
				req.SyncWait = durationpb.New(syncWait)
			}
			resp, err := shoalv1.NewClusterServiceClient(conn).TransferLeadership(ctx, req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error {
				if _, err := fmt.Fprintf(w, "leader is now %s\n", orDash(resp.GetLeaderId())); err != nil {
					return err
				}
				_, err := fmt.Fprint(w, transferSyncLine(resp.GetSync()))
				return err
			})
		},
	}
	transfer.Flags().DurationVar(&syncWait, "sync-wait", 5*time.Second, "with connection sync on, how long to wait for the new leader to hold the connections (0: do not wait)")
	cmd.AddCommand(status, remove, transfer, newTokenCmd(a), newClusterCertsCmd(a), newRecoverCmd(a))
	return cmd
}

// transferSyncLine says how the new leader's connection table compared
// with the old leader's; nothing without connection sync.
func transferSyncLine(s *shoalv1.TransferSync) string {
	if s == nil {
		return ""
	}
	waited := s.GetWaited().AsDuration().Round(time.Millisecond)
	switch {
	case s.GetComplete():
		return fmt.Sprintf("connections: %s held all %d established connections checked (waited %s)\n", orDash(s.GetTarget()), s.GetChecked(), waited)
	case s.GetError() != "":
		return fmt.Sprintf("connections: not confirmed after %s (%s); %d of %d checked were missing on %s; leadership moved anyway\n",
			waited, s.GetError(), s.GetMissing(), s.GetChecked(), orDash(s.GetTarget()))
	}
	return fmt.Sprintf("connections: %s still lacked %d of %d established connections checked after %s; leadership moved anyway\n",
		orDash(s.GetTarget()), s.GetMissing(), s.GetChecked(), waited)
}

func (a *app) completeMembers(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	conn, err := a.dial()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	ctx, cancel := a.context(cmd)
	defer cancel()
	resp, err := shoalv1.NewClusterServiceClient(conn).GetClusterStatus(ctx, &shoalv1.GetClusterStatusRequest{})
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var ids []string
	for _, m := range resp.GetMembers() {
		ids = append(ids, m.GetId())
	}
	return ids, cobra.ShellCompDirectiveNoFileComp
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func clusterTable(w io.Writer, resp *shoalv1.GetClusterStatusResponse) error {
	fmt.Fprintf(w, "leader %s  term %d  commit index %d  serial %d  VIPs on %s\n\n",
		orDash(resp.GetLeaderId()), resp.GetTerm(), resp.GetCommitIndex(), resp.GetSerial(), orDash(resp.GetVipHolder()))
	printMixedVersions(w, resp.GetMembers())
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tSUFFRAGE\tRAFT\tAPI\tAPPLIED\tSERIAL\tVIPS\tCONTACT\tVERSION\tERROR")
	for _, m := range resp.GetMembers() {
		contact := "-"
		if m.GetLastContact() != nil && m.GetRole() != "leader" && m.GetRole() != "unreachable" {
			contact = m.GetLastContact().AsDuration().Round(time.Millisecond).String()
		}
		vips := ""
		if m.GetHoldsVips() {
			vips = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", m.GetId(), m.GetRole(), m.GetSuffrage(),
			m.GetRaftAddress(), orDash(m.GetApiAddress()), m.GetAppliedIndex(), m.GetAppliedSerial(), orDash(vips), contact, memberVersion(m), m.GetError())
	}
	return tw.Flush()
}
