package ipvssync

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// State is which side of the synchronisation a daemon is on, with the
// kernel's values (IP_VS_STATE_MASTER, IP_VS_STATE_BACKUP).
type State uint32

const (
	Master State = 1
	Backup State = 2
)

func (s State) String() string {
	switch s {
	case Master:
		return "master"
	case Backup:
		return "backup"
	}
	return fmt.Sprintf("state%d", uint32(s))
}

// Daemon is one sync daemon's parameters. Starting one, a zero MaxLen,
// Port or TTL and an invalid Group leave the kernel's defaults (MTU-based,
// 8848, 1, 224.0.0.81). Listed, they are the kernel's values, and zero on
// kernels before 4.3, which report only State, Interface and SyncID.
type Daemon struct {
	State     State
	Interface string
	SyncID    uint32
	MaxLen    uint16
	Group     netip.Addr
	Port      uint16
	TTL       uint8
}

func (d Daemon) String() string {
	s := fmt.Sprintf("%s on %s syncid %d", d.State, d.Interface, d.SyncID)
	if d.Group.IsValid() {
		s += fmt.Sprintf(" group %s", d.Group)
	}
	if d.Port != 0 {
		s += fmt.Sprintf(" port %d", d.Port)
	}
	if d.TTL != 0 {
		s += fmt.Sprintf(" ttl %d", d.TTL)
	}
	if d.MaxLen != 0 {
		s += fmt.Sprintf(" maxlen %d", d.MaxLen)
	}
	return s
}

// Generic netlink commands and attributes of include/uapi/linux/ip_vs.h.
const (
	genlVersion = 1 // IPVS_GENL_VERSION

	cmdNewDaemon = 9  // IPVS_CMD_NEW_DAEMON
	cmdDelDaemon = 10 // IPVS_CMD_DEL_DAEMON
	cmdGetDaemon = 11 // IPVS_CMD_GET_DAEMON

	cmdAttrDaemon = 3 // IPVS_CMD_ATTR_DAEMON, a nest of the attributes below

	daemonAttrState      = 1 // u32
	daemonAttrMcastIfn   = 2 // NUL-terminated string, at most 15 bytes
	daemonAttrSyncID     = 3 // u32
	daemonAttrSyncMaxLen = 4 // u16 (4.3+)
	daemonAttrMcastGroup = 5 // in_addr, network order (4.3+)
	daemonAttrMcastGrp6  = 6 // in6_addr (4.3+)
	daemonAttrMcastPort  = 7 // u16, host order (4.3+)
	daemonAttrMcastTTL   = 8 // u8 (4.3+)

	// nlaTypeMask strips NLA_F_NESTED and NLA_F_NET_BYTEORDER.
	nlaTypeMask = 0x3fff
)

// ErrNoIPVS means the kernel has no IPVS generic-netlink family.
var ErrNoIPVS = errors.New("kernel has no IPVS")

// Handle talks to the IPVS of one network namespace over one generic
// netlink socket. Its methods are safe for concurrent use.
type Handle struct {
	mu     sync.Mutex
	sh     *nl.SocketHandle
	family uint16
}

// Open returns a Handle on the current network namespace.
func Open() (*Handle, error) { return OpenAt(netns.None()) }

// OpenAt returns a Handle on network namespace ns (netns.None(): current).
func OpenAt(ns netns.NsHandle) (*Handle, error) {
	gh, err := netlink.NewHandleAt(ns, unix.NETLINK_GENERIC)
	if err != nil {
		return nil, fmt.Errorf("open generic netlink: %w", err)
	}
	fam, err := gh.GenlFamilyGet("IPVS")
	gh.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoIPVS, err)
	}
	sock, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_GENERIC)
	if err != nil {
		return nil, fmt.Errorf("open generic netlink: %w", err)
	}
	if err := sock.SetSendTimeout(&nl.SocketTimeoutTv); err != nil {
		sock.Close()
		return nil, err
	}
	if err := sock.SetReceiveTimeout(&nl.SocketTimeoutTv); err != nil {
		sock.Close()
		return nil, err
	}
	return &Handle{sh: &nl.SocketHandle{Socket: sock}, family: fam.ID}, nil
}

// Close releases the socket.
func (h *Handle) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sh.Close()
	return nil
}

// request builds a command; a change asks for an acknowledgement, so that
// its error (or success) comes back before the call returns.
func (h *Handle) request(cmd uint8, flags int) *nl.NetlinkRequest {
	if flags&unix.NLM_F_DUMP == 0 {
		flags |= unix.NLM_F_ACK
	}
	req := nl.NewNetlinkRequest(int(h.family), flags)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_GENERIC: h.sh}
	req.AddData(&nl.Genlmsg{Command: cmd, Version: genlVersion})
	return req
}

