package dataplane

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"

	"github.com/moby/ipvs"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// reconcileIPVS makes the kernel's IPVS table equal to config ⊕ health.
//
// It first brings the desired table up to date (desiredState.update,
// which costs the services that changed). With compareChange or
// compareSweep and the outcome of the previous reconcile known, it then
// applies only what changed (applyChanges): a weight change is one
// netlink call, with no dump of the kernel's table, whatever its size;
// a sweep then leaves this period's part of the table to sweepSlice.
// Otherwise, or when a change fails, it lists the kernel's whole table and
// applies the difference, which also repairs whatever was changed behind
// shoal's back. It goes on after a failed change so that one bad entry
// does not hold the others back; the errors are returned together.
// Called with recMu held.
func (d *Dataplane) reconcileIPVS(cfg *shoalv1.Config, how compare) error {
	// Read before the verdicts are: a verdict that changes from here on
	// bumps it again and kicks another reconcile.
	gen := d.healthGen.Load()
	// A whole comparison asks about every real server again; a sweep
	// does, a part at a time (sweepSlice).
	sameHealth := how != compareWhole && d.want.cfg != nil && gen == d.wantHealthGen
	changes, derr := d.want.update(cfg, d.o.Health, sameHealth)
	d.wantHealthGen = gen
	ds := &d.want
	var errs []error
	if derr != nil {
		errs = append(errs, derr)
	}
	d.countRealServers()
	d.renamed(changes)

	if config.UsesBGP(cfg) {
		errs = append(errs, d.syncSloppy())
	}
	if how != compareWhole && d.known {
		err := d.applyChanges(changes)
		if err == nil {
			if how == compareSweep {
				d.todo, d.sentinels = d.sweepKeys(ds)
			}
			return joinErrors(errs)
		}
		// The kernel refused a change, or an entry was not where the last
		// reconcile left it: what the kernel holds is no longer known, so
		// compare all of it now.
		fullResyncTotal.WithLabelValues("change_failed").Inc()
		d.log.Info("ipvs change failed; comparing the whole table", "err", err)
	} else {
		reason := "periodic"
		if !d.known {
			reason = "unknown_state"
		}
		fullResyncTotal.WithLabelValues(reason).Inc()
	}
	d.known = false
	d.todo, d.sentinels = nil, nil // all of it now
	if err := d.resyncIPVS(ds, func(string) bool { return true }); err != nil {
		return joinErrors(append(errs, err))
	}
	// Only a clean comparison makes the desired state what the kernel
	// holds; after a failure the next change compares all again.
	d.known = true
	d.appliedTimeouts = ds.timeouts
	return joinErrors(errs)
}

// countRealServers sets the real-server gauges from the desired table.
func (d *Dataplane) countRealServers() {
	for _, state := range []realServerState{rsUp, rsQuiesced, rsDown, rsInactive, rsSorry, rsDisplace, rsUnchecked} {
		realServers.WithLabelValues(string(state)).Set(float64(d.want.counts[state]))
	}
}

// renamed keeps Status's names of the services in step with changes:
// the map is made again only when a service came, went or was renamed (a
// copy, as Status reads it without recMu).
func (d *Dataplane) renamed(changes []serviceChange) {
	d.mu.Lock()
	defer d.mu.Unlock()
	same := true
	for _, c := range changes {
		n, ok := d.names[c.key]
		if c.now == nil && ok || c.now != nil && (!ok || n != c.now.name) {
			same = false
			break
		}
	}
	if same {
		return
	}
	names := maps.Clone(d.names)
	for _, c := range changes {
		if c.now == nil {
			delete(names, c.key)
		} else {
			names[c.key] = c.now.name
		}
	}
	d.names = names
}

