package main

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/shoal-lb/shoal/migrate"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func init() { registerCommand(newServiceCmd) }

// serviceFlags are the flags of service add and update. apply sets only the
// flags given on vs and names the top-level fields it touched.
type serviceFlags struct {
	vip, iface, protocol, scheduler, forward, sorry string
	port, persistent, persistencePrefix, fwmark     uint32
	inactive, quiesce                               bool
	check, send, expect, checkPath, checkCommand    string
	regex                                           bool
	checkStatus, checkPort, rise, fall              uint32
	interval, timeout, reentry                      time.Duration
}

func (f *serviceFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.vip, "vip", "", "virtual address ADDR[/PREFIX]")
	fs.StringVar(&f.iface, "interface", "", "device that carries the VIP (default: lvsd --interface)")
	fs.Uint32Var(&f.port, "port", 0, "virtual port (0 with --fwmark)")
	fs.StringVar(&f.protocol, "protocol", "", "tcp (default), udp or sctp")
	fs.StringVar(&f.scheduler, "scheduler", "", "rr wrr lc wlc (default) lblc lblcr dh sh sed nq mh fo ovf")
	fs.StringVar(&f.forward, "forward", "", "default forwarding method: nat (default), dr or tun")
	fs.Uint32Var(&f.persistent, "persistent", 0, "persistence timeout in seconds (0: none)")
	fs.Uint32Var(&f.persistencePrefix, "persistence-prefix", 0, "client prefix length for persistence")
	fs.Uint32Var(&f.fwmark, "fwmark", 0, "firewall mark (makes a fwmark service)")
	fs.BoolVar(&f.inactive, "inactive", false, "keep the service configured but not programmed")
	fs.BoolVar(&f.quiesce, "quiesce", false, "keep failed real servers at weight 0 instead of removing them")
	fs.StringVar(&f.sorry, "sorry", "", "sorry server ADDR[:PORT], used while every real server is out")
	fs.StringVar(&f.check, "check", "", "health check: tcp (default), send-expect, http, https, exec or none")
	fs.StringVar(&f.send, "send", "", "send-expect: what to send (\\r \\n \\t escapes)")
	fs.StringVar(&f.expect, "expect", "", "what the reply (or program output) must contain")
	fs.BoolVar(&f.regex, "regex", false, "--expect is a regular expression")
	fs.StringVar(&f.checkPath, "check-path", "", "http(s) check path (default /)")
	fs.Uint32Var(&f.checkStatus, "check-status", 0, "expected HTTP status (0: any 2xx or 3xx)")
	fs.Uint32Var(&f.checkPort, "check-port", 0, "port to check instead of the real server's")
	fs.StringVar(&f.checkCommand, "check-command", "", "exec check: program (an absolute path in the routers' --script-dir) and arguments, run without a shell; %h and %p become address and port")
	fs.DurationVar(&f.interval, "interval", 0, "time between checks (default 2s)")
	fs.DurationVar(&f.timeout, "timeout", 0, "time limit of one check (default 1s)")
	fs.DurationVar(&f.reentry, "reentry", 0, "how long successes must span before a down server returns")
	fs.Uint32Var(&f.rise, "rise", 0, "successes that bring a server up (default 1)")
	fs.Uint32Var(&f.fall, "fall", 0, "failures that take a server down (default 3)")
}

