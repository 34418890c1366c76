package dataplane

import (
	"net/netip"
	"sort"
	"strings"

	"github.com/moby/ipvs"
	"google.golang.org/protobuf/types/known/timestamppb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// Status fills the dataplane part of a node's status: mode, the addresses
// held, the last reconcile, the kernel's IPVS table with statistics
// (ipvsadm -Ln --stats), entries of configured services named, the sync
// daemons running and the connection count (ipvsadm's ActiveConn and
// InActConn summed over every destination).
func (d *Dataplane) Status(st *shoalv1.NodeStatus) {
	names := d.summary(st)
	st.Ipvs, st.Connections = nil, nil
	if d.o.IPVS == nil {
		return
	}
	d.table(st, names)
}

// Summary is Status without the kernel's IPVS table and the connection
// counts, which take a netlink dump per service: what stays costs the same
// at any table size.
func (d *Dataplane) Summary(st *shoalv1.NodeStatus) {
	d.summary(st)
	st.Ipvs, st.Connections = nil, nil
}

// summary fills all but the IPVS table and returns the names of the
// configured IPVS services, for table.
func (d *Dataplane) summary(st *shoalv1.NodeStatus) map[string]string {
	d.mu.Lock()
	st.Dataplane = string(d.o.Mode)
	st.HoldsVips = len(d.held) > 0
	st.Addresses = st.Addresses[:0]
	for _, h := range d.held {
		st.Addresses = append(st.Addresses, h.addrRef.String())
	}
	sort.Strings(st.Addresses)
	st.ReconciledSerial = d.reconciledSerial
	st.ReconcileError = d.reconcileErr
	for _, e := range []string{d.addrErr, d.renewErr, d.syncErr} {
		if e != "" && !strings.Contains(st.ReconcileError, e) {
			if st.ReconcileError != "" {
				st.ReconcileError += "; "
			}
			st.ReconcileError += e
		}
	}
	st.LastReconcile = nil
	if !d.lastReconcile.IsZero() {
		st.LastReconcile = timestamppb.New(d.lastReconcile)
	}
	names := d.names
	d.mu.Unlock()

	st.SyncDaemons = nil
	if d.o.SyncDaemons != nil {
		if ds, err := d.o.SyncDaemons.Daemons(); err == nil {
			for _, sd := range ds {
				out := &shoalv1.SyncDaemon{State: sd.State.String(), Interface: sd.Interface, SyncId: sd.SyncID,
					MaxLen: uint32(sd.MaxLen), Port: uint32(sd.Port), Ttl: uint32(sd.TTL)}
				if sd.Group.IsValid() {
					out.Group = sd.Group.String()
				}
				st.SyncDaemons = append(st.SyncDaemons, out)
			}
		} else if st.ReconcileError == "" {
			st.ReconcileError = "list sync daemons: " + err.Error()
		}
	}
	return names
}

// table fills the kernel's IPVS table and the connection counts.
func (d *Dataplane) table(st *shoalv1.NodeStatus, names map[string]string) {
	var conns connCounts
	svcs, err := d.o.IPVS.GetServices()
	if err != nil {
		if st.ReconcileError == "" {
			st.ReconcileError = "list IPVS services: " + err.Error()
		}
		return
	}
	for _, s := range svcs {
		key := serviceKey(s)
		out := &shoalv1.IpvsService{
			Name:      names[key],
			Fwmark:    s.FWMark,
			Scheduler: s.SchedName,
			Flags:     serviceFlagNames(s.Flags),
			Stats:     serviceStats(s.Stats),
		}
		if s.FWMark == 0 {
			a, _ := netip.AddrFromSlice(s.Address)
			out.Address = a.Unmap().String()
			out.Port = uint32(s.Port)
			out.Protocol = protocolName(s.Protocol)
		}
		if s.Flags&svcFlagPersistent != 0 {
			out.PersistenceTimeout = s.Timeout
			out.PersistencePrefix = persistencePrefix(s)
		}
		dests, err := d.o.IPVS.GetDestinations(s)
		if err == nil {
			sort.Slice(dests, func(i, j int) bool { return destKey(dests[i]) < destKey(dests[j]) })
			for _, dst := range dests {
				conns.add(dst)
				a, _ := netip.AddrFromSlice(dst.Address)
				out.Destinations = append(out.Destinations, &shoalv1.IpvsDestination{
					Address:             a.Unmap().String(),
					Port:                uint32(dst.Port),
					Forward:             forwardName(dst.ConnectionFlags),
					Weight:              uint32(dst.Weight),
					ActiveConnections:   uint32(dst.ActiveConnections),
					InactiveConnections: uint32(dst.InactiveConnections),
					Stats:               serviceStats(ipvs.SvcStats(dst.Stats)),
					UpperThreshold:      dst.UpperThreshold,
					LowerThreshold:      dst.LowerThreshold,
				})
			}
		}
		st.Ipvs = append(st.Ipvs, out)
	}
	st.Connections = &shoalv1.IpvsConnections{Active: conns.active, Inactive: conns.inactive}
	sort.Slice(st.Ipvs, func(i, j int) bool {
		a, b := st.Ipvs[i], st.Ipvs[j]
		if a.Fwmark != b.Fwmark {
			return a.Fwmark < b.Fwmark
		}
		if a.Address != b.Address {
			return a.Address < b.Address
		}
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		return a.Protocol < b.Protocol
	})
}

// serviceFlagNames spells service flags as ipvsadm does.
func serviceFlagNames(f uint32) []string {
	var out []string
	for _, n := range []struct {
		bit  uint32
		name string
	}{
		{svcFlagPersistent, "persistent"},
		{svcFlagOnePkt, "ops"},
		{svcFlagSchedSH1, "sh-fallback"},
		{svcFlagSchedSH2, "sh-port"},
		{svcFlagSchedSH3, "flag-3"},
	} {
		if f&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

func serviceStats(s ipvs.SvcStats) *shoalv1.IpvsStats {
	return &shoalv1.IpvsStats{
		Connections: uint64(s.Connections),
		PacketsIn:   uint64(s.PacketsIn),
		PacketsOut:  uint64(s.PacketsOut),
		BytesIn:     s.BytesIn,
		BytesOut:    s.BytesOut,
	}
}

// Ready says whether this node forwards as configured: it has reconciled
// IPVS at least once and the last reconcile succeeded. A bgp-mode router
// that is not ready withdraws its routes, so ECMP sends flows elsewhere.
func (d *Dataplane) Ready() (bool, string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.lastReconcile.IsZero():
		return false, "not reconciled yet"
	case d.reconcileErr != "":
		return false, d.reconcileErr
	}
	return true, ""
}