// sweepEntries is how many entries (services and destinations) of the
// desired table one periodic resync compares, at least: a larger table is
// compared in parts, one each period, so that each costs about the same.
// Reading a service and listing its destinations are a netlink round trip
// and a dump (the kernel has no dump of every destination), so the cost
// follows services and destinations both. Up to 5,000 entries (500
// services of 9 real servers) the whole table is compared every period; at
// 10,000 services × 10 in 22 parts, every one within 22 periods (under 4
// minutes at 10 s). That is the trade: a period of 5,000 entries costs
// about 0.3 ms of CPU per 100 entries on a 2-core host (docs/scale.md,
// "The idle resync, round five"), so an idle 10,000-service table costs
// well under 1% of a core, and an entry changed by hand waits longer; a
// flush is still found at the next period (sweepSentinels).
const sweepEntries = 5000

// sweepSlice is how many services of a part sweepSlice compares at a
// time, holding recMu: between two slices a change goes first, so that a
// change waits for one slice of the resync, not a part of the table.
const sweepSlice = 32

// sweepSentinels is how many services outside this period's part the
// periodic resync reads each period: a flush (ipvsadm -C) or anything
// else that takes many services away is found by any of them, and then
// every service is listed and compared at once.
const sweepSentinels = 8

// sweepKeys lists the services whose destinations this periodic resync
// compares, those whose key hashes to this period's part, so that each
// part is compared once in every sweepParts periods while the table's
// size stays in one band; and a few others, which are only looked for.
func (d *Dataplane) sweepKeys(ds *desiredState) (part, sentinels []string) {
	parts := d.sweepParts(ds)
	resyncParts.Set(float64(parts))
	this := uint32(d.sweeps % uint64(parts))
	d.sweeps++
	for key := range ds.services {
		h := uint32(2166136261) // FNV-1a, without hash/fnv's allocations
		for i := 0; i < len(key); i++ {
			h = (h ^ uint32(key[i])) * 16777619
		}
		if h%parts == this {
			part = append(part, key)
		} else if len(sentinels) < sweepSentinels {
			// Map order: other services each period.
			sentinels = append(sentinels, key)
		}
	}
	slices.Sort(part) // an order of repairs that does not depend on the map
	return part, sentinels
}

// sweepParts is how many parts the periodic resync compares ds in.
func (d *Dataplane) sweepParts(ds *desiredState) uint32 {
	return uint32(max(1, (ds.entries+d.sweepEntries-1)/d.sweepEntries))
}

// sweep is the periodic resync: what changed applied (reconcile with
// compareSweep), then this period's part of the table compared with the
// kernel a slice at a time, its verdicts asked again. between runs between
// two slices, without recMu (Run applies a waiting change there); it
// returns false to stop.
func (d *Dataplane) sweep(between func() bool) error {
	// An error here (a service that does not map, an address) leaves the
	// part to compare all the same, as long as the kernel's state is known.
	first := d.reconcile(compareSweep)
	for {
		done, err := d.sweepSlice()
		if done || err != nil {
			return joinErrors([]error{first, err})
		}
		if between != nil && !between() {
			return first
		}
	}
}

// sweepSlice compares the next slice of this period's part with the
// kernel, the sentinels first, and says whether the part is done. The
// health checker is asked again about the slice's real servers first. A
// service missing, changed or with other destinations is repaired; when a
// sentinel is missing every service is listed and compared (resyncIPVS).
// An error leaves what the kernel holds unknown, as a failed reconcile
// does: the next change compares everything.
func (d *Dataplane) sweepSlice() (done bool, err error) {
	if d.o.Mode == ModeNone || d.o.IPVS == nil {
		return true, nil
	}
	d.recMu.Lock()
	defer d.recMu.Unlock()
	if !d.known || (d.todo == nil && d.sentinels == nil) {
		// A whole comparison ran or is due, or nothing is left.
		d.todo, d.sentinels = nil, nil
		return true, nil
	}
	ds := &d.want
	var errs []error
	if s := d.sentinels; s != nil {
		d.sentinels = nil
		for _, key := range s {
			want := ds.services[key]
			if want == nil {
				continue // gone since, by a change
			}
			if _, err := d.o.IPVS.GetService(want.svc); err != nil {
				if !absent(err) {
					errs = append(errs, fmt.Errorf("read IPVS service %s: %w", key, err))
					break
				}
				// Many services may be gone (a flush): list them all.
				fullResyncTotal.WithLabelValues("service_missing").Inc()
				d.log.Info("ipvs service missing; comparing every service", "entry", key)
				part := map[string]bool{}
				for _, k := range d.todo {
					part[k] = true
				}
				d.todo = nil
				errs = append(errs, d.resyncIPVS(ds, func(k string) bool { return part[k] }))
				break
			}
		}
	}
	n := min(sweepSlice, len(d.todo))
	refreshed := false
	for _, key := range d.todo[:n] {
		want := ds.services[key]
		if want == nil {
			continue // gone since, by a change
		}
		if ds.refresh(want.vs, d.o.Health) {
			want, refreshed = ds.services[key], true
		}
		errs = append(errs, d.compareService(key, want))
	}
	if refreshed {
		d.countRealServers()
	}
	d.todo = d.todo[n:]
	if len(d.todo) == 0 {
		d.todo = nil
		d.countConns(ds)
		// Timeouts set by hand (ipvsadm --set) are repaired each period.
		errs = append(errs, d.syncTimeouts(ds.timeouts))
	}
	err = joinErrors(errs)
	if err != nil {
		d.known = false
		d.todo = nil
		d.sweepFailed(err)
	}
	return d.todo == nil, err
}

