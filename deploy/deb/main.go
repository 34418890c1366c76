// Command deb builds shoal's Debian package, shoal_<version>_<arch>.deb, with
// nfpm (github.com/goreleaser/nfpm) as a library:
//
//	go run ./deploy/deb -version v1.4.0 -out dist    # what `make deb` runs
//
// It builds lvsd and lvsctl (static, stamped with the version, commit and
// date as buildinfo describes), runs them to write their manual pages and
// lvsctl's shell completions, and packs them with the systemd unit
// (deploy/lvsd.service, with the binaries in /usr/bin), /etc/default/lvsd
// (a conffile), the maintainer scripts beside this file and a copyright
// file that carries the license of every Go module compiled in. It runs
// from the repository's root, or -root says where that is.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
)

func main() {
	o := options{log: os.Stderr}
	flag.StringVar(&o.root, "root", ".", "the repository's root")
	flag.StringVar(&o.out, "out", "dist", "directory to write the package to")
	flag.StringVar(&o.version, "version", "", "the release, as `git describe --tags --always --dirty` names it (default: what it prints)")
	flag.StringVar(&o.commit, "commit", "", "the git commit (default: git rev-parse HEAD)")
	flag.StringVar(&o.date, "date", "", "the build date, RFC 3339 in UTC (default: $SOURCE_DATE_EPOCH, else now)")
	flag.StringVar(&o.maintainer, "maintainer", defaultMaintainer, "the package's Maintainer field")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "deb: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	path, err := build(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "deb:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}
