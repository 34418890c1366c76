package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/shoal-lb/shoal/buildinfo"
)

// genManArg is the hidden sole argument with which lvsd writes its manual
// page, lvsd(8), to stdout: the package build (deploy/deb) runs the binary
// it packs with it, so the page lists exactly the flags that binary has.
const genManArg = "__gen-man"

// manDefaults replaces defaults that depend on the machine the page is
// written on.
var manDefaults = map[string]string{"id": "the host name"}

// manArgs names the values of flags whose type flag.UnquoteUsage can only
// call "value".
var manArgs = map[string]string{"probe-timeout": "duration|off"}

// writeManPage writes lvsd(8) in troff (man macros) from lvsd's flag set.
func writeManPage(out io.Writer, b buildinfo.Info) error {
	w := bufio.NewWriter(out)
	date := b.Date
	if len(date) >= len("2006-01-02") {
		date = date[:len("2006-01-02")]
	}
	fmt.Fprintf(w, ".TH LVSD 8 %q %q \"shoal manual\"\n", date, "shoal "+b.Version)
	w.WriteString(`.SH NAME
lvsd \- shoal LVS director daemon: one router of a Raft group
.SH SYNOPSIS
.B lvsd
.RI [ options ]
.br
.B lvsd \-\-version
.SH DESCRIPTION
.B lvsd
is one router of a shoal cluster: three or five routers form a Raft group
that agrees on one virtual\-server configuration. The leader holds the
virtual IPs (and the NAT router address), announces them with gratuitous ARP
and programs IPVS; every follower keeps the same IPVS table, so that a
takeover only has to move addresses. Every router serves the gRPC API that
.BR lvsctl (1)
uses, and forwards writes to the leader.
.PP
A new cluster starts with the same
.B \-\-bootstrap
list on each of its first routers; a later router starts with
.B \-\-join
and the API address of any member. On any address other than loopback, lvsd
serves the API and Raft over mutual TLS with a cluster CA it makes itself,
and needs a token
.RB ( "lvsctl cluster token" )
to get its certificate; root's admin credentials for lvsctl are written to
.IR /var/lib/shoal/tls/ .
.PP
SIGTERM (or SIGINT) makes lvsd drop its addresses, hand leadership to
another router and close Raft before it exits.
.SH OPTIONS
Flags take one or two dashes, and a value after a space or an equals sign.
`)
	var err error
	newFlagSet(&flags{}, "").VisitAll(func(fl *flag.Flag) {
		if err != nil {
			return
		}
		arg, usage := flag.UnquoteUsage(fl)
		if bf, ok := fl.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			arg = ""
		}
		if a, ok := manArgs[fl.Name]; ok {
			arg = a
		}
		fmt.Fprintf(w, ".TP\n\\fB\\-\\-%s\\fR", manEscape(fl.Name))
		if arg != "" {
			fmt.Fprintf(w, " \\fI%s\\fR", manEscape(arg))
		}
		w.WriteString("\n")
		w.WriteString(manText(usage))
		def, ok := manDefaults[fl.Name]
		if !ok && !zeroDefault(fl.DefValue) {
			def = manEscape(fl.DefValue)
		}
		if def != "" {
			fmt.Fprintf(w, "\n(default: %s)", def)
		}
		_, err = w.WriteString("\n")
	})
	w.WriteString(`.SH ENVIRONMENT
.TP
.B SHOAL_TOKEN
the join or bootstrap token when
.B \-\-token\-file
is not given.
.TP
.B GOGC
the Go garbage collector's target; unless it is set, lvsd uses 400 while
the live heap is under 4 MB, and less as it grows, down to 100 at 16 MB and
above, so that a large table's heap is not allowed to grow to five times
its size.
.SH FILES
.TP
.I /etc/default/lvsd
the flags of the systemd unit lvsd.service, as LVSD_OPTS.
.TP
.I /var/lib/shoal
the default
.BR \-\-data\-dir :
the Raft log and stable store (raft.db), snapshots and the cluster ID.
.TP
.I /var/lib/shoal/tls/
this router's certificate and key, the cluster CA's certificate, and root's
admin credentials for lvsctl (admin.crt, admin.key).
.SH SEE ALSO
.BR lvsctl (1),
.BR ipvsadm (8),
.BR systemctl (1)
`)
	if err != nil {
		return err
	}
	return w.Flush()
}

// zeroDefault reports whether a flag's default is its type's zero value,
// which the page does not show.
func zeroDefault(v string) bool {
	switch v {
	case "", "0", "false", "0s":
		return true
	}
	return false
}

// manEscape escapes s for troff inside a line: backslashes and hyphens
// (so that options copied from the page are ASCII hyphen-minus).
func manEscape(s string) string {
	return strings.NewReplacer(`\`, `\e`, "-", `\-`).Replace(s)
}

// manText escapes running text, which must not start a line with a
// control character.
func manText(s string) string {
	s = manEscape(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}