// absent says whether err is the kernel's answer for a service it does not
// have.
func absent(err error) bool {
	return errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENOENT)
}

// compareService reads one service of the desired table from the kernel
// and makes it and its destinations as want says: added with them when
// it is missing.
func (d *Dataplane) compareService(key string, want *desiredService) error {
	k, err := d.o.IPVS.GetService(want.svc)
	if err != nil {
		if !absent(err) {
			return fmt.Errorf("read IPVS service %s: %w", key, err)
		}
		if !d.owned[key] {
			d.owned[key] = true
			if err := d.ownedChanged(); err != nil {
				return err
			}
		}
		return d.addServices([]string{key}, &d.want)
	}
	if serviceDiffers(k, want.svc) {
		if err := d.o.IPVS.UpdateService(want.svc); err != nil {
			return d.ipvsErr("update_service", key, err)
		}
		d.ipvsDone("update_service", key, want.name)
	}
	if err := d.syncDestinations(key, want); err != nil {
		return err
	}
	if want.ordered {
		return d.orderDestinations(key, want)
	}
	return nil
}

// sweepFailed records a slice's failure as a reconcile's is recorded.
func (d *Dataplane) sweepFailed(err error) {
	reconcileTotal.WithLabelValues("error").Inc()
	d.mu.Lock()
	d.reconcileErr = err.Error()
	d.mu.Unlock()
	d.log.Warn("resync incomplete", "err", err)
}

// resyncIPVS lists the kernel's IPVS services and the destinations of those
// part says, and makes them equal to ds.
func (d *Dataplane) resyncIPVS(ds *desiredState, part func(key string) bool) error {
	var errs []error
	kernel, err := d.o.IPVS.GetServices()
	if err != nil {
		return fmt.Errorf("list IPVS services: %w", err)
	}
	defer d.countConns(ds)
	changedOwned := false
	inKernel := make(map[string]bool, len(kernel))
	for _, k := range kernel {
		key := serviceKey(k)
		inKernel[key] = true
		want, ok := ds.services[key]
		if !ok {
			if !d.owned[key] {
				continue // not ours, not in our way: leave it alone
			}
			if err := d.o.IPVS.DelService(k); err != nil {
				errs = append(errs, d.ipvsErr("delete_service", key, err))
				continue
			}
			d.ipvsDone("delete_service", key, "")
			delete(d.owned, key)
			changedOwned = true
			continue
		}
		takenOver := !d.owned[key]
		if takenOver {
			// Somebody else's entry where a configured service must be:
			// the configuration wins, and from now on it is ours.
			d.owned[key] = true
			changedOwned = true
			d.ipvsDone("take_over_service", key, want.name)
		}
		differs := serviceDiffers(k, want.svc)
		if differs {
			if err := d.o.IPVS.UpdateService(want.svc); err != nil {
				errs = append(errs, d.ipvsErr("update_service", key, err))
			} else {
				d.ipvsDone("update_service", key, want.name)
			}
		}
		if !part(key) && !differs && !takenOver {
			// Another period's part; a service changed by hand, or
			// taken over, has its destinations compared now.
			continue
		}
		if err := d.syncDestinations(key, want); err != nil {
			errs = append(errs, err)
		}
		if want.ordered {
			if err := d.orderDestinations(key, want); err != nil {
				errs = append(errs, err)
			}
		}
	}
	var missing []string
	for key := range ds.services {
		if !inKernel[key] {
			missing = append(missing, key)
		}
	}
	slices.Sort(missing) // only them: sorting every key was a tenth of an idle resync
	for _, key := range missing {
		if !d.owned[key] {
			d.owned[key] = true
			changedOwned = true
		}
	}
	if err := d.addServices(missing, ds); err != nil {
		errs = append(errs, err)
	}
	// Forget services that are neither wanted nor in the kernel any more.
	for key := range d.owned {
		if _, ok := ds.services[key]; !ok && !inKernel[key] {
			delete(d.owned, key)
			changedOwned = true
		}
	}
	if err := d.syncTimeouts(ds.timeouts); err != nil {
		errs = append(errs, err)
	}
	if changedOwned {
		if err := d.ownedChanged(); err != nil {
			errs = append(errs, err)
		}
	}
	return joinErrors(errs)
}

