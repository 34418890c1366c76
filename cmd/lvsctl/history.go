package main

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func init() {
	registerCommand(newHistoryCmd)
	// `config rollback` belongs under `config`, which config.go builds; it
	// lives here, with the history it restores from. Go initialises a
	// package's files in name order, so config.go has registered its
	// factory by now (TestHistoryCommandTree fails if that ever changes).
	for i, f := range commandFactories {
		commandFactories[i] = func(a *app) *cobra.Command {
			cmd := f(a)
			if cmd.Name() == "config" {
				cmd.AddCommand(newConfigRollbackCmd(a))
			}
			return cmd
		}
	}
}

func newHistoryCmd(a *app) *cobra.Command {
	var limit uint32
	var stale bool
	cmd := &cobra.Command{
		Use:   "history [--limit N]",
		Short: "The latest committed configuration changes, newest first: who made each, when and how",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			resp, err := shoalv1.NewConfigServiceClient(conn).ListHistory(ctx, &shoalv1.ListHistoryRequest{Limit: limit, Consistency: consistency(stale)})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return historyTable(w, resp, time.Local) })
		},
	}
	cmd.Flags().Uint32Var(&limit, "limit", 0, "show at most N changes (0: all the cluster keeps)")
	cmd.PersistentFlags().BoolVar(&stale, "stale", false, "answer from the node's local state, without asking the leader")

	show := &cobra.Command{
		Use:   "show SERIAL",
		Short: "One change: who made it, when, and its diff (-o yaml adds the touched parts before and after)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			serial, err := parseSerial(args[0])
			if err != nil {
				return err
			}
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			resp, err := shoalv1.NewConfigServiceClient(conn).GetHistoryEntry(ctx, &shoalv1.GetHistoryEntryRequest{Serial: serial, Consistency: consistency(stale)})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error {
				fmt.Fprintln(w, historyHeader(resp.GetEntry(), time.Local))
				printChanges(w, resp.GetEntry().GetChanges())
				return nil
			})
		},
	}
	cmd.AddCommand(show)
	return cmd
}

func newConfigRollbackCmd(a *app) *cobra.Command {
	var dryRun, full bool
	var expect uint64
	cmd := &cobra.Command{
		Use:   "rollback SERIAL",
		Short: "Restore the configuration as it was at SERIAL, as one new change, and print the diff",
		Long: "Restore the configuration as it was at SERIAL (see `lvsctl history`) as one new change, and print the diff.\n" +
			"The cluster rebuilds it from the history it keeps, which reaches back a limited way.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			serial, err := parseSerial(args[0])
			if err != nil {
				return err
			}
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			resp, err := shoalv1.NewConfigServiceClient(conn).RollbackConfig(ctx, &shoalv1.RollbackConfigRequest{Serial: serial, ExpectedSerial: expect, DryRun: dryRun, Full: full})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error {
				rollbackSummary(w, resp, serial, dryRun)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the diff without committing")
	cmd.Flags().Uint64Var(&expect, "expect-serial", 0, "fail unless the cluster's serial is exactly this")
	cmd.Flags().BoolVar(&full, "full", false, "print every change and return the resulting configuration however large (without it, more than 1,000 changes or a configuration over 1 MiB is summarised)")
	return cmd
}

// parseSerial reads a serial argument; 0 is no change's serial.
func parseSerial(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("serial %q: want a positive number, as lvsctl history lists them", s)
	}
	return n, nil
}

// historyTable lists the entries as they come (newest first) and says how
// far back a rollback can reach.
func historyTable(w io.Writer, resp *shoalv1.ListHistoryResponse, loc *time.Location) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERIAL\tTIME\tACTOR\tROLE\tMETHOD\tCHANGES")
	for _, e := range resp.GetEntries() {
		changes := strconv.Itoa(len(e.GetChanges()) + int(e.GetChangesOmitted()))
		if e.GetRolledBackTo() != 0 {
			changes += fmt.Sprintf(", rollback to %d", e.GetRolledBackTo())
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.GetSerial(), historyTime(e.GetTime(), loc),
			dash(e.GetActor()), dash(e.GetRole()), dash(e.GetMethod()), changes)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "serial %d; a rollback can reach back to serial %d\n", resp.GetSerial(), resp.GetOldestSerial())
	return err
}

// historyHeader is the first line of `history show`.
func historyHeader(e *shoalv1.HistoryEntry, loc *time.Location) string {
	s := fmt.Sprintf("serial %d  %s  %s (%s)  %s", e.GetSerial(), historyTime(e.GetTime(), loc), dash(e.GetActor()), dash(e.GetRole()), dash(e.GetMethod()))
	if e.GetRolledBackTo() != 0 {
		s += fmt.Sprintf("  rollback to %d", e.GetRolledBackTo())
	}
	return s
}

// historyTime is the local time to the second; changes committed before
// the API recorded times have none.
func historyTime(ts *timestamppb.Timestamp, loc *time.Location) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().In(loc).Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// rollbackSummary prints what `config apply` prints for a change: the diff
// (or, when the answer left it out, its summary), then what became of it.
func rollbackSummary(w io.Writer, resp *shoalv1.RollbackConfigResponse, target uint64, dryRun bool) {
	printChanges(w, resp.GetChanges())
	if resp.GetChangesOmitted() {
		fmt.Fprintf(w, "%s (the diff is left out; --full prints it)\n", summaryLine(resp.GetSummary()))
	}
	switch {
	case dryRun:
		fmt.Fprintf(w, "dry run: nothing committed (serial %d)\n", resp.GetSerial())
	case len(resp.GetChanges()) == 0 && !resp.GetChangesOmitted():
		fmt.Fprintf(w, "no changes: the configuration is as it was at serial %d (serial %d)\n", target, resp.GetSerial())
	default:
		fmt.Fprintf(w, "rolled back to serial %d: serial %d\n", target, resp.GetSerial())
	}
}