// apply copies the flags the user gave (fs.Changed) onto vs and returns the
// top-level field names of VirtualService it changed, for update_mask.
func (f *serviceFlags) apply(fs *pflag.FlagSet, vs *shoalv1.VirtualService) ([]string, error) {
	var mask []string
	touched := map[string]bool{}
	touch := func(field string) {
		if !touched[field] {
			touched[field] = true
			mask = append(mask, field)
		}
	}
	changed := fs.Changed
	if changed("vip") || changed("interface") {
		if vs.Vip == nil {
			vs.Vip = &shoalv1.Address{}
		}
		if changed("vip") {
			addr, plen, err := parseAddrPrefix(f.vip)
			if err != nil {
				return nil, fmt.Errorf("--vip: %w", err)
			}
			vs.Vip.Address, vs.Vip.PrefixLength = addr, plen
		}
		if changed("interface") {
			vs.Vip.Interface = f.iface
		}
		touch("vip")
	}
	set := func(flag, field string, do func()) {
		if changed(flag) {
			do()
			touch(field)
		}
	}
	set("port", "port", func() { vs.Port = f.port })
	set("protocol", "protocol", func() { vs.Protocol = f.protocol })
	set("scheduler", "scheduler", func() { vs.Scheduler = f.scheduler })
	set("forward", "forward", func() { vs.Forward = f.forward })
	set("persistent", "persistence_timeout", func() { vs.PersistenceTimeout = f.persistent })
	set("persistence-prefix", "persistence_prefix", func() { vs.PersistencePrefix = f.persistencePrefix })
	set("fwmark", "fwmark", func() { vs.Fwmark = f.fwmark })
	set("inactive", "active", func() { vs.Active = proto.Bool(!f.inactive) })
	set("quiesce", "quiesce", func() { vs.Quiesce = f.quiesce })
	if changed("sorry") {
		if f.sorry == "" {
			vs.SorryServer = nil
		} else {
			addr, port, err := parseAddrPort(f.sorry)
			if err != nil {
				return nil, fmt.Errorf("--sorry: %w", err)
			}
			vs.SorryServer = &shoalv1.RealServer{Address: addr, Port: port}
		}
		touch("sorry_server")
	}
	hcFlags := []string{"check", "send", "expect", "regex", "check-path", "check-status", "check-port",
		"check-command", "interval", "timeout", "reentry", "rise", "fall"}
	for _, name := range hcFlags {
		if !changed(name) {
			continue
		}
		if vs.HealthCheck == nil {
			vs.HealthCheck = &shoalv1.HealthCheck{}
		}
		hc := vs.HealthCheck
		switch name {
		case "check":
			hc.Kind = f.check
		case "send":
			hc.Send = f.send
		case "expect":
			hc.Expect = f.expect
		case "regex":
			hc.Regex = f.regex
		case "check-path":
			hc.HttpPath = f.checkPath
		case "check-status":
			hc.HttpStatus = f.checkStatus
		case "check-port":
			hc.Port = f.checkPort
		case "check-command":
			// A line of plain words runs as argv; one that needs a shell
			// stays one shell string, as Piranha's send_program was, which
			// routers refuse unless lvsd --allow-shell-scripts.
			argv, err := migrate.SplitCommand(f.checkCommand)
			switch {
			case f.checkCommand == "":
				hc.Command, hc.Shell = nil, false
			case err == nil:
				hc.Command, hc.Shell = argv, false
			default:
				hc.Command, hc.Shell = []string{f.checkCommand}, true
			}
		case "interval":
			hc.Interval = durationpb.New(f.interval)
		case "timeout":
			hc.Timeout = durationpb.New(f.timeout)
		case "reentry":
			hc.Reentry = durationpb.New(f.reentry)
		case "rise":
			hc.Rise = f.rise
		case "fall":
			hc.Fall = f.fall
		}
		touch("health_check")
	}
	return mask, nil
}

// parseAddrPrefix reads ADDR or ADDR/PREFIX; prefix 0 means the default.
func parseAddrPrefix(s string) (string, uint32, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return "", 0, fmt.Errorf("%q: want ADDR[/PREFIX]", s)
		}
		return p.Addr().String(), uint32(p.Bits()), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", 0, fmt.Errorf("%q: want ADDR[/PREFIX]", s)
	}
	return a.String(), 0, nil
}

// parseAddrPort reads ADDR, ADDR:PORT or [V6ADDR]:PORT; port 0 means the
// service's port.
func parseAddrPort(s string) (string, uint32, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().String(), uint32(ap.Port()), nil
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return a.String(), 0, nil
	}
	return "", 0, fmt.Errorf("%q: want ADDR[:PORT] ([ADDR]:PORT for IPv6)", s)
}

func newServiceCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "service", Aliases: []string{"services", "svc"}, Short: "Virtual services"}
	var stale bool
	var expect uint64

	var addFlags serviceFlags
	add := &cobra.Command{
		Use:   "add NAME --vip ADDR[/PREFIX] --port N [flags]",
		Short: "Create a virtual service",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vs := &shoalv1.VirtualService{Name: args[0]}
			if _, err := addFlags.apply(cmd.Flags(), vs); err != nil {
				return err
			}
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			resp, err := shoalv1.NewLoadBalancerServiceClient(conn).CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: vs, ExpectedSerial: expect})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error {
				fmt.Fprintf(w, "service %s created (serial %d)\n", args[0], resp.GetSerial())
				return nil
			})
		},
	}
	addFlags.register(add.Flags())
	_ = add.RegisterFlagCompletionFunc("check", fixedCompletion("tcp", "send-expect", "http", "https", "exec", "none"))
	_ = add.RegisterFlagCompletionFunc("forward", fixedCompletion("nat", "dr", "tun"))
	_ = add.RegisterFlagCompletionFunc("protocol", fixedCompletion("tcp", "udp", "sctp"))
	_ = add.RegisterFlagCompletionFunc("scheduler", fixedCompletion("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf"))

	var updFlags serviceFlags
	update := &cobra.Command{
		Use:   "update NAME [flags]",
		Short: "Change the fields of a virtual service given as flags",
		Long: "Only the flags given are changed. Health-check flags change single check\n" +
			"settings: the current check is read first and sent back with them applied.",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeServices,
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			lb := shoalv1.NewLoadBalancerServiceClient(conn)
			cur, err := lb.GetVirtualService(ctx, &shoalv1.GetVirtualServiceRequest{Name: args[0]})
			if err != nil {
				return err
			}
			vs := cur.GetService()
			mask, err := updFlags.apply(cmd.Flags(), vs)
			if err != nil {
				return err
			}
			if len(mask) == 0 {
				return fmt.Errorf("nothing to change: give at least one flag")
			}
			resp, err := lb.UpdateVirtualService(ctx, &shoalv1.UpdateVirtualServiceRequest{
				Service: vs, UpdateMask: &fieldmaskpb.FieldMask{Paths: mask}, ExpectedSerial: expect,
			})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error {
				fmt.Fprintf(w, "service %s updated: %s (serial %d)\n", args[0], strings.Join(mask, ", "), resp.GetSerial())
				return nil
			})
		},
	}
	updFlags.register(update.Flags())

	get := &cobra.Command{
		Use:               "get NAME",
		Short:             "Show one virtual service",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeServices,
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			resp, err := shoalv1.NewLoadBalancerServiceClient(conn).GetVirtualService(ctx, &shoalv1.GetVirtualServiceRequest{Name: args[0], Consistency: consistency(stale)})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return serviceTable(w, resp.GetService()) })
		},
	}
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List virtual services",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			resp, err := shoalv1.NewLoadBalancerServiceClient(conn).ListVirtualServices(ctx, &shoalv1.ListVirtualServicesRequest{Consistency: consistency(stale)})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error { return servicesTable(w, resp.GetServices(), resp.GetSerial()) })
		},
	}
	del := &cobra.Command{
		Use:               "delete NAME",
		Aliases:           []string{"rm", "remove"},
		Short:             "Delete a virtual service",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeServices,
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			resp, err := shoalv1.NewLoadBalancerServiceClient(conn).DeleteVirtualService(ctx, &shoalv1.DeleteVirtualServiceRequest{Name: args[0], ExpectedSerial: expect})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error {
				fmt.Fprintf(w, "service %s deleted (serial %d)\n", args[0], resp.GetSerial())
				return nil
			})
		},
	}
	for _, c := range []*cobra.Command{add, update, del} {
		c.Flags().Uint64Var(&expect, "expect-serial", 0, "fail unless the cluster's serial is exactly this")
	}
	for _, c := range []*cobra.Command{get, list} {
		c.Flags().BoolVar(&stale, "stale", false, "answer from the node's local state, without asking the leader")
	}
	cmd.AddCommand(add, update, get, list, del)
	return cmd
}

