package kernelfake

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/moby/ipvs"
)

const flagHashed = 0x0002

var schedulers = map[string]bool{
	"rr": true, "wrr": true, "lc": true, "wlc": true, "lblc": true, "lblcr": true, "dh": true,
	"sh": true, "sed": true, "nq": true, "mh": true, "fo": true, "ovf": true, "twos": true,
}

type service struct {
	svc   ipvs.Service
	dests map[string]*ipvs.Destination
	// list is the kernel's svc->destinations in its order: a new
	// destination goes to the head (list_add_rcu in __ip_vs_update_dest),
	// and a listing walks it from there. Schedulers that build tables from
	// it (mh, sh) depend on that order.
	list  []string
	order int
}

// IPVS is an in-memory IPVS table. The zero value is not usable; use NewIPVS.
type IPVS struct {
	mu       sync.Mutex
	services map[string]*service
	seq      int
	ops      []string
	reads    int
	fail     map[string]error
	timeouts ipvs.Config
}

// NewIPVS returns an empty table.
func NewIPVS() *IPVS {
	return &IPVS{services: map[string]*service{}, fail: map[string]error{},
		timeouts: ipvs.Config{TimeoutTCP: 900 * time.Second, TimeoutTCPFin: 120 * time.Second, TimeoutUDP: 300 * time.Second}}
}

// ServiceKey names a service as the fake (and dataplane) do:
// "tcp/10.0.0.1:80" or "fwmark/inet/7".
func ServiceKey(s *ipvs.Service) string {
	if s.FWMark != 0 {
		fam := "inet"
		if s.AddressFamily == syscall.AF_INET6 {
			fam = "inet6"
		}
		return fmt.Sprintf("fwmark/%s/%d", fam, s.FWMark)
	}
	a, _ := netip.AddrFromSlice(s.Address)
	proto := map[uint16]string{6: "tcp", 17: "udp", 132: "sctp"}[s.Protocol]
	if proto == "" {
		proto = fmt.Sprintf("proto%d", s.Protocol)
	}
	return fmt.Sprintf("%s/%s", proto, netip.AddrPortFrom(a.Unmap(), s.Port))
}

// DestKey names a destination: "10.0.0.1:80" or "[2001:db8::1]:80".
func DestKey(d *ipvs.Destination) string {
	a, _ := netip.AddrFromSlice(d.Address)
	return netip.AddrPortFrom(a.Unmap(), d.Port).String()
}

// FailNext makes the next call of op ("NewService", "UpdateDestination", ...)
// fail with err.
func (f *IPVS) FailNext(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[op] = err
}

func (f *IPVS) failing(op string) error {
	if err, ok := f.fail[op]; ok {
		delete(f.fail, op)
		return err
	}
	return nil
}

// Ops returns the changes made so far, e.g. "UpdateService tcp/10.0.0.1:80",
// "NewDestination tcp/10.0.0.1:80 10.1.0.1:80", and forgets them.
func (f *IPVS) Ops() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.ops
	f.ops = nil
	return out
}

// Reads returns how many listings (GetServices, GetDestinations) and
// reads of one service (GetService) were made since the last call, and
// forgets them: on a real kernel each is a netlink round trip, and a
// listing's cost grows with what it lists.
func (f *IPVS) Reads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.reads
	f.reads = 0
	return n
}

func (f *IPVS) record(op string, parts ...string) {
	for _, p := range parts {
		op += " " + p
	}
	f.ops = append(f.ops, op)
}

// Clone returns a copy of the table (services, destinations in their
// order, timeouts), with no recorded operations or pending failures.
func (f *IPVS) Clone() *IPVS {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := NewIPVS()
	c.seq, c.timeouts = f.seq, f.timeouts
	for k, s := range f.services {
		n := &service{svc: s.svc, dests: make(map[string]*ipvs.Destination, len(s.dests)), list: slices.Clone(s.list), order: s.order}
		n.svc.Address = slices.Clone(s.svc.Address)
		for dk, d := range s.dests {
			dc := *d
			dc.Address = slices.Clone(d.Address)
			n.dests[dk] = &dc
		}
		c.services[k] = n
	}
	return c
}

// Flush deletes everything, as ipvsadm -C does behind shoal's back; it is not
// recorded in Ops.
func (f *IPVS) Flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.services = map[string]*service{}
}

