package dataplane

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-lb/shoal/dataplane/ipvssync"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// syncStates are the daemons in the order they are reconciled.
var syncStates = []ipvssync.State{ipvssync.Master, ipvssync.Backup}

// errNoSyncBackend is reported when a config enables connection sync on a
// Dataplane built without the kernel's sync daemons (a caller that passed
// its own IPVS and no SyncDaemons).
var errNoSyncBackend = errors.New("connection sync: this dataplane has no sync daemon backend")

// desiredSync is what global.connection_sync asks of this node: a backup
// daemon on every node and, while it leads, a master as well. enabled is
// false when the config leaves sync off.
func desiredSync(cfg *shoalv1.Config, leader bool, defaultDev string) (want map[ipvssync.State]ipvssync.Daemon, enabled bool, err error) {
	cs := cfg.GetGlobal().GetConnectionSync()
	if !cs.GetEnabled() {
		return nil, false, nil
	}
	dev := cs.GetInterface()
	if dev == "" {
		dev = defaultDev
	}
	if dev == "" {
		return nil, true, errors.New("connection sync: no interface (set global.connection_sync.interface or lvsd --interface)")
	}
	base := ipvssync.Daemon{Interface: dev, SyncID: cs.GetSyncId(), MaxLen: uint16(cs.GetMaxLen()),
		Port: uint16(cs.GetPort()), TTL: uint8(cs.GetTtl())}
	if g, err := netip.ParseAddr(cs.GetGroup()); err == nil {
		base.Group = g.Unmap()
	}
	want = map[ipvssync.State]ipvssync.Daemon{}
	for _, st := range syncStates {
		if st == ipvssync.Master && !leader {
			continue
		}
		d := base
		d.State = st
		want[st] = d
	}
	return want, true, nil
}

// daemonDiffers says whether the running daemon have must be restarted to
// be want. Fields the kernel does not report (zero: kernels before 4.3)
// are taken from what this process started it with, if it did; a field
// still unknown is no reason to restart. The TTL matters to a master only:
// a backup sends nothing.
func daemonDiffers(have, want ipvssync.Daemon, started ipvssync.Daemon, startedKnown bool) bool {
	if have.Interface != want.Interface || have.SyncID != want.SyncID {
		return true
	}
	if startedKnown && (started.Interface != have.Interface || started.SyncID != have.SyncID) {
		startedKnown = false // somebody else's daemon now
	}
	if startedKnown {
		if !have.Group.IsValid() {
			have.Group = started.Group
		}
		if have.Port == 0 {
			have.Port = started.Port
		}
		if have.TTL == 0 {
			have.TTL = started.TTL
		}
	}
	if have.Group.IsValid() && want.Group.IsValid() && have.Group != want.Group {
		return true
	}
	if have.Port != 0 && want.Port != 0 && have.Port != want.Port {
		return true
	}
	if want.State == ipvssync.Master && have.TTL != 0 && want.TTL != 0 && have.TTL != want.TTL {
		return true
	}
	switch {
	case want.MaxLen != 0:
		// The kernel reports what it runs with; before 4.3 only what this
		// process asked for is known.
		got := have.MaxLen
		if got == 0 && startedKnown {
			got = started.MaxLen
		}
		return got != 0 && got != want.MaxLen
	case startedKnown && started.MaxLen != 0:
		// Back to the kernel's choice, which only a restart makes.
		return true
	}
	return false
}

// reconcileSync makes the kernel's sync daemons and the net.ipv4.vs sync
// sysctls what the config and this node's leadership ask for: a backup
// daemon on every node while connection sync is on, and a master too on
// the leader; a daemon is restarted only when its own parameters changed.
// While sync is on, shoal owns both daemons (one started by hand with other
// parameters is replaced); while it is off, only the daemons shoal started
// are stopped. Until the first config arrives nothing is touched. reason is
// logged and counted ("leader", "follower", "config", "repair",
// "shutdown").
func (d *Dataplane) reconcileSync(reason string) error {
	if d.o.Mode != ModeIPVS {
		return nil
	}
	d.syncMu.Lock()
	defer d.syncMu.Unlock()
	d.mu.Lock()
	cfg, leader := d.cfg, d.leader && !d.released.Load()
	d.mu.Unlock()
	if cfg == nil {
		return nil
	}
	err := d.reconcileSyncLocked(cfg, leader, reason)
	d.mu.Lock()
	d.syncErr = ""
	if err != nil {
		d.syncErr = err.Error()
	}
	d.mu.Unlock()
	return err
}

