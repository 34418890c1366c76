package main

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

func init() {
	registerCommand(newWhoAmICmd)
	registerCommand(newCertsCmd)
}

// defaultTLSDir is where lvsd (with its default --data-dir) writes root's
// admin credentials on a router; lvsctl uses them when it is given none.
const defaultTLSDir = "/var/lib/shoal/tls"

// tlsConfig is the client TLS configuration from --cacert, --cert and
// --key (or their environment variables), or from defaultTLSDir when none
// is given and the files there can be read; nil means plaintext.
func (a *app) tlsConfig() (*tls.Config, error) {
	ca, cert, key := a.cacert, a.cert, a.key
	if ca == "" && cert == "" && key == "" {
		c, k, r := filepath.Join(defaultTLSDir, pki.CACertFile), filepath.Join(defaultTLSDir, pki.AdminCertFile), filepath.Join(defaultTLSDir, pki.AdminKeyFile)
		if !readable(c) || !readable(k) || !readable(r) {
			return nil, nil
		}
		ca, cert, key = c, k, r
	}
	if ca == "" {
		return nil, errors.New("--cert and --key need --cacert, the cluster CA's certificate")
	}
	if (cert == "") != (key == "") {
		return nil, errors.New("--cert and --key go together")
	}
	cas, err := pki.ReadCerts(ca)
	if err != nil {
		return nil, fmt.Errorf("--cacert: %w", err)
	}
	roots := x509.NewCertPool()
	for _, c := range cas {
		roots.AddCert(c)
	}
	var pair *tls.Certificate
	if cert != "" {
		p, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		pair = &p
	}
	return pki.ClientConfig(pair, roots), nil
}

func readable(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

func newWhoAmICmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "The name and role the server sees in your certificate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			resp, err := shoalv1.NewClusterServiceClient(conn).WhoAmI(ctx, &shoalv1.WhoAmIRequest{})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error {
				if !resp.GetTls() {
					_, err := fmt.Fprintf(w, "%s (%s): the API runs without TLS\n", resp.GetName(), resp.GetRole())
					return err
				}
				_, err := fmt.Fprintf(w, "%s (%s), certificate %s expires %s\n", resp.GetName(), resp.GetRole(),
					resp.GetCertificate().GetSerialNumber(), stamp(resp.GetCertificate().GetNotAfter()))
				return err
			})
		},
	}
}