// Service returns a copy of the service with the given key and its
// destinations sorted by DestKey, or ok=false.
func (f *IPVS) Service(key string) (svc ipvs.Service, dests []ipvs.Destination, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.services[key]
	if !ok {
		return ipvs.Service{}, nil, false
	}
	for _, d := range s.dests {
		dests = append(dests, *d)
	}
	sort.Slice(dests, func(i, j int) bool { return DestKey(&dests[i]) < DestKey(&dests[j]) })
	return s.svc, dests, true
}

// Keys lists the service keys, sorted.
func (f *IPVS) Keys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range f.services {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// SetStats sets the statistics and connection counts the kernel would report
// for a destination (dest nil: the service).
func (f *IPVS) SetStats(key, dest string, st ipvs.SvcStats, active, inactive int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.services[key]
	if !ok {
		return syscall.ESRCH
	}
	if dest == "" {
		s.svc.Stats = st
		return nil
	}
	d, ok := s.dests[dest]
	if !ok {
		return syscall.ENOENT
	}
	d.Stats = ipvs.DstStats(st)
	d.ActiveConnections, d.InactiveConnections = active, inactive
	return nil
}

func (f *IPVS) GetServices() ([]*ipvs.Service, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if err := f.failing("GetServices"); err != nil {
		return nil, err
	}
	all := make([]*service, 0, len(f.services))
	for _, s := range f.services {
		all = append(all, s)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].order < all[j].order })
	out := make([]*ipvs.Service, 0, len(all))
	for _, s := range all {
		c := s.svc
		c.Address = append(net.IP(nil), s.svc.Address...)
		out = append(out, &c)
	}
	return out, nil
}

// GetService reads the service with s's key, or fails with ESRCH as the
// kernel does; it counts as a read.
func (f *IPVS) GetService(s *ipvs.Service) (*ipvs.Service, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if err := f.failing("GetService"); err != nil {
		return nil, err
	}
	svc, ok := f.services[ServiceKey(s)]
	if !ok {
		return nil, syscall.ESRCH
	}
	c := svc.svc
	c.Address = append(net.IP(nil), svc.svc.Address...)
	return &c, nil
}

func (f *IPVS) GetDestinations(s *ipvs.Service) ([]*ipvs.Destination, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if err := f.failing("GetDestinations"); err != nil {
		return nil, err
	}
	svc, ok := f.services[ServiceKey(s)]
	if !ok {
		return nil, syscall.ESRCH
	}
	var out []*ipvs.Destination
	for _, dk := range svc.list {
		c := *svc.dests[dk]
		out = append(out, &c)
	}
	return out, nil
}

func checkService(s *ipvs.Service) error {
	if !schedulers[s.SchedName] {
		return fmt.Errorf("scheduler %q: %w", s.SchedName, syscall.ENOENT)
	}
	if s.Flags&flagHashed != 0 {
		// The kernel would accept it and never hash the service.
		return fmt.Errorf("hashed flag sent by user space: %w", syscall.EINVAL)
	}
	switch s.AddressFamily {
	case syscall.AF_INET:
	case syscall.AF_INET6:
		if s.Netmask < 1 || s.Netmask > 128 {
			return fmt.Errorf("IPv6 netmask %d: %w", s.Netmask, syscall.EINVAL)
		}
	default:
		return fmt.Errorf("address family %d: %w", s.AddressFamily, syscall.EAFNOSUPPORT)
	}
	if s.FWMark == 0 && (s.Port == 0 && s.Protocol != 0 || len(s.Address) == 0) {
		return fmt.Errorf("address service without address or port: %w", syscall.EINVAL)
	}
	return nil
}

func (f *IPVS) NewService(s *ipvs.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("NewService"); err != nil {
		return err
	}
	if err := checkService(s); err != nil {
		return err
	}
	key := ServiceKey(s)
	if _, ok := f.services[key]; ok {
		return syscall.EEXIST
	}
	c := *s
	c.Address = append(net.IP(nil), s.Address...)
	c.Flags |= flagHashed
	c.Stats = ipvs.SvcStats{}
	f.seq++
	f.services[key] = &service{svc: c, dests: map[string]*ipvs.Destination{}, order: f.seq}
	f.record("NewService", key)
	return nil
}

