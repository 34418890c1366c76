package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoal-lb/shoal/pki"
)

// TestSetupTLS walks lvsd's choice between plaintext, a new cluster CA, an
// operator's files and a refusal, without any network: only the cases that
// decide before a join.
func TestSetupTLS(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	bootTok, err := pki.NewBootstrapToken()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		token string
		tls   bool   // TLS on, with a certificate
		err   string // a refusal containing this
	}{
		{name: "loopback quick start is plaintext", args: []string{"--bootstrap", "n1=127.0.0.1:7001,n2=127.0.0.1:7002", "--raft-addr", "127.0.0.1:7001", "--api-addr", "127.0.0.1:7101"}},
		{name: "insecure anywhere", args: []string{"--insecure", "--raft-addr", "10.0.0.1:7071", "--api-addr", "10.0.0.1:7070"}},
		{name: "non-loopback without anything is refused", args: []string{"--raft-addr", "10.0.0.1:7071", "--api-addr", "10.0.0.1:7070"},
			err: "--insecure"},
		{name: "a bootstrap of one makes the CA", args: []string{"--bootstrap", "n1=10.0.0.1:7071", "--raft-addr", "10.0.0.1:7071", "--api-addr", "10.0.0.1:7070"}, tls: true},
		{name: "a bootstrap of three without a token is refused", args: []string{"--bootstrap", "n1=10.0.0.1:7071,n2=10.0.0.2:7071,n3=10.0.0.3:7071", "--raft-addr", "10.0.0.1:7071", "--api-addr", "10.0.0.1:7070"},
			err: "bootstrap token"},
		{name: "the first of three with the token makes the CA", args: []string{"--bootstrap", "n1=10.0.0.1:7071,n2=10.0.0.2:7071", "--raft-addr", "10.0.0.1:7071", "--api-addr", "10.0.0.1:7070"},
			token: bootTok.String(), tls: true},
		{name: "a token on loopback turns TLS on", args: []string{"--bootstrap", "n1=127.0.0.1:7001", "--raft-addr", "127.0.0.1:7001", "--api-addr", "127.0.0.1:7101"},
			token: bootTok.String(), tls: true},
		{name: "a token without --join or --bootstrap", args: []string{"--raft-addr", "10.0.0.1:7071", "--api-addr", "10.0.0.1:7070"},
			token: bootTok.String(), err: "--join or --bootstrap"},
		{name: "half an operator PKI", args: []string{"--tls-cert", "x.crt", "--raft-addr", "10.0.0.1:7071"}, err: "go together"},
		{name: "a malformed token", args: []string{"--join", "10.0.0.2:7070"}, token: "shoal1.nope", err: "--token-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"--id", "n1", "--data-dir", dir}, tt.args...)
			if tt.token != "" {
				p := filepath.Join(dir, "token")
				if err := os.WriteFile(p, []byte(tt.token+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--token-file", p)
			}
			f, err := parseFlags(args)
			if err != nil {
				t.Fatal(err)
			}
			boot, err := parseBootstrap(f.bootstrap)
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := setupTLS(context.Background(), f, boot, log)
			switch {
			case tt.err != "":
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one containing %q", err, tt.err)
				}
				if strings.Contains(err.Error(), bootTok.Secret) {
					t.Fatalf("the error shows the token's secret: %v", err)
				}
			case err != nil:
				t.Fatal(err)
			case tt.tls != (got != nil):
				t.Fatalf("TLS %v, want %v", got != nil, tt.tls)
			case tt.tls && (got.Store.Leaf() == nil || !pki.Exists(filepath.Join(dir, "tls", pki.AdminCertFile))):
				t.Fatal("TLS on, but no certificate or no admin credentials")
			}
		})
	}
}

func TestLoopbackOnly(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want bool
	}{
		{[]string{"--raft-addr", "127.0.0.1:1", "--api-addr", "127.0.0.2:2"}, true},
		{[]string{"--raft-addr", "[::1]:1", "--api-addr", "localhost:2"}, true},
		{[]string{"--raft-addr", "127.0.0.1:1", "--api-addr", "0.0.0.0:2"}, false},
		{[]string{"--raft-addr", "127.0.0.1:1", "--api-addr", "127.0.0.1:2", "--join", "10.0.0.1:7070"}, false},
		{[]string{"--raft-addr", "127.0.0.1:1", "--api-addr", "127.0.0.1:2", "--bootstrap", "a=127.0.0.1:1,b=10.0.0.2:1"}, false},
		{[]string{"--raft-addr", "router1:1", "--api-addr", "127.0.0.1:2"}, false},
	} {
		f, err := parseFlags(append([]string{"--id", "n1"}, tt.args...))
		if err != nil {
			t.Fatal(err)
		}
		boot, _ := parseBootstrap(f.bootstrap)
		if got := loopbackOnly(f, boot); got != tt.want {
			t.Errorf("%v: loopbackOnly %v, want %v", tt.args, got, tt.want)
		}
	}
}

// TestRefused: a join that retrying cannot fix stops lvsd; one that a
// peer coming up, or catching up, will fix is retried.
func TestRefused(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{status.Error(codes.Unauthenticated, "unknown or expired join token"), true},
		{status.Error(codes.PermissionDenied, "bootstrap members only"), true},
		{status.Error(codes.Unavailable, "connection refused"), false},
		{status.Error(codes.Unavailable, "this node does not hold the cluster CA yet"), false},
		{status.Error(codes.Unavailable, "authentication handshake failed: the server's CA is not the one the token names"), true},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), false},
		{context.DeadlineExceeded, true}, // not a status: the answer did not check out
	} {
		if got := refused(tt.err); got != tt.want {
			t.Errorf("refused(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
