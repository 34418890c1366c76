package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// severalChecks: rs2 of web-nat gets two checks of its own, HTTP on its
// port (as the service checks) and TCP on port 81, where nothing listens.
// It leaves IPVS on every director although its HTTP server answers;
// `lvsctl status` shows both checks and names the failing one. With a
// listener on port 81 it comes back.
func severalChecks(r *run) error {
	ctx, cancel := context.WithTimeout(r.ctx, 3*time.Minute)
	defer cancel()
	cfg := labConfig()
	rs2 := cfg.Services[0].RealServers[1]
	if rs2.Address != "10.0.2.12" {
		return fmt.Errorf("lab config changed: web-nat's second server is %s", rs2.Address)
	}
	status := proto.Clone(cfg.Services[0].HealthCheck).(*shoalv1.HealthCheck)
	status.Kind, status.Port = "tcp", 81
	rs2.HealthChecks = []*shoalv1.HealthCheck{proto.Clone(cfg.Services[0].HealthCheck).(*shoalv1.HealthCheck), status}
	applied := time.Now()
	if _, err := r.cluster.apply(ctx, cfg); err != nil {
		return err
	}
	defer func() {
		if _, err := r.cluster.apply(r.ctx, labConfig()); err != nil {
			rep.logf("checks: restoring the lab config: %v", err)
		}
	}()
	if err := r.waitKernels(60*time.Second, func(d *director, t table) error {
		if x, ok := t.dests(natKey)["10.0.2.12:80"]; ok {
			return fmt.Errorf("%s kernel still has rs2 in web-nat: %s", d.name, x)
		}
		if x := t.dests(drKey)["10.0.1.12:80"]; x != "dr w1" {
			return fmt.Errorf("%s kernel: rs2 in web-dr (not its own checks) %q", d.name, x)
		}
		return nil
	}); err != nil {
		return err
	}
	rep.info("checks", "rs2 out of web-nat on every director %.1fs after its port-81 check was added", time.Since(applied).Seconds())
	leader, err := r.cluster.leader(ctx, 30*time.Second)
	if err != nil {
		return err
	}
	rows, err := r.healthRows(ctx, leader, "10.0.2.12:80")
	if err != nil {
		return err
	}
	for _, l := range rows {
		rep.info("checks", "lvsctl status on %s: %s", leader.name, l)
	}
	if len(rows) != 3 || !strings.Contains(rows[0], "down") || !strings.Contains(rows[0], "check 1 (tcp:81)") ||
		!strings.Contains(rows[1], "check 0 http:80") || !strings.Contains(rows[1], " up ") ||
		!strings.Contains(rows[2], "check 1 tcp:81") || !strings.Contains(rows[2], " down ") {
		return fmt.Errorf("lvsctl status on %s does not show rs2 down by its check 1 with both checks: %q", leader.name, rows)
	}

	m := r.lab.servers[1]
	listener := exec.Command("/init", "httpd", m.name, ":81")
	listener.Stdout, listener.Stderr = os.Stdout, os.Stdout
	if err := m.start(listener); err != nil {
		return err
	}
	defer func() { listener.Process.Kill(); listener.Wait() }()
	opened := time.Now()
	if err := r.waitKernels(60*time.Second, func(d *director, t table) error {
		if x := t.dests(natKey)["10.0.2.12:80"]; x != "nat w1" {
			return fmt.Errorf("%s kernel: rs2 in web-nat %q", d.name, x)
		}
		return nil
	}); err != nil {
		return err
	}
	rep.info("checks", "rs2 back in web-nat on every director %.1fs after port 81 answered", time.Since(opened).Seconds())
	rows, err = r.healthRows(ctx, leader, "10.0.2.12:80")
	if err != nil {
		return err
	}
	if len(rows) != 3 || !strings.Contains(rows[0], "all 2 checks up") {
		return fmt.Errorf("lvsctl status after port 81 answered: %q", rows)
	}
	return nil
}

// healthRows returns the health rows of `lvsctl status` for one real
// server of web-nat: its own row and the rows of its checks under it.
func (r *run) healthRows(ctx context.Context, d *director, server string) ([]string, error) {
	out, err := r.cluster.lvsctl(ctx, d, "status")
	if err != nil {
		return nil, err
	}
	var rows []string
	in := false
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 2 && f[0] == "web-nat" && f[1] == server:
			in = true
			rows = append(rows, strings.Join(f, " "))
		case in && len(f) > 0 && f[0] == "check":
			rows = append(rows, strings.Join(f, " "))
		default:
			in = false
		}
	}
	return rows, nil
}