// addServices creates services and their destinations (want.keep have no
// verdict yet and stay out until they do): in batches when the kernel
// takes them (IPVSAdder), one call each otherwise. A service's destinations
// are logged at debug level, the service with their number at info: a
// table programmed from empty is one line per service, not per real server.
func (d *Dataplane) addServices(keys []string, ds *desiredState) error {
	var entries []IPVSEntry
	for _, key := range keys {
		want := ds.services[key]
		entries = append(entries, IPVSEntry{Service: want.svc})
		for _, dst := range want.dests {
			entries = append(entries, IPVSEntry{Service: want.svc, Dest: dst})
		}
	}
	var results []error
	if a, ok := d.o.IPVS.(IPVSAdder); ok {
		results = a.Add(entries)
	} else {
		results = make([]error, len(entries))
		for i, e := range entries {
			if e.Dest == nil {
				results[i] = d.o.IPVS.NewService(e.Service)
			} else {
				results[i] = d.o.IPVS.NewDestination(e.Service, e.Dest)
			}
		}
	}
	var errs []error
	i := 0
	for _, key := range keys {
		want := ds.services[key]
		svcErr := results[i]
		i++
		added := 0
		for _, dst := range want.dests {
			what := key + " -> " + destKey(dst)
			switch err := results[i]; {
			case svcErr != nil:
				// The kernel refused the service: its destinations
				// failed with it, and saying so once is enough.
			case err != nil:
				errs = append(errs, d.ipvsErr("add_destination", what, err))
			default:
				added++
				ipvsChangesTotal.WithLabelValues("add_destination", "ok").Inc()
				d.log.Debug("ipvs add_destination", "entry", what, "service", want.name)
			}
			i++
		}
		if svcErr != nil {
			errs = append(errs, d.ipvsErr("add_service", key, svcErr))
			continue
		}
		ipvsChangesTotal.WithLabelValues("add_service", "ok").Inc()
		d.log.Info("ipvs add_service", "entry", key, "service", want.name, "destinations", added)
	}
	return joinErrors(errs)
}

// ownedChanged saves the set of services shoal owns; called with recMu held.
func (d *Dataplane) ownedChanged() error {
	d.mu.Lock()
	d.ownedSnapshot = maps.Clone(d.owned)
	d.mu.Unlock()
	return d.saveState()
}

