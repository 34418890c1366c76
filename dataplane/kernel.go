package dataplane

import (
	"net/netip"
	"time"

	"github.com/moby/ipvs"

	"github.com/shoal-lb/shoal/dataplane/ipvssync"
)

// IPVS is the kernel's virtual server table as the reconciler needs it. The
// method set is that of *ipvs.Handle from github.com/moby/ipvs, so the real
// implementation adds only serialisation and the "is IPVS there" check, and the
// types are the kernel's own (no second model to keep in step).
type IPVS interface {
	GetServices() ([]*ipvs.Service, error)
	// GetService reads the service with s's key; one the kernel does not
	// have is an error that is syscall.ESRCH or syscall.ENOENT.
	GetService(s *ipvs.Service) (*ipvs.Service, error)
	GetDestinations(s *ipvs.Service) ([]*ipvs.Destination, error)
	NewService(s *ipvs.Service) error
	UpdateService(s *ipvs.Service) error
	DelService(s *ipvs.Service) error
	NewDestination(s *ipvs.Service, d *ipvs.Destination) error
	UpdateDestination(s *ipvs.Service, d *ipvs.Destination) error
	DelDestination(s *ipvs.Service, d *ipvs.Destination) error
	GetConfig() (*ipvs.Config, error)
	// SetConfig sets the connection timeouts; a zero field leaves the
	// kernel's value unchanged.
	SetConfig(c *ipvs.Config) error
}

// Addresses raises and drops IP addresses on network interfaces.
type Addresses interface {
	// AddAddress raises p on dev, or renews it when it is already there
	// (in place: it never leaves the interface, even for a moment). With a
	// lifetime, the kernel drops the address by itself once that long has
	// passed since the last call (valid_lft = preferred_lft, whole seconds);
	// 0 keeps it until it is removed. label is an interface alias ("eth0:1"),
	// used only when it names dev.
	AddAddress(dev string, p netip.Prefix, label string, lifetime time.Duration) error
	// RemoveAddress drops p from dev; an absent address is not an error.
	RemoveAddress(dev string, p netip.Prefix) error
	// ListAddresses lists the addresses on dev.
	ListAddresses(dev string) ([]netip.Prefix, error)
}

// AddressAdder is Addresses that can raise or renew many addresses in one
// round trip to the kernel: a takeover raises every VIP, and the leader
// renews every VIP every second. *NetlinkAddresses implements it; the
// Dataplane calls AddAddress one by one on an Addresses that does not.
type AddressAdder interface {
	// AddAddresses is AddAddress for each, one error each (nil where it
	// worked).
	AddAddresses(adds []AddressAdd) []error
}

// AddressAdd is one address for AddressAdder, AddAddress's arguments.
type AddressAdd struct {
	Dev      string
	Prefix   netip.Prefix
	Label    string
	Lifetime time.Duration
}

// Announcer tells the neighbours of dev that addr now lives at dev's hardware
// address: one gratuitous ARP for IPv4, one unsolicited neighbour
// advertisement with the override flag for IPv6.
type Announcer interface {
	Announce(dev string, addr netip.Addr) error
}

// SyncDaemons is the kernel's IPVS connection-sync daemons, at most one
// master and one backup; *ipvssync.Handle is the real one.
type SyncDaemons interface {
	Daemons() ([]ipvssync.Daemon, error)
	// StartDaemon fails with EEXIST when one of that state runs.
	StartDaemon(d ipvssync.Daemon) error
	// StopDaemon fails with ESRCH when none of that state runs.
	StopDaemon(s ipvssync.State) error
}

// Sysctls reads and writes the net.ipv4.vs sysctls of this node's network
// namespace; ipvssync.Sysctls is the real one.
type Sysctls interface {
	Sysctl(name string) (string, error)
	SetSysctl(name, value string) error
}

// Conns reads the kernel's IPVS connection table; ipvssync.ConnTable is
// the real one.
type Conns interface {
	Conns() ([]ipvssync.Conn, error)
}
