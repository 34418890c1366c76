// Command lvsctl is shoal's command-line client: it changes and shows the
// cluster's virtual services, real servers, configuration and members
// through the gRPC API of any node.
package main

import (
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc/status"
)

func main() {
	a := newApp(os.Stdout, os.Stderr)
	if err := a.explain(a.root().Execute()); err != nil {
		// The server's message says what was wrong (field and reason);
		// the status code adds nothing an operator needs.
		if st, ok := status.FromError(err); ok {
			fmt.Fprintln(os.Stderr, "lvsctl:", st.Message())
			if hint := tlsHint(st.Message()); hint != "" {
				fmt.Fprintln(os.Stderr, "lvsctl:", hint)
			}
		} else {
			fmt.Fprintln(os.Stderr, "lvsctl:", err)
		}
		os.Exit(1)
	}
}

// tlsHint explains the connection errors of a client and a server that
// disagree on TLS, which gRPC reports in transport terms.
func tlsHint(msg string) string {
	switch {
	case strings.Contains(msg, "server preface"), strings.Contains(msg, "connection reset by peer"):
		return "the server may require TLS: give --cacert, --cert and --key (an admin issues them with `lvsctl certs issue`)"
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return "the server runs without TLS: drop --cacert, --cert and --key"
	}
	return ""
}