// applyChanges takes the kernel from the desired table the last
// reconcile left in it to the one changes make of it, without listing the
// kernel's table. It stops at the first failure: the caller then compares
// the whole table, which repairs whatever this left half done. An entry that
// is not where the last reconcile left it (deleted or added by hand) fails
// too, and the periodic resync catches the drift that no change runs into.
func (d *Dataplane) applyChanges(changes []serviceChange) error {
	changedOwned := false
	defer func() {
		if changedOwned {
			if err := d.ownedChanged(); err != nil {
				d.log.Warn("save dataplane state", "err", err)
			}
		}
	}()
	// Sorted for an order of changes that does not depend on map
	// iteration; only the services that changed are there.
	slices.SortFunc(changes, func(a, b serviceChange) int { return strings.Compare(a.key, b.key) })
	// Services gone first: a service that moved (new VIP or port) frees
	// nothing another one needs, but a deleted one takes its destinations
	// with it in one call.
	for _, c := range changes {
		if c.now != nil {
			continue
		}
		if err := d.o.IPVS.DelService(c.was.svc); err != nil && !absent(err) {
			return d.ipvsErr("delete_service", c.key, err)
		}
		d.ipvsDone("delete_service", c.key, c.was.name)
		delete(d.owned, c.key)
		changedOwned = true
	}
	var added []string
	for _, c := range changes {
		switch {
		case c.now == nil:
		case c.was == nil:
			if !d.owned[c.key] {
				d.owned[c.key] = true
				changedOwned = true
			}
			added = append(added, c.key)
		default:
			if err := d.changeService(c.key, c.was, c.now); err != nil {
				return err
			}
		}
	}
	if err := d.addServices(added, &d.want); err != nil {
		return err
	}
	if d.want.timeouts != d.appliedTimeouts {
		if err := d.syncTimeouts(d.want.timeouts); err != nil {
			return err
		}
		d.appliedTimeouts = d.want.timeouts
	}
	return nil
}

// changeService applies the difference between two desired versions of
// one service that the kernel holds as was.
func (d *Dataplane) changeService(key string, was, want *desiredService) error {
	if serviceDiffers(was.svc, want.svc) {
		if err := d.o.IPVS.UpdateService(want.svc); err != nil {
			return d.ipvsErr("update_service", key, err)
		}
		d.ipvsDone("update_service", key, want.name)
	}
	if sameDestinations(was, want) {
		return nil
	}
	if want.ordered || was.ordered {
		// The order of the kernel's list matters (orderDestinations):
		// compare this one service with the kernel.
		if err := d.syncDestinations(key, want); err != nil {
			return err
		}
		if want.ordered {
			return d.orderDestinations(key, want)
		}
		return nil
	}
	before := make(map[string]*ipvs.Destination, len(was.dests))
	for _, c := range was.dests {
		before[destKey(c)] = c
	}
	// Adds and in-place updates first, deletions last, so that a service
	// never passes through an empty state (sorry server in or out).
	for _, w := range want.dests {
		dk := destKey(w)
		what := key + " -> " + dk
		c, ok := before[dk]
		switch {
		case ok && !destinationDiffers(c, w):
		case ok:
			if err := d.o.IPVS.UpdateDestination(want.svc, w); err != nil {
				return d.ipvsErr("update_destination", what, err)
			}
			d.ipvsDone("update_destination", what, want.name)
		default:
			err := d.o.IPVS.NewDestination(want.svc, w)
			if errors.Is(err, syscall.EEXIST) && was.keep[dk] {
				// It had no verdict and was left as the kernel had it.
				err = d.o.IPVS.UpdateDestination(want.svc, w)
			}
			if err != nil {
				return d.ipvsErr("add_destination", what, err)
			}
			d.ipvsDone("add_destination", what, want.name)
		}
	}
	wanted := make(map[string]bool, len(want.dests))
	for _, w := range want.dests {
		wanted[destKey(w)] = true
	}
	gone := func(dst *ipvs.Destination, mayBeAbsent bool) error {
		dk := destKey(dst)
		if wanted[dk] || want.keep[dk] {
			return nil
		}
		err := d.o.IPVS.DelDestination(want.svc, dst)
		if err != nil && mayBeAbsent && errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if err != nil {
			return d.ipvsErr("delete_destination", key+" -> "+dk, err)
		}
		d.ipvsDone("delete_destination", key+" -> "+dk, want.name)
		return nil
	}
	for _, c := range was.dests {
		if err := gone(c, false); err != nil {
			return err
		}
	}
	// Servers that had no verdict were left as the kernel had them: they
	// may or may not be there.
	for _, dk := range slices.Sorted(maps.Keys(was.keep)) {
		if _, ok := before[dk]; ok {
			continue
		}
		ap, err := netip.ParseAddrPort(dk)
		if err != nil {
			continue
		}
		if err := gone(&ipvs.Destination{Address: net.IP(ap.Addr().AsSlice()), Port: ap.Port()}, true); err != nil {
			return err
		}
	}
	return nil
}

