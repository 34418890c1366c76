package kernelfake

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/shoal-lb/shoal/dataplane/ipvssync"
)

// SyncDaemons is the kernel's pair of IPVS sync daemons: at most one master
// and one backup, started with the kernel's defaults filled in (group
// 224.0.0.81, port 8848, TTL 1, a message length of 1500 less headers,
// at least 1024 for a backup), EEXIST for a second one of a state, ESRCH
// for stopping one that does not run, ENODEV for an interface named in
// Missing.
type SyncDaemons struct {
	mu      sync.Mutex
	running map[ipvssync.State]ipvssync.Daemon
	missing map[string]bool
	ops     []string
	fail    map[string]error
}

// NewSyncDaemons returns a kernel with no daemon running.
func NewSyncDaemons() *SyncDaemons {
	return &SyncDaemons{running: map[ipvssync.State]ipvssync.Daemon{}, missing: map[string]bool{}, fail: map[string]error{}}
}

// SetMissing makes an interface absent (ENODEV) or present again.
func (s *SyncDaemons) SetMissing(dev string, missing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.missing[dev] = missing
}

// FailNext makes the next call of op ("StartDaemon", "StopDaemon",
// "Daemons") fail with err.
func (s *SyncDaemons) FailNext(op string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[op] = err
}

func (s *SyncDaemons) failing(op string) error {
	if err, ok := s.fail[op]; ok {
		delete(s.fail, op)
		return err
	}
	return nil
}

// Ops returns the changes so far ("start master eth0 syncid 7 ...", "stop
// backup") and forgets them.
func (s *SyncDaemons) Ops() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.ops
	s.ops = nil
	return out
}

// Running returns the daemon of a state, if it runs.
func (s *SyncDaemons) Running(state ipvssync.State) (ipvssync.Daemon, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.running[state]
	return d, ok
}

// StopByHand stops a daemon behind shoal's back (ipvsadm --stop-daemon);
// it is not recorded in Ops.
func (s *SyncDaemons) StopByHand(state ipvssync.State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.running, state)
}

// StartByHand starts a daemon behind shoal's back (ipvsadm
// --start-daemon), defaults filled in; it is not recorded in Ops.
func (s *SyncDaemons) StartByHand(d ipvssync.Daemon) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running[d.State] = withDefaults(d)
}

func withDefaults(d ipvssync.Daemon) ipvssync.Daemon {
	if !d.Group.IsValid() {
		d.Group = netip.MustParseAddr("224.0.0.81")
	}
	if d.Port == 0 {
		d.Port = 8848
	}
	if d.TTL == 0 {
		d.TTL = 1
	}
	hdr := uint16(28)
	if d.Group.Is6() {
		hdr = 48
	}
	switch {
	case d.MaxLen == 0:
		d.MaxLen = 1500 - hdr
	case d.State == ipvssync.Backup && d.MaxLen < 1024:
		d.MaxLen = 1024
	case d.MaxLen > 65535-hdr:
		d.MaxLen = 65535 - hdr
	}
	return d
}

func (s *SyncDaemons) StartDaemon(d ipvssync.Daemon) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failing("StartDaemon"); err != nil {
		return err
	}
	if d.State != ipvssync.Master && d.State != ipvssync.Backup {
		return syscall.EINVAL
	}
	if d.Interface == "" {
		return syscall.EINVAL
	}
	if s.missing[d.Interface] {
		return fmt.Errorf("start sync daemon %s: %w", d, syscall.ENODEV)
	}
	if _, ok := s.running[d.State]; ok {
		return fmt.Errorf("start sync daemon %s: %w", d, syscall.EEXIST)
	}
	s.running[d.State] = withDefaults(d)
	s.ops = append(s.ops, "start "+d.String())
	return nil
}

func (s *SyncDaemons) StopDaemon(state ipvssync.State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failing("StopDaemon"); err != nil {
		return err
	}
	if _, ok := s.running[state]; !ok {
		return fmt.Errorf("stop %s sync daemon: %w", state, syscall.ESRCH)
	}
	delete(s.running, state)
	s.ops = append(s.ops, "stop "+state.String())
	return nil
}

func (s *SyncDaemons) Daemons() ([]ipvssync.Daemon, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failing("Daemons"); err != nil {
		return nil, err
	}
	var out []ipvssync.Daemon
	for _, st := range slices.Sorted(maps.Keys(s.running)) {
		out = append(out, s.running[st])
	}
	return out, nil
}

// Sysctls is the net.ipv4.vs sysctls of one namespace, with the kernel's
// defaults and its check of sync_threshold.
type Sysctls struct {
	mu   sync.Mutex
	vals map[string]string
	ops  []string
}

// NewSysctls returns the kernel's defaults.
func NewSysctls() *Sysctls {
	return &Sysctls{vals: map[string]string{
		ipvssync.SysctlThreshold:     "3 50",
		ipvssync.SysctlRefreshPeriod: "0",
		ipvssync.SysctlPersistMode:   "0",
		"sloppy_tcp":                 "0",
		"sloppy_sctp":                "0",
	}}
}

func (s *Sysctls) Sysctl(name string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vals[name]
	if !ok {
		return "", syscall.ENOENT
	}
	return v, nil
}

func (s *Sysctls) SetSysctl(name, value string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.vals[name]; !ok {
		return syscall.ENOENT
	}
	v := strings.Join(strings.Fields(value), " ")
	if name == ipvssync.SysctlThreshold {
		f := strings.Fields(v)
		if len(f) != 2 {
			return syscall.EINVAL
		}
		t, err1 := strconv.Atoi(f[0])
		p, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil || t < 0 || p < 0 || (t >= p && p != 0) {
			return syscall.EINVAL
		}
	}
	s.vals[name] = v
	s.ops = append(s.ops, name+"="+v)
	return nil
}

// SetByHand changes a value behind shoal's back; not recorded in Ops.
func (s *Sysctls) SetByHand(name, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vals[name] = value
}

// Ops returns the writes so far ("sync_threshold=3 100") and forgets them.
func (s *Sysctls) Ops() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.ops
	s.ops = nil
	return out
}

// Conns is a connection table a test fills.
type Conns struct {
	mu    sync.Mutex
	conns []ipvssync.Conn
}

// Set replaces the table.
func (c *Conns) Set(conns ...ipvssync.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conns = slices.Clone(conns)
}

func (c *Conns) Conns() ([]ipvssync.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.conns), nil
}
