package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/shoal-lb/shoal/migrate"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func init() {
	registerCommand(newImportCmd)
	registerCommand(newExportCmd)
	registerCommand(newConvertCmd)
}

func formatFlag(cmd *cobra.Command, p *string, def, usage string) {
	cmd.Flags().StringVar(p, "format", def, usage)
	_ = cmd.RegisterFlagCompletionFunc("format", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"lvs.cf", "keepalived", "ipvsadm"}, cobra.ShellCompDirectiveNoFileComp
	})
}

// importFile reads FILE ("-" for stdin) and converts it, printing the
// report (what was not imported and why) on stderr.
func (a *app) importFile(path, format string, lenient bool) (*migrate.Result, error) {
	o := migrate.Options{Lenient: lenient}
	if format != "" {
		f, err := migrate.ParseFormat(format)
		if err != nil {
			return nil, err
		}
		o.Format = f
	}
	var r *migrate.Result
	var err error
	if path == "-" {
		var data []byte
		if data, err = io.ReadAll(os.Stdin); err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		o.Filename = "stdin"
		r, err = migrate.Import(data, o)
	} else {
		r, err = migrate.ImportFile(path, o)
	}
	var es migrate.Errors
	if errors.As(err, &es) {
		for _, e := range es {
			fmt.Fprintln(a.stderr, e.Error())
		}
		hint := ""
		if !lenient {
			hint = " (--lenient skips unknown keys and unreadable lines)"
		}
		return nil, fmt.Errorf("import %s: %d problem(s), nothing applied%s", path, len(es), hint)
	}
	if err != nil {
		return nil, err
	}
	for _, n := range r.Warnings {
		fmt.Fprintln(a.stderr, "warning:", n)
	}
	for _, n := range r.Notes {
		fmt.Fprintln(a.stderr, n)
	}
	return r, nil
}

func newImportCmd(a *app) *cobra.Command {
	var format string
	var dryRun, lenient bool
	var expect uint64
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Replace the cluster's services with a Piranha lvs.cf, keepalived.conf or ipvsadm-save file",
		Long: `Import converts FILE ("-" for stdin) and applies it in one ApplyConfig, all or
nothing: the file's virtual services become the cluster's whole service list,
as lvs.cf was a Piranha router's whole configuration. Global settings the file
sets (nat_router, tcp_timeout, monitor_links, ...) replace the cluster's; those
it does not describe (GARP tuning, anything it leaves out) are kept.

Every setting that is not imported is listed on stderr with what replaces it.
Unknown keys and unreadable lines are errors naming the line; --lenient turns
them into warnings. The import is conditional on the serial it was merged
against, so a concurrent change makes it fail instead of being overwritten.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := a.importFile(args[0], format, lenient)
			if err != nil {
				return err
			}
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			client := shoalv1.NewConfigServiceClient(conn)
			cur, err := client.GetConfig(ctx, &shoalv1.GetConfigRequest{})
			if err != nil {
				return fmt.Errorf("read the cluster's config: %w", err)
			}
			serial := cur.GetConfig().GetSerial()
			if expect != 0 && expect != serial {
				return fmt.Errorf("the cluster's serial is %d, not %d: nothing applied", serial, expect)
			}
			resp, err := client.ApplyConfig(ctx, &shoalv1.ApplyConfigRequest{
				Config:         r.Merge(cur.GetConfig()),
				DryRun:         dryRun,
				ExpectedSerial: serial,
				// The report below counts the resulting configuration and a
				// dry run prints it, so ask for it however large.
				Full: true,
			})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error {
				printChanges(w, resp.GetChanges())
				n, rs := 0, 0
				for _, s := range resp.GetConfig().GetServices() {
					n++
					rs += len(s.GetRealServers())
				}
				switch {
				case dryRun:
					b, err := toYAML(resp.GetConfig())
					if err != nil {
						return err
					}
					fmt.Fprintf(w, "---\n%s", b)
					fmt.Fprintf(w, "dry run: nothing committed (serial %d); %d services, %d real servers from %s (%s)\n", resp.GetSerial(), n, rs, args[0], r.Format)
				case len(resp.GetChanges()) == 0:
					fmt.Fprintf(w, "no changes (serial %d)\n", resp.GetSerial())
				default:
					fmt.Fprintf(w, "imported %d services, %d real servers from %s (%s): serial %d\n", n, rs, args[0], r.Format, resp.GetSerial())
				}
				return nil
			})
		},
	}
	formatFlag(cmd, &format, "", "format of FILE: lvs.cf, keepalived or ipvsadm (default: detected)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the diff and the resulting configuration; change nothing")
	cmd.Flags().Uint64Var(&expect, "expect-serial", 0, "fail unless the cluster's serial is exactly this")
	cmd.Flags().BoolVar(&lenient, "lenient", false, "skip unknown keys and unreadable lines with a warning instead of failing")
	return cmd
}

func newExportCmd(a *app) *cobra.Command {
	var format, file string
	var stale bool
	cmd := &cobra.Command{
		Use:   "export --format lvs.cf|keepalived|ipvsadm",
		Short: "Print the cluster's configuration as lvs.cf, keepalived.conf or ipvsadm-save rules",
		Long: `Export writes the committed configuration in another tool's format. What the
format cannot express is listed at the top of the file as comments (lvs.cf,
keepalived) and on stderr. Importing an export gives back the same services.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := migrate.ParseFormat(format)
			if err != nil {
				return err
			}
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			resp, err := shoalv1.NewConfigServiceClient(conn).GetConfig(ctx, &shoalv1.GetConfigRequest{Consistency: consistency(stale)})
			if err != nil {
				return err
			}
			return a.writeExport(resp.GetConfig(), f, file)
		},
	}
	formatFlag(cmd, &format, "lvs.cf", "lvs.cf, keepalived or ipvsadm")
	cmd.Flags().StringVarP(&file, "file", "f", "-", "write to this file instead of stdout")
	cmd.Flags().BoolVar(&stale, "stale", false, "answer from the node's local state, without asking the leader")
	return cmd
}

func (a *app) writeExport(c *shoalv1.Config, f migrate.Format, file string) error {
	out, notes, err := migrate.Export(c, f)
	if err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(a.stderr, "not exported:", n)
	}
	if file == "-" || file == "" {
		_, err = a.stdout.Write(out)
		return err
	}
	if err := os.WriteFile(file, out, 0o644); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

func newConvertCmd(a *app) *cobra.Command {
	var from, to, file string
	var lenient bool
	cmd := &cobra.Command{
		Use:   "convert FILE --to yaml|lvs.cf|keepalived|ipvsadm",
		Short: "Convert a file between formats without a cluster (yaml: for lvsctl config apply -f)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := a.importFile(args[0], from, lenient)
			if err != nil {
				return err
			}
			if strings.EqualFold(to, "yaml") || strings.EqualFold(to, "json") {
				saved := a.output
				a.output = strings.ToLower(to)
				defer func() { a.output = saved }()
				return a.print(r.Config, nil)
			}
			f, err := migrate.ParseFormat(to)
			if err != nil {
				return err
			}
			return a.writeExport(r.Config, f, file)
		},
	}
	formatFlag(cmd, &from, "", "format of FILE: lvs.cf, keepalived or ipvsadm (default: detected)")
	cmd.Flags().StringVar(&to, "to", "yaml", "yaml, json, lvs.cf, keepalived or ipvsadm")
	cmd.Flags().StringVarP(&file, "file", "f", "-", "write to this file instead of stdout")
	cmd.Flags().BoolVar(&lenient, "lenient", false, "skip unknown keys and unreadable lines with a warning instead of failing")
	return cmd
}