// sameDestinations says whether two desired versions of a service want the
// same destinations, the same way, and leave the same ones as they are.
func sameDestinations(a, b *desiredService) bool {
	if len(a.dests) != len(b.dests) || len(a.keep) != len(b.keep) || a.ordered != b.ordered {
		return false
	}
	for i := range a.dests { // both sorted by destKey
		if destKey(a.dests[i]) != destKey(b.dests[i]) || destinationDiffers(a.dests[i], b.dests[i]) {
			return false
		}
	}
	for k := range a.keep {
		if !b.keep[k] {
			return false
		}
	}
	return true
}

// syncDestinations makes the destinations of one service equal to want
// (want.keep left as they are): adds and in-place updates first, deletions
// last, so that a service never passes through an empty state (sorry server
// in or out).
func (d *Dataplane) syncDestinations(key string, want *desiredService) error {
	cur, err := d.o.IPVS.GetDestinations(want.svc)
	if err != nil {
		return fmt.Errorf("list destinations of %s: %w", key, err)
	}
	var conns connCounts
	for _, c := range cur {
		conns.add(c)
	}
	d.conns[key] = conns
	if len(want.keep) == 0 && sameAsKernel(cur, want.dests) {
		return nil // the resync's usual case, kept free of allocations
	}
	keyed := make([]keyedDest, len(cur))
	for i, c := range cur {
		keyed[i] = keyedDest{destKey(c), c}
	}
	slices.SortFunc(keyed, func(a, b keyedDest) int { return strings.Compare(a.key, b.key) })
	var errs []error
	byKey := make(map[string]*ipvs.Destination, len(cur))
	for _, c := range keyed {
		byKey[c.key] = c.d
	}
	wanted := make(map[string]bool, len(want.dests))
	for _, w := range want.dests {
		dk := destKey(w)
		wanted[dk] = true
		what := key + " -> " + dk
		c, ok := byKey[dk]
		switch {
		case !ok:
			if err := d.o.IPVS.NewDestination(want.svc, w); err != nil {
				errs = append(errs, d.ipvsErr("add_destination", what, err))
			} else {
				d.ipvsDone("add_destination", what, want.name)
			}
		case destinationDiffers(c, w):
			if err := d.o.IPVS.UpdateDestination(want.svc, w); err != nil {
				errs = append(errs, d.ipvsErr("update_destination", what, err))
			} else {
				d.ipvsDone("update_destination", what, want.name)
			}
		}
	}
	for _, kc := range keyed {
		dk, c := kc.key, kc.d
		if wanted[dk] || want.keep[dk] {
			continue
		}
		what := key + " -> " + dk
		if err := d.o.IPVS.DelDestination(want.svc, c); err != nil {
			errs = append(errs, d.ipvsErr("delete_destination", what, err))
		} else {
			d.ipvsDone("delete_destination", what, want.name)
		}
	}
	return joinErrors(errs)
}

type keyedDest struct {
	key string // destKey(d)
	d   *ipvs.Destination
}

// sameAsKernel says whether the kernel's destinations of a service, cur in
// the kernel's order, are exactly want and as want has them. The kernel
// lists the last added first, so a service shoal added in want's order
// lists in reverse; other orders are matched by a scan, up to a size where
// the general comparison's map is cheaper.
func sameAsKernel(cur, want []*ipvs.Destination) bool {
	if len(cur) != len(want) {
		return false
	}
	n := len(cur)
	for i, w := range want {
		wk := destAddrPort(w)
		c := cur[n-1-i]
		if destAddrPort(c) != wk {
			c = nil
			if n > 64 {
				return false
			}
			for _, x := range cur {
				if destAddrPort(x) == wk {
					c = x
					break
				}
			}
			if c == nil {
				return false
			}
		}
		if destinationDiffers(c, w) {
			return false
		}
	}
	// Equal lengths and every wanted one found: the kernel lists each
	// destination once, so nothing else is there.
	return true
}

