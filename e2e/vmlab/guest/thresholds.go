package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/moby/ipvs"
	"google.golang.org/protobuf/proto"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// Thresholds of the scenario: rs1 takes no new connection while it holds
// limitUpper, and takes them again below limitLower. Between the two it
// stays out: the kernel's hysteresis, not just a cap.
const (
	limitPort  = 8080
	limitUpper = 3
	limitLower = 2
	limitKey   = "tcp 10.0.1.10:8080"
	limitRS1   = "10.0.2.11:80"
)

// thresholds: a real server's upper_threshold, set with lvsctl, reaches
// every kernel as an edit of the destination; the leader's IPVS then sends
// no new connection to it while it holds upper_threshold connections, and
// sends it new ones again once it holds fewer than lower_threshold.
//
// It uses a service of its own (the NAT VIP on port 8080) so that the
// connections earlier scenarios left in TIME_WAIT, which the kernel counts
// against a destination of theirs, do not count here.
func thresholds(r *run) error {
	ctx, cancel := context.WithTimeout(r.ctx, 4*time.Minute)
	defer cancel()
	cfg := labConfig()
	limit := proto.Clone(cfg.Services[0]).(*shoalv1.VirtualService)
	limit.Name, limit.Port = "web-limit", limitPort
	for _, rs := range limit.RealServers {
		rs.Port = 80
	}
	cfg.Services = append(cfg.Services, limit)
	if _, err := r.cluster.apply(ctx, cfg); err != nil {
		return err
	}
	// Whatever happens, the lab goes back to its own configuration.
	defer func() {
		if _, err := r.cluster.apply(r.ctx, labConfig()); err != nil {
			rep.logf("thresholds: restoring the lab config: %v", err)
		}
	}()
	d := r.cluster.ds[0]
	if _, err := r.cluster.lvsctl(ctx, d, "server", "update", "web-limit", limitRS1,
		"--upper-threshold", fmt.Sprint(limitUpper), "--lower-threshold", fmt.Sprint(limitLower)); err != nil {
		return err
	}
	if err := r.waitKernels(60*time.Second, func(dd *director, t table) error {
		if len(t.dests(limitKey)) != 2 {
			return fmt.Errorf("%s kernel: %s has %v", dd.name, limitKey, t.dests(limitKey))
		}
		x, err := limitDest(dd.machine)
		if err != nil {
			return err
		}
		if x.UpperThreshold != limitUpper || x.LowerThreshold != limitLower {
			return fmt.Errorf("%s kernel: rs1 thresholds %d/%d", dd.name, x.UpperThreshold, x.LowerThreshold)
		}
		return nil
	}); err != nil {
		return err
	}
	leader, err := r.cluster.leader(ctx, 60*time.Second)
	if err != nil {
		return err
	}

	// Open held connections until rs1 holds limitUpper of them; rr sends
	// every other one to rs2, whose connections are held too.
	addr := net.JoinHostPort(natVIP, fmt.Sprint(limitPort))
	var onRS1, onRS2 []*heldConn
	defer func() {
		for _, h := range append(onRS1, onRS2...) {
			h.close()
		}
	}()
	for i := 0; len(onRS1) < limitUpper; i++ {
		if i >= 2*limitUpper+2 {
			return fmt.Errorf("%d connections, only %d on rs1", i, len(onRS1))
		}
		h, err := r.hold(ctx, addr)
		if err != nil {
			return err
		}
		if h.server == "rs1" {
			onRS1 = append(onRS1, h)
		} else {
			onRS2 = append(onRS2, h)
		}
	}
	x, err := limitDest(leader.machine)
	if err != nil {
		return err
	}
	rep.info("thresholds", "rs1 upper %d lower %d holds %d; leader %s's kernel counts %d active %d inactive",
		limitUpper, limitLower, len(onRS1), leader.name, x.ActiveConnections, x.InactiveConnections)

	const n = 8
	counts, err := r.limitRequests(ctx, n)
	if err != nil {
		return err
	}
	rep.info("thresholds", "rs1 at its upper threshold (%d): %d new requests: %s", limitUpper, n, fmtCounts(counts))
	if counts["rs1"] != 0 || counts["rs2"] != n {
		return fmt.Errorf("rs1 at its upper threshold still got new connections: %s", fmtCounts(counts))
	}

	// One connection fewer: limitUpper-1 is not below limitLower, so rs1
	// stays out.
	if err := r.release(ctx, leader, &onRS1, limitUpper-1); err != nil {
		return err
	}
	counts, err = r.limitRequests(ctx, n)
	if err != nil {
		return err
	}
	rep.info("thresholds", "rs1 down to %d (not below lower %d): %d new requests: %s", limitUpper-1, limitLower, n, fmtCounts(counts))
	if counts["rs1"] != 0 {
		return fmt.Errorf("rs1 got new connections at %d, not below its lower threshold %d: %s", limitUpper-1, limitLower, fmtCounts(counts))
	}

	// Below the lower threshold: rs1 takes new connections again, until
	// (they end in TIME_WAIT, which counts) it holds limitUpper once more.
	if err := r.release(ctx, leader, &onRS1, limitLower-1); err != nil {
		return err
	}
	counts, err = r.limitRequests(ctx, n)
	if err != nil {
		return err
	}
	rep.info("thresholds", "rs1 down to %d (below lower %d): %d new requests: %s", limitLower-1, limitLower, n, fmtCounts(counts))
	if counts["rs1"] == 0 {
		return fmt.Errorf("rs1 below its lower threshold got no new connection: %s", fmtCounts(counts))
	}
	if max := limitUpper - (limitLower - 1); counts["rs1"] > max {
		return fmt.Errorf("rs1 got %d new connections, more than the %d that take it back to its upper threshold", counts["rs1"], max)
	}
	return nil
}