func (f *IPVS) UpdateService(s *ipvs.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("UpdateService"); err != nil {
		return err
	}
	if err := checkService(s); err != nil {
		return err
	}
	key := ServiceKey(s)
	svc, ok := f.services[key]
	if !ok {
		return syscall.ESRCH
	}
	svc.svc.SchedName = s.SchedName
	svc.svc.Flags = s.Flags | flagHashed
	svc.svc.Timeout = s.Timeout
	svc.svc.Netmask = s.Netmask
	svc.svc.PEName = s.PEName
	f.record("UpdateService", key)
	return nil
}

func (f *IPVS) DelService(s *ipvs.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("DelService"); err != nil {
		return err
	}
	key := ServiceKey(s)
	if _, ok := f.services[key]; !ok {
		return syscall.ESRCH
	}
	delete(f.services, key)
	f.record("DelService", key)
	return nil
}

func (f *IPVS) NewDestination(s *ipvs.Service, d *ipvs.Destination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("NewDestination"); err != nil {
		return err
	}
	key := ServiceKey(s)
	svc, ok := f.services[key]
	if !ok {
		return syscall.ESRCH
	}
	dk := DestKey(d)
	if _, ok := svc.dests[dk]; ok {
		return syscall.EEXIST
	}
	if d.Weight < 0 || d.Weight > 65535 || d.LowerThreshold > d.UpperThreshold {
		return syscall.ERANGE
	}
	c := *d
	c.Address = append(net.IP(nil), d.Address...)
	c.ConnectionFlags &= ipvs.ConnectionFlagFwdMask
	c.AddressFamily = svc.svc.AddressFamily
	c.Stats = ipvs.DstStats{}
	c.ActiveConnections, c.InactiveConnections = 0, 0
	svc.dests[dk] = &c
	svc.list = append([]string{dk}, svc.list...)
	f.record("NewDestination", key, dk)
	return nil
}

func (f *IPVS) UpdateDestination(s *ipvs.Service, d *ipvs.Destination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("UpdateDestination"); err != nil {
		return err
	}
	key := ServiceKey(s)
	svc, ok := f.services[key]
	if !ok {
		return syscall.ESRCH
	}
	dk := DestKey(d)
	cur, ok := svc.dests[dk]
	if !ok {
		return syscall.ENOENT
	}
	// As ip_vs_edit_dest: a lower threshold above the upper is refused
	// (so is one without an upper, which is 0).
	if d.Weight < 0 || d.Weight > 65535 || d.LowerThreshold > d.UpperThreshold {
		return syscall.ERANGE
	}
	cur.Weight = d.Weight
	cur.ConnectionFlags = d.ConnectionFlags & ipvs.ConnectionFlagFwdMask
	cur.UpperThreshold, cur.LowerThreshold = d.UpperThreshold, d.LowerThreshold
	f.record("UpdateDestination", key, dk)
	return nil
}

func (f *IPVS) DelDestination(s *ipvs.Service, d *ipvs.Destination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("DelDestination"); err != nil {
		return err
	}
	key := ServiceKey(s)
	svc, ok := f.services[key]
	if !ok {
		return syscall.ESRCH
	}
	dk := DestKey(d)
	if _, ok := svc.dests[dk]; !ok {
		return syscall.ENOENT
	}
	delete(svc.dests, dk)
	svc.list = slices.DeleteFunc(svc.list, func(k string) bool { return k == dk })
	f.record("DelDestination", key, dk)
	return nil
}

func (f *IPVS) GetConfig() (*ipvs.Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.timeouts
	return &c, nil
}

// SetConfig sets the timeouts; a zero field leaves the value, as the kernel does.
func (f *IPVS) SetConfig(c *ipvs.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing("SetConfig"); err != nil {
		return err
	}
	if c.TimeoutTCP != 0 {
		f.timeouts.TimeoutTCP = c.TimeoutTCP
	}
	if c.TimeoutTCPFin != 0 {
		f.timeouts.TimeoutTCPFin = c.TimeoutTCPFin
	}
	if c.TimeoutUDP != 0 {
		f.timeouts.TimeoutUDP = c.TimeoutUDP
	}
	f.record("SetConfig")
	return nil
}

// List is the service's destinations in the kernel's list order (head
// first), by DestKey.
func (f *IPVS) List(key string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.services[key]; ok {
		return slices.Clone(s.list)
	}
	return nil
}