// destAddrPort is what destKey names, without building the string.
func destAddrPort(d *ipvs.Destination) netip.AddrPort {
	a, _ := netip.AddrFromSlice(d.Address)
	return netip.AddrPortFrom(a.Unmap(), d.Port)
}

// syncTimeouts sets the connection timeouts the config names; unset ones
// are the kernel's business.
func (d *Dataplane) syncTimeouts(want ipvs.Config) error {
	if want.TimeoutTCP == 0 && want.TimeoutTCPFin == 0 && want.TimeoutUDP == 0 {
		return nil
	}
	cur, err := d.o.IPVS.GetConfig()
	if err != nil {
		return fmt.Errorf("read IPVS timeouts: %w", err)
	}
	if (want.TimeoutTCP == 0 || want.TimeoutTCP == cur.TimeoutTCP) &&
		(want.TimeoutTCPFin == 0 || want.TimeoutTCPFin == cur.TimeoutTCPFin) &&
		(want.TimeoutUDP == 0 || want.TimeoutUDP == cur.TimeoutUDP) {
		return nil
	}
	if err := d.o.IPVS.SetConfig(&want); err != nil {
		return d.ipvsErr("set_timeouts", fmt.Sprintf("tcp %v tcpfin %v udp %v", want.TimeoutTCP, want.TimeoutTCPFin, want.TimeoutUDP), err)
	}
	d.ipvsDone("set_timeouts", fmt.Sprintf("tcp %v tcpfin %v udp %v", want.TimeoutTCP, want.TimeoutTCPFin, want.TimeoutUDP), "")
	return nil
}

func (d *Dataplane) ipvsDone(op, what, name string) {
	ipvsChangesTotal.WithLabelValues(op, "ok").Inc()
	d.log.Info("ipvs "+op, "entry", what, "service", name)
}

func (d *Dataplane) ipvsErr(op, what string, err error) error {
	ipvsChangesTotal.WithLabelValues(op, "error").Inc()
	return fmt.Errorf("%s %s: %w", op, what, err)
}

// serviceDiffers says whether the kernel's service k needs an update to be
// want. The key fields are equal by construction; the kernel's own hashed
// flag is not ours to compare.
func serviceDiffers(k, want *ipvs.Service) bool {
	return k.SchedName != want.SchedName ||
		k.Flags&^svcFlagHashed != want.Flags ||
		k.Timeout != want.Timeout ||
		k.Netmask != want.Netmask
}

func destinationDiffers(k, want *ipvs.Destination) bool {
	return k.Weight != want.Weight ||
		k.ConnectionFlags&ipvs.ConnectionFlagFwdMask != want.ConnectionFlags&ipvs.ConnectionFlagFwdMask ||
		k.UpperThreshold != want.UpperThreshold ||
		k.LowerThreshold != want.LowerThreshold
}

// connCounts sums IPVS connections as ipvsadm shows them per destination:
// cheap (the reconcile lists destinations anyway), where counting by TCP
// state would read the whole connection table.
type connCounts struct{ active, inactive uint64 }

// countConns sets the connection gauges to the sum of each configured
// service's counts when its destinations were last listed.
func (d *Dataplane) countConns(ds *desiredState) {
	var sum connCounts
	for key, c := range d.conns {
		if _, ok := ds.services[key]; !ok {
			delete(d.conns, key)
			continue
		}
		sum.active += c.active
		sum.inactive += c.inactive
	}
	ipvsConnections.WithLabelValues("active").Set(float64(sum.active))
	ipvsConnections.WithLabelValues("inactive").Set(float64(sum.inactive))
}

func (c *connCounts) add(d *ipvs.Destination) {
	c.active += uint64(max(d.ActiveConnections, 0))
	c.inactive += uint64(max(d.InactiveConnections, 0))
}