// limitRequests sends n requests to the threshold service, each on a new
// connection, and counts who answered; every one must be answered.
func (r *run) limitRequests(ctx context.Context, n int) (map[string]int, error) {
	res, err := r.lab.client.get(ctx, fmt.Sprintf("http://%s:%d/", natVIP, limitPort), n)
	if err != nil {
		return nil, err
	}
	counts, errs := tally(res)
	if len(errs) > 0 {
		return nil, fmt.Errorf("%d requests failed: %v", len(errs), errs)
	}
	return counts, nil
}

// release resets held connections to rs1 until it holds keep, then waits
// until the leader's kernel has forgotten them (its CLOSE timeout): the
// kernel re-judges the overload only when a connection entry goes.
func (r *run) release(ctx context.Context, leader *director, held *[]*heldConn, keep int) error {
	for len(*held) > keep {
		h := (*held)[len(*held)-1]
		*held = (*held)[:len(*held)-1]
		h.close()
	}
	start := time.Now()
	err := eventually(ctx, 60*time.Second, func() error {
		x, err := limitDest(leader.machine)
		if err != nil {
			return err
		}
		if total := x.ActiveConnections + x.InactiveConnections; total != keep {
			return fmt.Errorf("leader's kernel: rs1 has %d active %d inactive connections, want %d in all", x.ActiveConnections, x.InactiveConnections, keep)
		}
		return nil
	})
	if err == nil {
		rep.info("thresholds", "the kernel forgot the reset connections %.1fs after the reset", time.Since(start).Seconds())
	}
	return err
}

// limitDest reads rs1's destination of the threshold service from m's kernel.
func limitDest(m *machine) (*ipvs.Destination, error) {
	h, err := ipvs.New(m.nsPath())
	if err != nil {
		return nil, err
	}
	defer h.Close()
	svc := &ipvs.Service{Address: net.ParseIP(natVIP), Protocol: syscall.IPPROTO_TCP, Port: limitPort, AddressFamily: syscall.AF_INET}
	ds, err := h.GetDestinations(svc)
	if err != nil {
		return nil, fmt.Errorf("%s: destinations of %s: %w", m.name, limitKey, err)
	}
	for _, d := range ds {
		if net.JoinHostPort(d.Address.String(), fmt.Sprint(d.Port)) == limitRS1 {
			return d, nil
		}
	}
	return nil, fmt.Errorf("%s: %s has no %s", m.name, limitKey, limitRS1)
}

// heldConn is a `hold ADDR rst` client on the lab's client machine: one
// established connection that ends with a reset when closed.
type heldConn struct {
	server string
	stdin  io.WriteCloser
	wait   func() error
}

func (h *heldConn) close() {
	h.stdin.Close()
	h.wait()
}

func (r *run) hold(ctx context.Context, addr string) (*heldConn, error) {
	cmd := execCommand(ctx, "/init", "hold", addr, "rst")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := r.lab.client.start(cmd); err != nil {
		return nil, err
	}
	h := &heldConn{stdin: stdin, wait: cmd.Wait}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		h.close()
		return nil, fmt.Errorf("held connection's client ended: %v", lines.Err())
	}
	name, ok := strings.CutPrefix(lines.Text(), "OK ")
	if !ok {
		h.close()
		return nil, errors.New(lines.Text())
	}
	h.server = name
	return h, nil
}