func (d *Dataplane) reconcileSyncLocked(cfg *shoalv1.Config, leader bool, reason string) error {
	want, enabled, werr := desiredSync(cfg, leader, d.o.DefaultInterface)
	if d.o.SyncDaemons == nil {
		if enabled {
			return errNoSyncBackend
		}
		return nil
	}
	cur, err := d.o.SyncDaemons.Daemons()
	if err != nil {
		return fmt.Errorf("list sync daemons: %w", err)
	}
	have := map[ipvssync.State]ipvssync.Daemon{}
	for _, c := range cur {
		have[c.State] = c
	}
	errs := []error{werr}
	ownedBefore := maps.Clone(d.syncOwned)
	for _, st := range syncStates {
		h, running := have[st]
		w, wanted := want[st]
		started, known := d.syncStarted[st]
		switch {
		case !wanted && running:
			if !enabled && !d.syncOwned[st] {
				continue // not ours, and sync is off: left alone
			}
			if werr != nil {
				continue // misconfigured: change nothing until it is fixed
			}
			errs = append(errs, d.stopDaemon(st, reason))
		case wanted && running && daemonDiffers(h, w, started, known):
			d.log.Info("sync daemon parameters changed; restarting it", "state", st.String(), "running", h.String(), "want", w.String())
			if err := d.stopDaemon(st, "restart"); err != nil {
				errs = append(errs, err)
				continue
			}
			errs = append(errs, d.startDaemon(w, "restart"))
		case wanted && !running:
			errs = append(errs, d.startDaemon(w, reason))
		case wanted && running && !d.syncOwned[st]:
			// Running as we want it already (a restarted lvsd, or started
			// by hand the same way): from now on it is ours.
			d.syncOwned[st] = true
			d.syncStarted[st] = w
		}
	}
	if enabled && werr == nil {
		errs = append(errs, d.syncSysctls(cfg.GetGlobal().GetConnectionSync()))
	}
	if !maps.Equal(ownedBefore, d.syncOwned) {
		d.mu.Lock()
		d.syncOwnedSnapshot = maps.Clone(d.syncOwned)
		d.mu.Unlock()
		errs = append(errs, d.saveState())
	}
	if now, err := d.o.SyncDaemons.Daemons(); err == nil {
		up := map[ipvssync.State]bool{}
		for _, n := range now {
			up[n.State] = true
		}
		for _, st := range syncStates {
			syncDaemonRunning.WithLabelValues(st.String()).Set(b2f(up[st]))
		}
	}
	return joinErrors(errs)
}

func (d *Dataplane) startDaemon(w ipvssync.Daemon, reason string) error {
	err := d.o.SyncDaemons.StartDaemon(w)
	if errors.Is(err, syscall.EEXIST) {
		// Started behind our back between listing and now: the next
		// reconcile compares it.
		return nil
	}
	if err != nil {
		syncDaemonChangesTotal.WithLabelValues(w.State.String(), "start", reason, "error").Inc()
		return err
	}
	syncDaemonChangesTotal.WithLabelValues(w.State.String(), "start", reason, "ok").Inc()
	d.syncOwned[w.State] = true
	d.syncStarted[w.State] = w
	d.log.Info("sync daemon started", "state", w.State.String(), "daemon", w.String(), "reason", reason, "node", d.o.NodeID)
	return nil
}

func (d *Dataplane) stopDaemon(st ipvssync.State, reason string) error {
	err := d.o.SyncDaemons.StopDaemon(st)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		syncDaemonChangesTotal.WithLabelValues(st.String(), "stop", reason, "error").Inc()
		return err
	}
	syncDaemonChangesTotal.WithLabelValues(st.String(), "stop", reason, "ok").Inc()
	delete(d.syncOwned, st)
	delete(d.syncStarted, st)
	d.log.Info("sync daemon stopped", "state", st.String(), "reason", reason, "node", d.o.NodeID)
	return nil
}

