package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func init() { registerCommand(newRealServerCmd) }

type realServerFlags struct {
	weight, upper, lower uint32
	forward, name        string
	inactive             bool
}

func (f *realServerFlags) register(fs *pflag.FlagSet) {
	fs.Uint32Var(&f.weight, "weight", 1, "weight 0..65535")
	fs.StringVar(&f.forward, "forward", "", "forwarding method: nat, dr or tun (default: the service's)")
	fs.BoolVar(&f.inactive, "inactive", false, "keep the server configured but send it no traffic")
	fs.StringVar(&f.name, "name", "", "free label")
	fs.Uint32Var(&f.upper, "upper-threshold", 0, "connections at which the server takes no new ones (ipvsadm -x); 0 = no limit")
	fs.Uint32Var(&f.lower, "lower-threshold", 0, "connections below which it takes new ones again (ipvsadm -y); 0 = 3/4 of the upper")
}

// apply sets the flags given on rs and names the fields for update_mask.
func (f *realServerFlags) apply(fs *pflag.FlagSet, rs *shoalv1.RealServer) []string {
	var mask []string
	if fs.Changed("weight") {
		rs.Weight = proto.Uint32(f.weight)
		mask = append(mask, "weight")
	}
	if fs.Changed("forward") {
		rs.Forward = f.forward
		mask = append(mask, "forward")
	}
	if fs.Changed("inactive") {
		rs.Active = proto.Bool(!f.inactive)
		mask = append(mask, "active")
	}
	if fs.Changed("name") {
		rs.Name = f.name
		mask = append(mask, "name")
	}
	if fs.Changed("upper-threshold") {
		rs.UpperThreshold = f.upper
		mask = append(mask, "upper_threshold")
	}
	if fs.Changed("lower-threshold") {
		rs.LowerThreshold = f.lower
		mask = append(mask, "lower_threshold")
	}
	return mask
}

func newRealServerCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "server", Aliases: []string{"servers", "rs"}, Short: "Real servers of a virtual service"}
	var expect uint64
	printService := func(resp interface {
		proto.Message
		GetService() *shoalv1.VirtualService
		GetSerial() uint64
	}, what string) error {
		return a.print(resp, func(w io.Writer) error {
			fmt.Fprintf(w, "%s (serial %d)\n\n", what, resp.GetSerial())
			return serviceTable(w, resp.GetService())
		})
	}

	var addFlags realServerFlags
	add := &cobra.Command{
		Use:               "add SERVICE ADDR[:PORT] [flags]",
		Short:             "Add a real server to a virtual service",
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: a.completeServices,
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, port, err := parseAddrPort(args[1])
			if err != nil {
				return err
			}
			rs := &shoalv1.RealServer{Address: addr, Port: port}
			addFlags.apply(cmd.Flags(), rs)
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			resp, err := shoalv1.NewLoadBalancerServiceClient(conn).AddRealServer(ctx, &shoalv1.AddRealServerRequest{Service: args[0], RealServer: rs, ExpectedSerial: expect})
			if err != nil {
				return err
			}
			return printService(resp, fmt.Sprintf("real server %s added to %s", args[1], args[0]))
		},
	}
	addFlags.register(add.Flags())

	var updFlags realServerFlags
	update := &cobra.Command{
		Use:               "update SERVICE ADDR[:PORT] [flags]",
		Short:             "Change the given fields of a real server",
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: a.completeServices,
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, port, err := parseAddrPort(args[1])
			if err != nil {
				return err
			}
			rs := &shoalv1.RealServer{Address: addr, Port: port}
			mask := updFlags.apply(cmd.Flags(), rs)
			if len(mask) == 0 {
				return fmt.Errorf("nothing to change: give --weight, --forward, --inactive, --name, --upper-threshold or --lower-threshold")
			}
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			resp, err := shoalv1.NewLoadBalancerServiceClient(conn).UpdateRealServer(ctx, &shoalv1.UpdateRealServerRequest{
				Service: args[0], RealServer: rs, UpdateMask: &fieldmaskpb.FieldMask{Paths: mask}, ExpectedSerial: expect,
			})
			if err != nil {
				return err
			}
			return printService(resp, fmt.Sprintf("real server %s of %s updated: %s", args[1], args[0], strings.Join(mask, ", ")))
		},
	}
	updFlags.register(update.Flags())

	remove := &cobra.Command{
		Use:               "remove SERVICE ADDR[:PORT]",
		Aliases:           []string{"rm", "delete"},
		Short:             "Remove a real server from a virtual service",
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: a.completeServices,
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, port, err := parseAddrPort(args[1])
			if err != nil {
				return err
			}
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			resp, err := shoalv1.NewLoadBalancerServiceClient(conn).RemoveRealServer(ctx, &shoalv1.RemoveRealServerRequest{Service: args[0], Address: addr, Port: port, ExpectedSerial: expect})
			if err != nil {
				return err
			}
			return printService(resp, fmt.Sprintf("real server %s removed from %s", args[1], args[0]))
		},
	}
	for _, c := range []*cobra.Command{add, update, remove} {
		c.Flags().Uint64Var(&expect, "expect-serial", 0, "fail unless the cluster's serial is exactly this")
		_ = c.RegisterFlagCompletionFunc("forward", fixedCompletion("nat", "dr", "tun"))
	}
	cmd.AddCommand(add, update, remove)
	return cmd
}
