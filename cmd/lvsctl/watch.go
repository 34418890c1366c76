package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func init() { registerCommand(newWatchCmd) }

func newWatchCmd(a *app) *cobra.Command {
	var health, initial bool
	cmd := &cobra.Command{
		Use:   "watch [--health]",
		Short: "Stream committed configuration changes, or with --health this node's health transitions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			// A watch runs until interrupted; --request-timeout does not apply.
			ctx := cmd.Context()
			if health {
				stream, err := shoalv1.NewNodeServiceClient(conn).WatchHealth(ctx, &shoalv1.WatchHealthRequest{})
				if err != nil {
					return err
				}
				for {
					msg, err := stream.Recv()
					if errors.Is(err, io.EOF) || ctx.Err() != nil {
						return nil
					}
					if err != nil {
						return err
					}
					h := msg.GetHealth()
					if err := a.printLine(msg, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "%s  %s  %s %s  %s  %s\n", h.GetSince().AsTime().Local().Format(time.TimeOnly),
							h.GetNode(), h.GetService(), hostPort(h.GetAddress(), h.GetPort()), h.GetState(), h.GetReason())
						return err
					}); err != nil {
						return err
					}
				}
			}
			stream, err := shoalv1.NewConfigServiceClient(conn).Watch(ctx, &shoalv1.WatchRequest{Initial: initial})
			if err != nil {
				return err
			}
			for {
				msg, err := stream.Recv()
				if errors.Is(err, io.EOF) || ctx.Err() != nil {
					return nil
				}
				if err != nil {
					return err
				}
				if err := a.printLine(msg, func(w io.Writer) error {
					if msg.GetConfig() != nil {
						fmt.Fprintf(w, "serial %d: current configuration, %d services\n", msg.GetSerial(), len(msg.GetConfig().GetServices()))
						return nil
					}
					fmt.Fprintf(w, "serial %d\n", msg.GetSerial())
					printChanges(w, msg.GetChanges())
					return nil
				}); err != nil {
					return err
				}
			}
		},
	}
	cmd.Flags().BoolVar(&health, "health", false, "stream this node's health-check transitions instead")
	cmd.Flags().BoolVar(&initial, "initial", false, "start with the current configuration")
	return cmd
}