// syncSysctls writes the net.ipv4.vs sysctls the config sets and leaves
// the others as the kernel has them.
func (d *Dataplane) syncSysctls(cs *shoalv1.ConnectionSync) error {
	if d.o.Sysctls == nil {
		return nil
	}
	var errs []error
	set := func(name, want string) {
		cur, err := d.o.Sysctls.Sysctl(name)
		if err != nil {
			errs = append(errs, err)
			return
		}
		if cur == want {
			return
		}
		if err := d.o.Sysctls.SetSysctl(name, want); err != nil {
			errs = append(errs, err)
			return
		}
		d.log.Info("ipvs sysctl set", "sysctl", "net.ipv4.vs."+name, "from", cur, "to", want)
	}
	if cs.SyncThreshold != nil || cs.SyncPeriod != nil {
		cur, err := d.o.Sysctls.Sysctl(ipvssync.SysctlThreshold)
		if err != nil {
			errs = append(errs, err)
		} else {
			f := strings.Fields(cur)
			if len(f) == 2 {
				if cs.SyncThreshold != nil {
					f[0] = strconv.FormatUint(uint64(cs.GetSyncThreshold()), 10)
				}
				if cs.SyncPeriod != nil {
					f[1] = strconv.FormatUint(uint64(cs.GetSyncPeriod()), 10)
				}
				set(ipvssync.SysctlThreshold, f[0]+" "+f[1])
			} else {
				errs = append(errs, fmt.Errorf("net.ipv4.vs.%s reads %q, want two numbers", ipvssync.SysctlThreshold, cur))
			}
		}
	}
	if p := cs.GetSyncRefreshPeriod(); p != nil {
		set(ipvssync.SysctlRefreshPeriod, strconv.FormatInt(int64(p.AsDuration()/time.Second), 10))
	}
	if cs.SyncPersistMode != nil {
		v := "0"
		if cs.GetSyncPersistMode() {
			v = "1"
		}
		set(ipvssync.SysctlPersistMode, v)
	}
	return joinErrors(errs)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// SyncEnabled says whether this node runs connection sync: the config turns
// it on and the dataplane drives IPVS.
func (d *Dataplane) SyncEnabled() bool {
	if d.o.Mode != ModeIPVS || d.o.SyncDaemons == nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg.GetGlobal().GetConnectionSync().GetEnabled()
}

// MaxSampledConns is how many established connections a planned transfer
// looks for on the target at most: all of them up to this many, else a
// uniform random sample. A target that lacks a fraction f of the table
// passes a sample of n with probability (1-f)^n: 1 in 10^9 for f = 1%.
const MaxSampledConns = 2048

// SampleEstablished returns the keys of this node's established TCP and
// SCTP connections (those the master sends as soon as they are
// established), or a random sample of MaxSampledConns of them.
func (d *Dataplane) SampleEstablished() ([]string, error) {
	if d.o.Conns == nil {
		return nil, errors.New("connection table: not available in this dataplane")
	}
	conns, err := d.o.Conns.Conns()
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, c := range conns {
		if c.Established() {
			keys = append(keys, c.Key)
		}
	}
	if len(keys) > MaxSampledConns {
		rand.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		keys = keys[:MaxSampledConns]
	}
	slices.Sort(keys)
	return keys, nil
}

// MissingConns returns the keys the kernel's connection table lacks, and
// how many entries it holds.
func (d *Dataplane) MissingConns(keys []string) (missing []string, total int, err error) {
	if d.o.Conns == nil {
		return nil, 0, errors.New("connection table: not available in this dataplane")
	}
	conns, err := d.o.Conns.Conns()
	if err != nil {
		return nil, 0, err
	}
	have := make(map[string]bool, len(conns))
	for _, c := range conns {
		have[c.Key] = true
	}
	for _, k := range keys {
		if !have[k] {
			missing = append(missing, k)
		}
	}
	return missing, len(conns), nil
}
