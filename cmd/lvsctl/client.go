package main

// This file holds what every lvsctl command shares, for reuse by commands
// added in files of their own (import, export, ...):
//
//	func init() { registerCommand(newExportCmd) }
//
//	func newExportCmd(a *app) *cobra.Command {
//		return &cobra.Command{Use: "export", RunE: func(cmd *cobra.Command, args []string) error {
//			conn, err := a.dial()          // cached, closed when the command ends
//			ctx, cancel := a.context(cmd)  // bounded by --request-timeout
//			defer cancel()
//			resp, err := shoalv1.NewConfigServiceClient(conn).GetConfig(ctx, &shoalv1.GetConfigRequest{})
//			return a.print(resp, func(w io.Writer) error { ... table ... })
//		}}
//	}

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/shoal-lb/shoal/server"
)

// defaultServer is used when neither -s nor $SHOAL_SERVER is given; it is
// lvsd's default --api-addr.
const defaultServer = "127.0.0.1:7070"

// app is what every command needs: where the server is, how to print, and
// the connection once dialled.
type app struct {
	// server is --server: one address, or several separated by commas,
	// tried in turn (endpoints.go).
	server string
	output string
	// cacert, cert and key are the client's TLS files (tlsConfig).
	cacert, cert, key string
	timeout           time.Duration
	stdout            io.Writer
	stderr            io.Writer
	conn              *grpc.ClientConn
	// retry is how calls that got Unavailable are retried (retry.go).
	retry retryPolicy
	// dials records the connection attempts, for explain.
	dials dialLog

	mu sync.Mutex
	// requestID is --request-id: the id of the command's write, used
	// once (requestIDUsed); empty, each write gets a random one.
	requestID     string
	requestIDUsed bool
}

// commandFactories are the top-level commands; files add theirs in init.
var commandFactories []func(*app) *cobra.Command

// registerCommand adds a top-level command to lvsctl.
func registerCommand(f func(*app) *cobra.Command) {
	commandFactories = append(commandFactories, f)
}

func newApp(stdout, stderr io.Writer) *app {
	return &app{stdout: stdout, stderr: stderr, retry: defaultRetry}
}

// root builds the command tree.
func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:           "lvsctl",
		Short:         "Manage a shoal LVS director cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			switch a.output {
			case "table", "json", "yaml":
				return nil
			}
			return fmt.Errorf("-o %q: want table, json or yaml", a.output)
		},
		PersistentPostRunE: func(*cobra.Command, []string) error { return a.close() },
	}
	server := os.Getenv("SHOAL_SERVER")
	if server == "" {
		server = defaultServer
	}
	root.PersistentFlags().StringVarP(&a.server, "server", "s", server, "API address of any shoal node, or several separated by commas, tried in turn ($SHOAL_SERVER)")
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "table", "output format: table, json or yaml")
	root.PersistentFlags().DurationVar(&a.timeout, "request-timeout", 15*time.Second, "time limit of one call, retries included")
	root.PersistentFlags().StringVar(&a.requestID, "request-id", "", "request id of the command's write, to run a write whose outcome is unknown again safely (default: a new random one)")
	root.PersistentFlags().StringVar(&a.cacert, "cacert", os.Getenv("SHOAL_CACERT"), "the cluster CA's certificate, to verify the server ($SHOAL_CACERT; default "+defaultTLSDir+"/ca.crt when readable)")
	root.PersistentFlags().StringVar(&a.cert, "cert", os.Getenv("SHOAL_CERT"), "your client certificate ($SHOAL_CERT; default "+defaultTLSDir+"/admin.crt when readable)")
	root.PersistentFlags().StringVar(&a.key, "key", os.Getenv("SHOAL_KEY"), "your client certificate's key ($SHOAL_KEY; default "+defaultTLSDir+"/admin.key when readable)")
	_ = root.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp
	})
	for _, f := range commandFactories {
		root.AddCommand(f(a))
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	return root
}

// dial returns the connection to --server, dialling it once: one channel
// over all its addresses (endpoints.go).
func (a *app) dial() (*grpc.ClientConn, error) {
	if a.conn != nil {
		return a.conn, nil
	}
	creds := insecure.NewCredentials()
	tc, err := a.tlsConfig()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		creds = credentials.NewTLS(tc)
	}
	opts, target, err := a.endpointOptions()
	if err != nil {
		return nil, err
	}
	opts = append(opts, grpc.WithTransportCredentials(creds), server.CallOptions(), grpc.WithChainUnaryInterceptor(a.retryUnary(a.retry)))
	c, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", a.server, err)
	}
	a.conn = c
	return c, nil
}

func (a *app) close() error {
	if a.conn == nil {
		return nil
	}
	err := a.conn.Close()
	a.conn = nil
	return err
}

// context bounds one call by --request-timeout.
func (a *app) context(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, a.timeout)
}

var marshal = protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}

// print writes m as -o asks: protojson, the same as YAML, or the table
// the command draws.
func (a *app) print(m proto.Message, table func(w io.Writer) error) error {
	switch a.output {
	case "json":
		b, err := marshal.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode JSON: %w", err)
		}
		_, err = fmt.Fprintln(a.stdout, string(b))
		return err
	case "yaml":
		b, err := toYAML(m)
		if err != nil {
			return err
		}
		_, err = a.stdout.Write(b)
		return err
	}
	return table(a.stdout)
}

// printLine writes m as one compact JSON line (json), a YAML document
// (yaml) or the table; for streams.
func (a *app) printLine(m proto.Message, table func(w io.Writer) error) error {
	switch a.output {
	case "json":
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode JSON: %w", err)
		}
		// protojson output is not byte-stable; compact it to one line.
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		b, _ = json.Marshal(v)
		_, err = fmt.Fprintln(a.stdout, string(b))
		return err
	case "yaml":
		b, err := toYAML(m)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(a.stdout, "---\n%s", b)
		return err
	}
	return table(a.stdout)
}

// toYAML converts the protojson form, so YAML and JSON name fields alike.
func toYAML(m proto.Message) ([]byte, error) {
	j, err := marshal.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode JSON: %w", err)
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		return nil, fmt.Errorf("encode YAML: %w", err)
	}
	return y, nil
}
