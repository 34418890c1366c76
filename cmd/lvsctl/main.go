// Command lvsctl is shoal's command-line client: it changes and shows the
// cluster's virtual services, real servers, configuration and members
// through the gRPC API of any node.
package main

import (
	"fmt"
	"os"

	"google.golang.org/grpc/status"
)

func main() {
	a := newApp(os.Stdout, os.Stderr)
	if err := a.root().Execute(); err != nil {
		// The server's message says what was wrong (field and reason);
		// the status code adds nothing an operator needs.
		if st, ok := status.FromError(err); ok {
			fmt.Fprintln(os.Stderr, "lvsctl:", st.Message())
		} else {
			fmt.Fprintln(os.Stderr, "lvsctl:", err)
		}
		os.Exit(1)
	}
}
