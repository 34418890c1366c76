package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/shoal-lb/shoal/console"
	"github.com/shoal-lb/shoal/server"
)

// webConsole is the running --web-addr console.
type webConsole struct {
	http      *http.Server
	stopLocal func()
}

// startConsole serves the web console on --web-addr: over TLS with this
// node's certificate when the API runs TLS; in plaintext (where every
// visitor is the API's anonymous admin, as on a plaintext API) only on a
// loopback address unless --insecure.
func startConsole(ctx context.Context, g *errgroup.Group, f *flags, srv *server.Server, t *server.TLS, log *slog.Logger) (*webConsole, error) {
	if t == nil && !f.insecure && !loopbackAddr(f.webAddr) {
		return nil, fmt.Errorf("--web-addr %s: the API runs without TLS, so the console would let anyone who reaches it change the cluster; "+
			"serve it on a loopback address, run the cluster with TLS, or give --insecure", f.webAddr)
	}
	conn, stopLocal, err := srv.LocalConn()
	if err != nil {
		return nil, err
	}
	o := console.Options{Conn: conn, Node: f.id, Logger: log, Registerer: prometheus.DefaultRegisterer}
	var tlsConf *tls.Config
	if t != nil {
		o.Store, tlsConf = t.Store, t.Store.WebServerConfig()
	}
	con, err := console.New(o)
	if err != nil {
		_ = conn.Close()
		stopLocal()
		return nil, err
	}
	lis, err := net.Listen("tcp", f.webAddr)
	if err != nil {
		_ = conn.Close()
		stopLocal()
		return nil, fmt.Errorf("listen for the web console: %w", err)
	}
	hs := &http.Server{Handler: con.Handler(), TLSConfig: tlsConf, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	scheme := "http"
	if tlsConf != nil {
		scheme = "https"
	}
	log.Info("web console", "url", scheme+"://"+lis.Addr().String()+"/", "tls", tlsConf != nil)
	g.Go(func() error {
		var err error
		if tlsConf != nil {
			err = hs.ServeTLS(lis, "", "")
		} else {
			err = hs.Serve(lis)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve the web console: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		con.Run(ctx)
		return nil
	})
	return &webConsole{http: hs, stopLocal: func() { _ = conn.Close(); stopLocal() }}, nil
}

// close ends the console's connections at once (its event streams would
// hold a graceful shutdown open) and the in-process API.
func (w *webConsole) close() {
	if w == nil {
		return
	}
	_ = w.http.Close()
	w.stopLocal()
}

func loopbackAddr(a string) bool {
	host, _, err := net.SplitHostPort(a)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