// newTokenCmd is `lvsctl cluster token`.
func newTokenCmd(a *app) *cobra.Command {
	var (
		ttl         time.Duration
		description string
		bootstrap   bool
	)
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Print a join token for one more router (admin); --bootstrap: a token for the routers of a first bootstrap",
		Long: `Print a join token with which a new router gets its certificate:

    lvsctl cluster token > token && chmod 600 token    # on any machine with admin credentials
    lvsd --id r4 --join MEMBER_API_ADDR --token-file token ...

The token names the cluster CA's fingerprint, which the new router checks,
and a secret shown only here. With --bootstrap, print a new token for the
routers of a first bootstrap to share (lvsd --bootstrap ... --token-file);
that needs no cluster and prints only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if bootstrap {
				tok, err := pki.NewBootstrapToken()
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(a.stdout, tok.String())
				return err
			}
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			resp, err := shoalv1.NewClusterServiceClient(conn).CreateJoinToken(ctx, &shoalv1.CreateJoinTokenRequest{
				Ttl: durationpb.New(ttl), Description: description,
			})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error {
				// The token alone on stdout, so that it can go to a file.
				fmt.Fprintf(a.stderr, "join token %s, good until %s; keep it secret\n", resp.GetInfo().GetId(), stamp(resp.GetInfo().GetExpires()))
				_, err := fmt.Fprintln(w, resp.GetToken())
				return err
			})
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token can be used (at most 168h)")
	cmd.Flags().StringVar(&description, "description", "", "a note shown by `cluster token list`")
	cmd.Flags().BoolVar(&bootstrap, "bootstrap", false, "print a new bootstrap token (no cluster needed)")

	list := &cobra.Command{
		Use:   "list",
		Short: "Join tokens that have not expired (admin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			resp, err := shoalv1.NewClusterServiceClient(conn).ListJoinTokens(ctx, &shoalv1.ListJoinTokensRequest{})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tEXPIRES\tCREATED BY\tDESCRIPTION")
				for _, t := range resp.GetTokens() {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.GetId(), stamp(t.GetExpires()), orDash(t.GetCreatedBy()), t.GetDescription())
				}
				return tw.Flush()
			})
		},
	}
	del := &cobra.Command{
		Use:     "delete ID",
		Aliases: []string{"revoke", "rm"},
		Short:   "Revoke a join token (admin)",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			resp, err := shoalv1.NewClusterServiceClient(conn).DeleteJoinToken(ctx, &shoalv1.DeleteJoinTokenRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "join token %s deleted\n", args[0])
				return err
			})
		},
	}
	cmd.AddCommand(list, del)
	return cmd
}

// newClusterCertsCmd is `lvsctl cluster certs`.
func newClusterCertsCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "certs",
		Short: "Each router's TLS certificate: expiry, renewal, CA",
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
			return a.print(resp, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NODE\tROLE\tSERIAL\tEXPIRES\tRENEWS AFTER\tSOURCE\tCA\tERROR")
				for _, m := range resp.GetMembers() {
					c := m.GetCertificate()
					if c == nil {
						fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t%s\n", m.GetId(), orDash(m.GetError()))
						continue
					}
					ca := c.GetCaFingerprint()
					if len(ca) > 16 {
						ca = ca[:16] + "…"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.GetId(), c.GetRole(), c.GetSerialNumber(),
						stamp(c.GetNotAfter()), stamp(c.GetRenewAfter()), c.GetSource(), orDash(ca), m.GetError())
				}
				return tw.Flush()
			})
		},
	}
}

func newCertsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "certs", Short: "Client certificates"}
	var (
		role, name, out string
		ttl             time.Duration
	)
	issue := &cobra.Command{
		Use:   "issue --role viewer|operator|admin --name NAME [--out DIR]",
		Short: "Issue a client certificate with a role (admin); writes NAME.crt, NAME.key and ca.crt",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := pki.ParseRole(role)
			if err != nil {
				return fmt.Errorf("--role: %w", err)
			}
			if err := pki.CheckName(name); err != nil {
				return fmt.Errorf("--name: %w", err)
			}
			key, cert, resp, err := a.issueCertificate(cmd, r, name, ttl)
			if err != nil {
				return err
			}
			ca, err := x509.ParseCertificate(resp.GetCaCertificate())
			if err != nil {
				return fmt.Errorf("the server's CA certificate: %w", err)
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return err
			}
			keyPath, certPath, caPath := filepath.Join(out, name+".key"), filepath.Join(out, name+".crt"), filepath.Join(out, pki.CACertFile)
			if err := pki.WriteKey(keyPath, key); err != nil {
				return err
			}
			if err := pki.WriteCerts(certPath, cert); err != nil {
				return err
			}
			if err := pki.WriteCerts(caPath, ca); err != nil {
				return err
			}
			return a.print(resp.GetInfo(), func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "issued %s (%s), expires %s\n  %s\n  %s (keep it private)\n  %s\nuse: lvsctl --cacert %s --cert %s --key %s ...\n",
					name, r, stamp(resp.GetInfo().GetNotAfter()), certPath, keyPath, caPath, caPath, certPath, keyPath)
				return err
			})
		},
	}
	issue.Flags().StringVar(&role, "role", "", "viewer (reads), operator (enable, disable, weight, drain, leader transfer) or admin (everything)")
	issue.Flags().StringVar(&name, "name", "", "the certificate's name, which the audit history shows")
	issue.Flags().StringVar(&out, "out", ".", "directory for NAME.crt, NAME.key and ca.crt")
	issue.Flags().DurationVar(&ttl, "ttl", pki.ClientLifetime, "lifetime (at most 19800h, 825 days)")
	_ = issue.MarkFlagRequired("role")
	_ = issue.MarkFlagRequired("name")

	list := &cobra.Command{
		Use:   "list",
		Short: "Client certificates the cluster issued that have not expired, and revoked ones (admin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			resp, err := shoalv1.NewClusterServiceClient(conn).ListCertificates(ctx, &shoalv1.ListCertificatesRequest{})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SERIAL\tNAME\tROLE\tEXPIRES\tISSUED BY\tREVOKED")
				for _, c := range resp.GetCertificates() {
					revoked := "-"
					if c.GetRevoked() != nil {
						revoked = stamp(c.GetRevoked()) + " by " + c.GetRevokedBy()
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.GetInfo().GetSerialNumber(), orDash(c.GetInfo().GetName()),
						orDash(c.GetInfo().GetRole()), stamp(c.GetInfo().GetNotAfter()), orDash(c.GetIssuedBy()), revoked)
				}
				return tw.Flush()
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke SERIAL",
		Short: "Refuse a client certificate from now on (admin); SERIAL as `certs list` or `whoami` shows it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel := a.context(cmd)
			defer cancel()
			resp, err := shoalv1.NewClusterServiceClient(conn).RevokeCertificate(ctx, &shoalv1.RevokeCertificateRequest{SerialNumber: args[0]})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "certificate %s (%s) revoked\n", args[0], orDash(resp.GetCertificate().GetInfo().GetName()))
				return err
			})
		},
	}
	cmd.AddCommand(issue, list, revoke)
	return cmd
}

// stamp prints a time in UTC to the second, or "-".
func stamp(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

// issueCertificate has the cluster sign a client certificate with role r
// for a key made here, which never leaves this machine: the server signs
// a request for it (lvsctl certs issue, lvsctl console token).
func (a *app) issueCertificate(cmd *cobra.Command, r pki.Role, name string, ttl time.Duration) (*ecdsa.PrivateKey, *x509.Certificate, *shoalv1.IssueCertificateResponse, error) {
	key, err := pki.NewKey()
	if err != nil {
		return nil, nil, nil, err
	}
	csr, err := pki.NewCSR(key, name, nil, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	conn, err := a.dial()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := a.context(cmd)
	defer cancel()
	resp, err := shoalv1.NewClusterServiceClient(conn).IssueCertificate(ctx, &shoalv1.IssueCertificateRequest{
		Csr: csr, Name: name, Role: string(r), Ttl: durationpb.New(ttl),
	})
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(resp.GetCertificate())
	if err != nil {
		return nil, nil, nil, fmt.Errorf("the server's certificate: %w", err)
	}
	return key, cert, resp, nil
}
