package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/shoal-lb/shoal/pki"
)

func init() { registerCommand(newConsoleCmd) }

func newConsoleCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "console", Short: "The web console (lvsd --web-addr)"}
	var (
		role, name string
		ttl        time.Duration
	)
	token := &cobra.Command{
		Use:   "token --role viewer|operator|admin [--name NAME] [--ttl 1h]",
		Short: "Issue a short-lived login token for the web console (admin)",
		Long: "Issues a client certificate of the cluster CA with a short lifetime and prints it, with its key, as one token to paste\n" +
			"into the console's login page. The certificate is recorded like any other: `lvsctl certs list` shows it and\n" +
			"`lvsctl certs revoke SERIAL` ends every session made with it at once. The token is a secret until it expires.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := pki.ParseRole(role)
			if err != nil {
				return fmt.Errorf("--role: %w", err)
			}
			if err := pki.CheckName(name); err != nil {
				return fmt.Errorf("--name: %w", err)
			}
			if ttl <= 0 || ttl > pki.MaxConsoleTokenLifetime {
				return fmt.Errorf("--ttl %s: want more than 0 and at most %s", ttl, pki.MaxConsoleTokenLifetime)
			}
			key, cert, resp, err := a.issueCertificate(cmd, r, name, ttl)
			if err != nil {
				return err
			}
			tok, err := pki.EncodeConsoleToken(cert, key)
			if err != nil {
				return err
			}
			info := resp.GetInfo()
			out, err := structpb.NewStruct(map[string]any{
				"token": tok, "name": name, "role": string(r), "serial_number": info.GetSerialNumber(),
				"expires": info.GetNotAfter().AsTime().UTC().Format(time.RFC3339),
			})
			if err != nil {
				return err
			}
			return a.print(out, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "%s\n\nconsole token for %s (%s), certificate %s, expires %s.\n"+
					"Paste it into the console's login page; it is a secret until then. Revoke it with: lvsctl certs revoke %s\n",
					tok, name, r, info.GetSerialNumber(), stamp(info.GetNotAfter()), info.GetSerialNumber())
				return err
			})
		},
	}
	token.Flags().StringVar(&role, "role", "", "viewer (sees everything, changes nothing), operator (enable, disable, drain, weight) or admin (every edit, import, rollback)")
	token.Flags().StringVar(&name, "name", "console", "the name the audit history shows for changes made in the console with this token")
	token.Flags().DurationVar(&ttl, "ttl", pki.ConsoleTokenLifetime, "how long the token, and sessions made with it, last (at most 24h)")
	_ = token.MarkFlagRequired("role")
	cmd.AddCommand(token)
	return cmd
}
