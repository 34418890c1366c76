package netlab

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// fwTable is the nftables table a node's drops live in, inside the node's
// own namespace: nothing outside the lab is touched.
const fwTable = "netlab_drops"

// NftInstalled reports whether nft (nftables) is in PATH; Drop needs it.
func NftInstalled() bool {
	_, err := exec.LookPath("nft")
	return err == nil
}

// Drop replaces the node's packet drops: IPv4 packets arriving from any of
// in, and leaving for any of out, are dropped silently inside the node's
// namespace (a partition, or a one-way loss when only one list is given).
// ARP passes, as it would through a router that filters IP. Drop with both
// lists empty removes every drop.
func (n *Node) Drop(in, out []netip.Addr) error {
	var b strings.Builder
	// "add" then "delete" so that the delete succeeds whether or not the
	// table exists; the whole script is one transaction.
	fmt.Fprintf(&b, "add table inet %s\ndelete table inet %s\n", fwTable, fwTable)
	if len(in) > 0 || len(out) > 0 {
		fmt.Fprintf(&b, "table inet %s {\n", fwTable)
		fmt.Fprintf(&b, "  chain input {\n    type filter hook input priority -10; policy accept;\n")
		if len(in) > 0 {
			fmt.Fprintf(&b, "    ip saddr { %s } drop\n", addrList(in))
		}
		fmt.Fprintf(&b, "  }\n  chain output {\n    type filter hook output priority -10; policy accept;\n")
		if len(out) > 0 {
			fmt.Fprintf(&b, "    ip daddr { %s } drop\n", addrList(out))
		}
		fmt.Fprintf(&b, "  }\n}\n")
	}
	cmd := n.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("netlab: nft in %s: %w: %s", n.NS, err, bytes.TrimSpace(out))
	}
	return nil
}

// ClearDrops removes every drop Drop set on the node.
func (n *Node) ClearDrops() error { return n.Drop(nil, nil) }

func addrList(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