func fixedCompletion(values ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeServices offers the names of the services of the cluster.
func (a *app) completeServices(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	conn, err := a.dial()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	ctx, cancel := a.context(cmd)
	defer cancel()
	resp, err := shoalv1.NewLoadBalancerServiceClient(conn).ListVirtualServices(ctx, &shoalv1.ListVirtualServicesRequest{Consistency: shoalv1.ReadConsistency_READ_CONSISTENCY_STALE})
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var names []string
	for _, vs := range resp.GetServices() {
		names = append(names, vs.GetName())
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

func consistency(stale bool) shoalv1.ReadConsistency {
	if stale {
		return shoalv1.ReadConsistency_READ_CONSISTENCY_STALE
	}
	return shoalv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE
}

// endpoint prints a virtual service as ipvsadm does: VIP:PORT or FWM N.
func endpoint(vs *shoalv1.VirtualService) string {
	if vs.GetFwmark() != 0 {
		return "fwmark " + strconv.FormatUint(uint64(vs.GetFwmark()), 10)
	}
	return hostPort(vs.GetVip().GetAddress(), vs.GetPort())
}

func hostPort(addr string, port uint32) string {
	if a, err := netip.ParseAddr(addr); err == nil && a.Is6() {
		addr = "[" + addr + "]"
	}
	return addr + ":" + strconv.FormatUint(uint64(port), 10)
}

func activeWord(b *bool) string {
	if b == nil || *b {
		return "yes"
	}
	return "no"
}

func weightOf(rs *shoalv1.RealServer) uint32 {
	if rs.Weight == nil {
		return 1
	}
	return rs.GetWeight()
}

func servicesTable(w io.Writer, services []*shoalv1.VirtualService, serial uint64) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tENDPOINT\tPROTO\tSCHED\tFORWARD\tSERVERS\tCHECK\tACTIVE")
	for _, vs := range services {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", vs.GetName(), endpoint(vs), vs.GetProtocol(),
			vs.GetScheduler(), vs.GetForward(), len(vs.GetRealServers()), vs.GetHealthCheck().GetKind(), activeWord(vs.Active))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "serial %d\n", serial)
	return err
}

func serviceTable(w io.Writer, vs *shoalv1.VirtualService) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("name", vs.GetName())
	row("endpoint", endpoint(vs)+" "+vs.GetProtocol())
	if vip := vs.GetVip(); vip != nil {
		row("vip", fmt.Sprintf("%s/%d %s", vip.GetAddress(), vip.GetPrefixLength(), vip.GetInterface()))
	}
	row("scheduler", vs.GetScheduler())
	row("forward", vs.GetForward())
	if vs.GetPersistenceTimeout() > 0 {
		row("persistent", fmt.Sprintf("%ds prefix /%d", vs.GetPersistenceTimeout(), vs.GetPersistencePrefix()))
	}
	row("active", activeWord(vs.Active))
	row("quiesce", strconv.FormatBool(vs.GetQuiesce()))
	if s := vs.GetSorryServer(); s != nil {
		row("sorry server", hostPort(s.GetAddress(), s.GetPort()))
	}
	if hc := vs.GetHealthCheck(); hc != nil {
		row("check", checkSummary(hc))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REAL SERVER\tWEIGHT\tFORWARD\tACTIVE\tUPPER\tLOWER\tCHECKS\tNAME")
	for _, rs := range vs.GetRealServers() {
		fwd := rs.GetForward()
		if fwd == "" {
			fwd = vs.GetForward()
		}
		port := rs.GetPort()
		if port == 0 {
			port = vs.GetPort()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", hostPort(rs.GetAddress(), port), weightOf(rs), fwd, activeWord(rs.Active),
			threshold(rs.GetUpperThreshold()), threshold(rs.GetLowerThreshold()), ownChecks(rs), rs.GetName())
	}
	return tw.Flush()
}

// threshold prints a connection threshold; 0 (none, or the kernel's
// default lower one) as "-".
func threshold(n uint32) string {
	if n == 0 {
		return "-"
	}
	return strconv.FormatUint(uint64(n), 10)
}

// ownChecks names a real server's own checks by kind and port, or says
// that the service's check applies.
func ownChecks(rs *shoalv1.RealServer) string {
	if len(rs.GetHealthChecks()) == 0 {
		return "service's"
	}
	var parts []string
	for _, hc := range rs.GetHealthChecks() {
		p := hc.GetKind()
		if hc.GetPort() != 0 {
			p += ":" + strconv.FormatUint(uint64(hc.GetPort()), 10)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ",")
}

func checkSummary(hc *shoalv1.HealthCheck) string {
	parts := []string{hc.GetKind()}
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("send", strconv.Quote(hc.GetSend()))
	if hc.GetSend() == "" {
		parts = parts[:len(parts)-1]
	}
	if hc.GetExpect() != "" {
		add("expect", strconv.Quote(hc.GetExpect()))
	}
	add("path", hc.GetHttpPath())
	if hc.GetHttpStatus() != 0 {
		add("status", strconv.FormatUint(uint64(hc.GetHttpStatus()), 10))
	}
	if len(hc.GetCommand()) > 0 {
		add("command", strconv.Quote(strings.Join(hc.GetCommand(), " ")))
	}
	if hc.GetInterval() != nil {
		add("interval", hc.GetInterval().AsDuration().String())
	}
	if hc.GetTimeout() != nil {
		add("timeout", hc.GetTimeout().AsDuration().String())
	}
	add("rise", strconv.FormatUint(uint64(hc.GetRise()), 10))
	add("fall", strconv.FormatUint(uint64(hc.GetFall()), 10))
	return strings.Join(parts, " ")
}
