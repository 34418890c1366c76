package main

import (
	"context"
	"fmt"
	"time"

	"github.com/shoal-lb/shoal/migrate"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// cutOverLVSCF is the lab's NAT service as a Piranha site would have it:
// nanny's send/expect check with reentry = 15, the case issue 23 measured
// at 16-18 s without a real server after the import.
const cutOverLVSCF = `serial_no = 1
service = lvs
network = nat
nat_router = 10.0.2.254 eth1
virtual web-nat {
	active = 1
	address = 10.0.1.10 eth0
	port = 80
	send = "GET / HTTP/1.0\r\n\r\n"
	expect = "HTTP"
	scheduler = rr
	protocol = tcp
	timeout = 6
	reentry = 15
	server rs1 {
		address = 10.0.2.11
		active = 1
		weight = 1
	}
	server rs2 {
		address = 10.0.2.12
		active = 1
		weight = 1
	}
}
`

// cutOver: web-nat is taken out, then comes back as the import of an
// lvs.cf with reentry = 15. Servers shoal has not checked yet go in on
// their first passing check, so every director's kernel has both within
// a check or two, not after reentry, and the VIP answers.
func cutOver(r *run) error {
	ctx, cancel := context.WithTimeout(r.ctx, 3*time.Minute)
	defer cancel()
	res, err := migrate.Import([]byte(cutOverLVSCF), migrate.Options{Format: migrate.FormatLVSCF})
	if err != nil {
		return fmt.Errorf("import the lvs.cf: %w", err)
	}
	var imported *shoalv1.VirtualService
	for _, s := range res.Config.GetServices() {
		if s.GetName() == "web-nat" {
			imported = s
		}
	}
	if imported == nil || imported.GetHealthCheck().GetReentry().AsDuration() != 15*time.Second || imported.GetHealthCheck().GetInitiallyUp() {
		return fmt.Errorf("the import did not give web-nat a check with reentry 15s that starts down: %v", imported)
	}
	defer func() {
		if _, err := r.cluster.apply(r.ctx, labConfig()); err != nil {
			rep.logf("cutover: restoring the lab config: %v", err)
		}
	}()

	without := labConfig()
	without.Services = without.Services[1:]
	if without.Services[0].GetName() != "web-dr" {
		return fmt.Errorf("lab config changed: %s after web-nat", without.Services[0].GetName())
	}
	if _, err := r.cluster.apply(ctx, without); err != nil {
		return err
	}
	if err := r.waitKernels(60*time.Second, func(d *director, t table) error {
		if _, ok := t[natKey]; ok {
			return fmt.Errorf("%s kernel still has web-nat", d.name)
		}
		return nil
	}); err != nil {
		return err
	}

	with := labConfig()
	imported.Vip.Interface = with.Services[0].GetVip().GetInterface()
	with.Services[0] = imported
	applied := time.Now()
	if _, err := r.cluster.apply(ctx, with); err != nil {
		return err
	}
	if err := r.waitKernels(60*time.Second, func(d *director, t table) error {
		ds := t.dests(natKey)
		if ds["10.0.2.11:80"] != "nat w1" || ds["10.0.2.12:80"] != "nat w1" {
			return fmt.Errorf("%s kernel: web-nat has %v", d.name, ds)
		}
		return nil
	}); err != nil {
		return err
	}
	in := time.Since(applied)
	got, err := r.lab.client.get(ctx, "http://"+natVIP+"/", 10)
	if err != nil {
		return err
	}
	counts, errs := tally(got)
	rep.info("cutover", "both real servers of the imported web-nat (reentry 15s) in every director's IPVS %.1fs after the apply; then %d of 10 requests answered: %s",
		in.Seconds(), 10-len(errs), fmtCounts(counts))
	if len(errs) > 0 {
		return fmt.Errorf("%d requests through the VIP failed after the cut-over: %v", len(errs), errs)
	}
	// Polled every 0.5 s per director under emulation; reentry would be 15 s.
	if in > 10*time.Second {
		return fmt.Errorf("the imported servers took %v to go in: reentry held them back", in)
	}
	return nil
}
