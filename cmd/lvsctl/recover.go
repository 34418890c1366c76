package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/shoal-lb/shoal/raftfsm"
)

// newRecoverCmd is `lvsctl cluster recover`: it works on a stopped lvsd's
// data directory, not through the API, since a cluster that lost its
// majority cannot commit anything, this change least of all.
func newRecoverCmd(a *app) *cobra.Command {
	var (
		dataDir, id string
		force       bool
	)
	host, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "recover --force-new-cluster [--data-dir DIR] [--id ID]",
		Short: "Make a stopped router the only member of its cluster, after a majority is gone for good",
		Long: `When a majority of the routers is gone for good, the rest can elect no
leader: nobody holds the VIPs and nothing can change. On ONE survivor:

    systemctl stop lvsd
    lvsctl cluster recover --force-new-cluster
    systemctl start lvsd

It rewrites the survivor's Raft state so that it is the only voter, keeping
its configuration and history; it then leads, holds the VIPs and takes
changes. The old members must not come back with their data directories:
move them away, then join each again (lvsd --join SURVIVOR_API
--token-file FILE with a token from lvsctl cluster token).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !force {
				return errors.New("recover rewrites the cluster's membership: say --force-new-cluster")
			}
			// Raft writes a snapshot of the state, which holds the CA's
			// key: nobody but root reads what this writes.
			syscall.Umask(0o077)
			log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			addr, err := raftfsm.ForceNewCluster(dataDir, id, log)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "%s (raft %s) is now the only member of its cluster; start lvsd, then move the other routers' data directories away and join them again\n", id, addr)
			return err
		},
	}
	cmd.Flags().BoolVar(&force, "force-new-cluster", false, "confirm: make this router the only member")
	cmd.Flags().StringVar(&dataDir, "data-dir", "/var/lib/shoal", "the stopped lvsd's --data-dir")
	cmd.Flags().StringVar(&id, "id", host, "the stopped lvsd's --id")
	return cmd
}