// StartDaemon starts d's daemon. A daemon of that state already running is
// syscall.EEXIST; an interface the namespace lacks, syscall.ENODEV.
func (h *Handle) StartDaemon(d Daemon) error {
	if d.State != Master && d.State != Backup {
		return fmt.Errorf("start sync daemon: state %d: %w", uint32(d.State), syscall.EINVAL)
	}
	if d.Interface == "" || len(d.Interface) > unix.IFNAMSIZ-1 {
		return fmt.Errorf("start %s sync daemon: interface %q: %w", d.State, d.Interface, syscall.EINVAL)
	}
	nest := nl.NewRtAttr(cmdAttrDaemon, nil)
	nest.AddRtAttr(daemonAttrState, nl.Uint32Attr(uint32(d.State)))
	nest.AddRtAttr(daemonAttrMcastIfn, nl.ZeroTerminated(d.Interface))
	nest.AddRtAttr(daemonAttrSyncID, nl.Uint32Attr(d.SyncID))
	// The attributes of Linux 4.3 only when they say something: an older
	// kernel ignores attributes it does not know, and would then run with
	// its defaults whatever they asked for.
	if d.MaxLen != 0 {
		nest.AddRtAttr(daemonAttrSyncMaxLen, nl.Uint16Attr(d.MaxLen))
	}
	if d.Group.IsValid() {
		if g := d.Group.Unmap(); g.Is4() {
			b := g.As4()
			nest.AddRtAttr(daemonAttrMcastGroup, b[:])
		} else {
			b := g.As16()
			nest.AddRtAttr(daemonAttrMcastGrp6, b[:])
		}
	}
	if d.Port != 0 {
		// Host order (nla_get_u16), unlike the ports of services.
		nest.AddRtAttr(daemonAttrMcastPort, nl.Uint16Attr(d.Port))
	}
	if d.TTL != 0 {
		nest.AddRtAttr(daemonAttrMcastTTL, nl.Uint8Attr(d.TTL))
	}
	req := h.request(cmdNewDaemon, 0)
	req.AddData(nest)
	if err := h.exec(req, nil); err != nil {
		return fmt.Errorf("start sync daemon %s: %w", d, err)
	}
	return nil
}

// StopDaemon stops the daemon of state s; one that does not run is
// syscall.ESRCH.
func (h *Handle) StopDaemon(s State) error {
	nest := nl.NewRtAttr(cmdAttrDaemon, nil)
	nest.AddRtAttr(daemonAttrState, nl.Uint32Attr(uint32(s)))
	req := h.request(cmdDelDaemon, 0)
	req.AddData(nest)
	start := time.Now()
	err := h.exec(req, nil)
	if errors.Is(err, unix.EAGAIN) {
		// No answer within the socket's timeout: the kernel waits for the
		// daemon's threads to exit, and may have stopped it all the same.
		// Its list says; a stop that happened is not reported as failed.
		if ds, lerr := h.Daemons(); lerr == nil && !slices.ContainsFunc(ds, func(d Daemon) bool { return d.State == s }) {
			return nil
		}
		err = fmt.Errorf("no answer within %v: %w", time.Since(start).Round(time.Millisecond), err)
	}
	if err != nil {
		return fmt.Errorf("stop %s sync daemon: %w", s, err)
	}
	return nil
}

// Daemons lists the daemons running, master first.
func (h *Handle) Daemons() ([]Daemon, error) {
	req := h.request(cmdGetDaemon, unix.NLM_F_DUMP)
	var out []Daemon
	var perr error
	err := h.exec(req, func(msg []byte) {
		d, err := parseDaemon(msg)
		if err != nil {
			perr = errors.Join(perr, err)
			return
		}
		out = append(out, d)
	})
	if err == nil {
		err = perr
	}
	if err != nil {
		return nil, fmt.Errorf("list sync daemons: %w", err)
	}
	return out, nil
}

func (h *Handle) exec(req *nl.NetlinkRequest, each func([]byte)) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return req.ExecuteIter(unix.NETLINK_GENERIC, 0, func(msg []byte) bool {
		if each != nil {
			each(msg)
		}
		return true
	})
}

// parseDaemon reads one IPVS_CMD_NEW_DAEMON message of a dump: the generic
// netlink header, then IPVS_CMD_ATTR_DAEMON with the daemon's attributes.
func parseDaemon(msg []byte) (Daemon, error) {
	var d Daemon
	if len(msg) < nl.SizeofGenlmsg {
		return d, errors.New("short sync daemon message")
	}
	outer, err := nl.ParseRouteAttr(msg[nl.SizeofGenlmsg:])
	if err != nil {
		return d, fmt.Errorf("sync daemon message: %w", err)
	}
	for _, o := range outer {
		if o.Attr.Type&nlaTypeMask != cmdAttrDaemon {
			continue
		}
		attrs, err := nl.ParseRouteAttr(o.Value)
		if err != nil {
			return d, fmt.Errorf("sync daemon attributes: %w", err)
		}
		for _, a := range attrs {
			v := a.Value
			switch a.Attr.Type & nlaTypeMask {
			case daemonAttrState:
				if len(v) >= 4 {
					d.State = State(nl.NativeEndian().Uint32(v))
				}
			case daemonAttrMcastIfn:
				d.Interface = nl.BytesToString(v)
			case daemonAttrSyncID:
				if len(v) >= 4 {
					d.SyncID = nl.NativeEndian().Uint32(v)
				}
			case daemonAttrSyncMaxLen:
				if len(v) >= 2 {
					d.MaxLen = nl.NativeEndian().Uint16(v)
				}
			case daemonAttrMcastGroup:
				if len(v) == 4 {
					d.Group = netip.AddrFrom4([4]byte(v))
				}
			case daemonAttrMcastGrp6:
				if len(v) == 16 {
					d.Group = netip.AddrFrom16([16]byte(v))
				}
			case daemonAttrMcastPort:
				if len(v) >= 2 {
					d.Port = nl.NativeEndian().Uint16(v)
				}
			case daemonAttrMcastTTL:
				if len(v) >= 1 {
					d.TTL = v[0]
				}
			}
		}
		return d, nil
	}
	return d, errors.New("sync daemon message without IPVS_CMD_ATTR_DAEMON")
}
