package console

import (
	"context"
	"net/http"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// overviewData is the cluster at a glance.
type overviewData struct {
	Status *shoalv1.GetClusterStatusResponse
	// Voters and Up count the voting members and those that answered;
	// Quorum says whether Up is a majority.
	Voters, Up int
	Quorum     bool
}

func (c *Console) loadOverview(ctx context.Context, u *user) (*overviewData, error) {
	st, err := c.cluster.GetClusterStatus(u.ctx(ctx), &shoalv1.GetClusterStatusRequest{})
	if err != nil {
		return nil, err
	}
	d := &overviewData{Status: st}
	for _, m := range st.GetMembers() {
		if m.GetSuffrage() != "voter" {
			continue
		}
		d.Voters++
		if m.GetError() == "" {
			d.Up++
		}
	}
	d.Quorum = d.Up > d.Voters/2
	return d, nil
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, u *user) {
	d, err := c.loadOverview(r.Context(), u)
	if err != nil {
		c.fail(w, u, err)
		return
	}
	c.render(w, http.StatusOK, "overview.html", view{Title: "Overview", Page: "overview", Node: c.o.Node, U: u, D: d})
}

// servicesData is every virtual service with this node's view of its
// real servers.
type servicesData struct {
	Serial   uint64
	Services []serviceRow
	// Health is false when this node runs no health checks.
	Health bool
	// Only is the one service shown ("" for all). Summary says the
	// services are too many real servers for one page (summaryAbove):
	// each is a line with its counts, and a link to its own page.
	Only    string
	Summary bool
}

// summaryAbove is how many real servers the services page shows in
// full; beyond it, a page would pass ~100 KB and the page lists the
// services alone.
const summaryAbove = 100

type serviceRow struct {
	S    *shoalv1.VirtualService
	IPVS *shoalv1.IpvsService
	Real []realRow
	// Up and Active count the real servers this node finds up, and
	// those enabled.
	Up, Active int
}

type realRow struct {
	R      *shoalv1.RealServer
	Key    string
	Health *shoalv1.RealServerHealth
	Dest   *shoalv1.IpvsDestination
	Rates  []rate
	Now    rate
	// Weight and Active are the configured values with defaults applied.
	Weight uint32
	Active bool
}

func (c *Console) loadServices(ctx context.Context, u *user, only string) (*servicesData, error) {
	c.looked()
	ls, err := c.lb.ListVirtualServices(u.ctx(ctx), &shoalv1.ListVirtualServicesRequest{})
	if err != nil {
		return nil, err
	}
	ns, err := c.node.GetNodeStatus(u.ctx(ctx), &shoalv1.GetNodeStatusRequest{})
	if err != nil {
		return nil, err
	}
	st := ns.GetStatus()
	health := map[string]*shoalv1.RealServerHealth{}
	for _, h := range st.GetHealth() {
		health[destKey(h.GetService(), h.GetAddress(), h.GetPort())] = h
	}
	ipvs := map[string]*shoalv1.IpvsService{}
	dests := map[string]*shoalv1.IpvsDestination{}
	for _, s := range st.GetIpvs() {
		ipvs[s.GetName()] = s
		for _, dst := range s.GetDestinations() {
			dests[destKey(s.GetName(), dst.GetAddress(), dst.GetPort())] = dst
		}
	}
	d := &servicesData{Serial: ls.GetSerial(), Health: st.GetDataplane() != "none", Only: only}
	total := 0
	for _, s := range ls.GetServices() {
		total += len(s.GetRealServers())
	}
	d.Summary = only == "" && total > summaryAbove
	for _, s := range ls.GetServices() {
		if only != "" && s.GetName() != only {
			continue
		}
		row := serviceRow{S: s, IPVS: ipvs[s.GetName()]}
		for _, rs := range s.GetRealServers() {
			key := config.RealServerKey(s, rs)
			k := s.GetName() + "/" + key
			rr := realRow{R: rs, Key: key, Health: health[k], Dest: dests[k], Rates: c.rates.get(k),
				Weight: rs.GetWeight(), Active: rs.Active == nil || rs.GetActive()}
			if rs.Weight == nil {
				rr.Weight = 1
			}
			if n := len(rr.Rates); n > 0 {
				rr.Now = rr.Rates[n-1]
			}
			if rr.Health.GetState() == "up" {
				row.Up++
			}
			if rr.Active {
				row.Active++
			}
			if !d.Summary {
				row.Real = append(row.Real, rr)
			}
		}
		d.Services = append(d.Services, row)
	}
	if only != "" && len(d.Services) == 0 {
		return nil, status.Errorf(codes.NotFound, "services[%s]: no such virtual service", only)
	}
	return d, nil
}

func (c *Console) services(w http.ResponseWriter, r *http.Request, u *user) {
	d, err := c.loadServices(r.Context(), u, r.URL.Query().Get("service"))
	if err != nil {
		c.fail(w, u, err)
		return
	}
	c.render(w, http.StatusOK, "services.html", view{Title: "Services", Page: "services", Node: c.o.Node, U: u, D: d})
}

func (c *Console) history(w http.ResponseWriter, r *http.Request, u *user) {
	h, err := c.cfg.ListHistory(u.ctx(r.Context()), &shoalv1.ListHistoryRequest{Limit: 200})
	if err != nil {
		c.fail(w, u, err)
		return
	}
	c.render(w, http.StatusOK, "history.html", view{Title: "History", Node: c.o.Node, U: u, D: h})
}

// historyEntryData is one change, and, for an admin, the preview of
// rolling back to the configuration it produced.
type historyEntryData struct {
	E        *shoalv1.GetHistoryEntryResponse
	Rollback *shoalv1.RollbackConfigResponse
	// RollbackErr says why no rollback can be previewed.
	RollbackErr string
	// Serial is the current serial the rollback would apply on.
	Serial    uint64
	RequestID string
}

func (c *Console) historyEntry(w http.ResponseWriter, r *http.Request, u *user) {
	serial, err := strconv.ParseUint(r.PathValue("serial"), 10, 64)
	if err != nil {
		c.fail(w, u, status.Errorf(codes.InvalidArgument, "serial: %q is not a serial number", r.PathValue("serial")))
		return
	}
	e, err := c.cfg.GetHistoryEntry(u.ctx(r.Context()), &shoalv1.GetHistoryEntryRequest{Serial: serial})
	if err != nil {
		c.fail(w, u, err)
		return
	}
	d := &historyEntryData{E: e}
	if u.Can("admin") {
		// A dry run is the preview: what a rollback to this serial's
		// configuration would change now, and on which serial. The page
		// lists every change (and offers the button only when there is
		// one), so it asks for them however many.
		rb, err := c.cfg.RollbackConfig(u.ctx(r.Context()), &shoalv1.RollbackConfigRequest{Serial: serial, DryRun: true, Full: true})
		if err != nil {
			d.RollbackErr = status.Convert(err).Message()
		} else {
			d.Rollback, d.Serial, d.RequestID = rb, rb.GetSerial(), newRequestID()
		}
	}
	c.render(w, http.StatusOK, "entry.html", view{Title: "Change " + r.PathValue("serial"), Node: c.o.Node, U: u, D: d})
}