// sloppySysctls let IPVS schedule a packet of a TCP or SCTP flow it has no
// entry for, not only a SYN (INIT): in bgp mode ECMP moves flows between
// routers when one comes or goes, and the router a flow lands on must take
// it up mid-stream (the same real server, by Maglev hashing). They are set
// while any service is announced by bgp and left as they are otherwise
// (shoal cannot know who else wanted them).
var sloppySysctls = []string{"sloppy_tcp", "sloppy_sctp"}

func (d *Dataplane) syncSloppy() error {
	if d.o.Sysctls == nil {
		return nil
	}
	var errs []error
	for _, name := range sloppySysctls {
		cur, err := d.o.Sysctls.Sysctl(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if cur == "1" {
			continue
		}
		if err := d.o.Sysctls.SetSysctl(name, "1"); err != nil {
			errs = append(errs, err)
			continue
		}
		d.log.Info("ipvs sysctl set for bgp mode", "sysctl", "net.ipv4.vs."+name, "from", cur, "to", "1")
	}
	return errors.Join(errs...)
}

// orderDestinations makes the kernel's list of a service's destinations
// descend by destKey (address, then port), the same on every router.
//
// The mh scheduler (net/netfilter/ipvs/ip_vs_mh.c) hashes each
// destination's address and port with fixed keys, so its preferences are
// the same on every router, but it fills the table by walking
// svc->destinations in list order, one slot per destination per turn: where
// two destinations prefer the same slot, the one earlier in the list gets
// it. The same destinations and weights in another order give a different
// table, and the kernel puts every new destination at the head of the list
// (__ip_vs_update_dest: list_add_rcu), so the order is that of the history
// of additions, which differs between a router that saw a server come and
// go and one that started later. Descending order is kept by adding in
// ascending order; a destination that must go elsewhere than the head
// takes the ones that sort above it out and back in above it. Connections
// of a destination taken out go on (the kernel keeps it until they end);
// new flows see the table without it for the moment between.
func (d *Dataplane) orderDestinations(key string, want *desiredService) error {
	cur, err := d.o.IPVS.GetDestinations(want.svc)
	if err != nil {
		return fmt.Errorf("list destinations of %s: %w", key, err)
	}
	j := reorderFrom(cur)
	if j == 0 {
		return nil
	}
	moved := slices.Clone(cur[:j])
	slices.SortFunc(moved, func(a, b *ipvs.Destination) int { return strings.Compare(destKey(a), destKey(b)) })
	var errs []error
	for _, c := range moved {
		if err := d.o.IPVS.DelDestination(want.svc, c); err != nil {
			errs = append(errs, d.ipvsErr("order_destination", key+" -> "+destKey(c), err))
			return joinErrors(errs) // re-adding the rest would not fix the order
		}
	}
	for _, c := range moved { // ascending: each new head sorts above the last
		if err := d.o.IPVS.NewDestination(want.svc, c); err != nil {
			errs = append(errs, d.ipvsErr("order_destination", key+" -> "+destKey(c), err))
			continue
		}
	}
	if len(errs) == 0 {
		d.ipvsDone("order_destinations", fmt.Sprintf("%s (%d moved)", key, j), want.name)
	}
	return joinErrors(errs)
}

// reorderFrom is how many destinations at the head of list must be taken
// out and re-added for the list to descend: the smallest j such that
// list[j:] descends and every one of list[:j] sorts above all of list[j:].
func reorderFrom(list []*ipvs.Destination) int {
	keys := make([]string, len(list))
	for i, d := range list {
		keys[i] = destKey(d)
	}
	// tail is where the descending run that ends the list starts.
	tail := len(keys)
	for tail > 0 && (tail == len(keys) || keys[tail-1] > keys[tail]) {
		tail--
	}
	for j := tail; j < len(keys); j++ {
		// every head key must sort above keys[j], the largest of the tail
		ok := true
		for _, k := range keys[:j] {
			if k <= keys[j] {
				ok = false
				break
			}
		}
		if ok {
			return j
		}
	}
	return len(keys)
}
