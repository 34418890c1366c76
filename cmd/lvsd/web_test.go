package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/sync/errgroup"
)

// Without TLS every console visitor is an admin, so lvsd serves it on a
// network address only when told --insecure.
func TestConsoleRefusesPlaintextOnNetwork(t *testing.T) {
	var g errgroup.Group
	_, err := startConsole(context.Background(), &g, &flags{webAddr: "0.0.0.0:8443"}, nil, nil, slog.Default())
	if err == nil || !strings.Contains(err.Error(), "--insecure") {
		t.Fatalf("plaintext console on 0.0.0.0: %v", err)
	}
	for addr, want := range map[string]bool{
		"127.0.0.1:8443": true, "[::1]:8443": true, "localhost:8443": true,
		"0.0.0.0:8443": false, ":8443": false, "10.0.0.1:8443": false, "127.0.0.1": false,
	} {
		if got := loopbackAddr(addr); got != want {
			t.Errorf("loopbackAddr(%q) = %v", addr, got)
		}
	}
}
