package dataplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// KernelIPVS lists the table itself rather than through moby/ipvs: the
// resync lists every service and the destinations of each (the kernel has
// no dump of all destinations at once), and moby/ipvs allocates a 64 KiB
// receive buffer per message and a slice per attribute, which at 10,000
// services × 10 made an idle resync cost 12.5 s of CPU in the VM lab. Here
// one buffer serves every dump, a request names only the service's key, and
// the answer is read in place into the same ipvs.Service and
// ipvs.Destination that moby/ipvs returns (TestKernelIPVSDumpMatchesMoby
// holds them equal).

// Commands and attributes of include/uapi/linux/ip_vs.h read by the dumps
// (the others are in ipvs_batch.go).
const (
	ipvsCmdGetService = 4 // IPVS_CMD_GET_SERVICE
	ipvsCmdGetDest    = 8 // IPVS_CMD_GET_DEST

	ipvsSvcAttrStats = 10

	ipvsDestAttrActiveConns   = 7
	ipvsDestAttrInactiveConns = 8
	ipvsDestAttrStats         = 10
	ipvsDestAttrAddrFamily    = 11

	// enum ipvs_stats_attrs (the 32-bit counters moby/ipvs reads)
	ipvsStatsConns    = 1
	ipvsStatsInPkts   = 2
	ipvsStatsOutPkts  = 3
	ipvsStatsInBytes  = 4
	ipvsStatsOutBytes = 5
	ipvsStatsCPS      = 6
	ipvsStatsInPPS    = 7
	ipvsStatsOutPPS   = 8
	ipvsStatsInBPS    = 9
	ipvsStatsOutBPS   = 10

	nlaTypeMask = 0x3fff // without NLA_F_NESTED and NLA_F_NET_BYTEORDER
)

// dumpBufSize holds any one read of a dump: the kernel fills a dump's
// messages into buffers of at most 32 KiB (netlink_dump).
const dumpBufSize = 64 << 10

// GetServices lists every service in one dump.
func (k *KernelIPVS) GetServices() ([]*ipvs.Service, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var (
		svcs  []ipvs.Service
		arena []byte
	)
	req := k.batch.request(ipvsCmdGetService, unix.NLM_F_DUMP, nil)
	err := k.batch.dump(req, ipvsCmdAttrService, func(attrs []byte) error {
		svcs = append(svcs, ipvs.Service{})
		return parseService(&svcs[len(svcs)-1], attrs, &arena)
	})
	if err != nil {
		return nil, fmt.Errorf("dump IPVS services: %w", err)
	}
	return pointers(svcs), nil
}

// GetService reads the service with s's key: one round trip, where
// GetServices dumps every service. A service the kernel does not have is
// syscall.ESRCH, the kernel's answer.
func (k *KernelIPVS) GetService(s *ipvs.Service) (*ipvs.Service, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var (
		out   *ipvs.Service
		arena []byte
	)
	// Not a dump, and without NLM_F_ACK: the answer is the service alone
	// (or the kernel's error), one read, where an acknowledgement after it
	// would cost the kernel a second message and the resync a second read
	// for each service it compares.
	req := k.batch.request(ipvsCmdGetService, 0, s)
	err := k.batch.dump(req, ipvsCmdAttrService, func(attrs []byte) error {
		out = &ipvs.Service{}
		return parseService(out, attrs, &arena)
	})
	if err == nil && out == nil {
		err = syscall.ESRCH
	}
	if err != nil {
		return nil, fmt.Errorf("get IPVS service: %w", err)
	}
	return out, nil
}

// pointers points into s: one allocation for a dump's entries rather
// than one each.
func pointers[T any](s []T) []*T {
	if len(s) == 0 {
		return nil
	}
	out := make([]*T, len(s))
	for i := range s {
		out[i] = &s[i]
	}
	return out
}

// GetDestinations lists the destinations of s in one dump; only s's key
// (family, and fwmark or protocol, address and port) is sent.
func (k *KernelIPVS) GetDestinations(s *ipvs.Service) ([]*ipvs.Destination, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var (
		dests []ipvs.Destination
		arena []byte
	)
	req := k.batch.request(ipvsCmdGetDest, unix.NLM_F_DUMP, s)
	err := k.batch.dump(req, ipvsCmdAttrDest, func(attrs []byte) error {
		dests = append(dests, ipvs.Destination{})
		return parseDestination(&dests[len(dests)-1], attrs, s.AddressFamily, &arena)
	})
	if err != nil {
		return nil, fmt.Errorf("dump IPVS destinations: %w", err)
	}
	return pointers(dests), nil
}

// request builds a request (flags besides NLM_F_REQUEST: NLM_F_DUMP for a
// dump) into the socket's request buffer: the netlink and generic netlink
// headers, and with s the service's key.
func (b *batchSocket) request(cmd uint8, flags uint16, s *ipvs.Service) []byte {
	b.seq++
	r := b.req[:0]
	r = binary.NativeEndian.AppendUint32(r, 0) // length, below
	r = binary.NativeEndian.AppendUint16(r, b.family)
	r = binary.NativeEndian.AppendUint16(r, unix.NLM_F_REQUEST|flags)
	r = binary.NativeEndian.AppendUint32(r, b.seq)
	r = binary.NativeEndian.AppendUint32(r, 0) // pid: the kernel's to fill
	r = append(r, cmd, ipvsGenlVersion, 0, 0)
	if s != nil {
		nest := len(r)
		r = appendAttr(r, ipvsCmdAttrService, nil)
		r = appendServiceKey(r, s)
		binary.NativeEndian.PutUint16(r[nest:], uint16(len(r)-nest))
	}
	binary.NativeEndian.PutUint32(r, uint32(len(r)))
	b.req = r
	return r
}

// appendAttr appends one netlink attribute, padded to 4 bytes.
func appendAttr(b []byte, typ uint16, payload []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(unix.SizeofRtAttr+len(payload)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, payload...)
	for len(b)%unix.NLA_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// dump sends req and hands each answer's top-level attribute of type want
// (its nested attributes) to each, until the kernel says the dump is done;
// a request that is not a dump ends with its one answer, or the error the
// kernel sends instead. The bytes passed to each are only valid during the
// call.
func (b *batchSocket) dump(req []byte, want uint16, each func(attrs []byte) error) error {
	if b.buf == nil {
		b.buf = make([]byte, dumpBufSize)
	}
	isDump := binary.NativeEndian.Uint16(req[6:])&unix.NLM_F_DUMP == unix.NLM_F_DUMP
	fd := b.sock.GetFd()
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	seq := b.seq
	var failed error // a parse error: read on to the end of the dump
	for {
		n, _, err := unix.Recvfrom(fd, b.buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				err = fmt.Errorf("no answer within %v", nl.SocketTimeoutTv)
			}
			return err
		}
		for msgs := b.buf[:n]; len(msgs) >= unix.NLMSG_HDRLEN; {
			l := int(binary.NativeEndian.Uint32(msgs))
			if l < unix.NLMSG_HDRLEN || l > len(msgs) {
				return fmt.Errorf("malformed netlink message (length %d of %d)", l, len(msgs))
			}
			typ := binary.NativeEndian.Uint16(msgs[4:])
			mseq := binary.NativeEndian.Uint32(msgs[8:])
			data := msgs[unix.NLMSG_HDRLEN:l]
			msgs = msgs[min(nlmAlign(l), len(msgs)):]
			if mseq != seq {
				continue // an answer to an earlier request, abandoned
			}
			switch typ {
			case unix.NLMSG_DONE:
				// It carries the dump's own outcome (0, or a
				// negative errno).
				if errno := int32(u32(data)); errno != 0 {
					return syscall.Errno(-errno)
				}
				return failed
			case unix.NLMSG_ERROR:
				if len(data) < 4 {
					return errors.New("short netlink error message")
				}
				if errno := int32(binary.NativeEndian.Uint32(data)); errno != 0 {
					return syscall.Errno(-errno)
				}
				return failed
			}
			if len(data) >= unix.GENL_HDRLEN && failed == nil {
				forAttrs(data[unix.GENL_HDRLEN:], func(typ uint16, v []byte) {
					if typ == want && failed == nil {
						failed = each(v)
					}
				})
			}
			if !isDump {
				return failed
			}
		}
	}
}

func nlmAlign(l int) int { return (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// forAttrs calls fn with the type and payload of each attribute in b.
func forAttrs(b []byte, fn func(typ uint16, v []byte)) {
	for len(b) >= unix.SizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(b))
		if l < unix.SizeofRtAttr || l > len(b) {
			return
		}
		fn(binary.NativeEndian.Uint16(b[2:])&nlaTypeMask, b[unix.SizeofRtAttr:l])
		b = b[min((l+unix.NLA_ALIGNTO-1)&^(unix.NLA_ALIGNTO-1), len(b)):]
	}
}

// u16, u32 and u64 read an attribute of the kernel's byte order; a short
// one reads as zero (the kernel never sends one).
func u16(v []byte) uint16 {
	if len(v) < 2 {
		return 0
	}
	return binary.NativeEndian.Uint16(v)
}

func u32(v []byte) uint32 {
	if len(v) < 4 {
		return 0
	}
	return binary.NativeEndian.Uint32(v)
}

func u64(v []byte) uint64 {
	if len(v) < 8 {
		return 0
	}
	return binary.NativeEndian.Uint64(v)
}

// cString is a NUL-terminated string attribute.
func cString(v []byte) string {
	for i, c := range v {
		if c == 0 {
			return string(v[:i])
		}
	}
	return string(v)
}

// ipOf copies an address attribute (always the 16 bytes of union
// nf_inet_addr) as family reads it, into arena: the addresses of one dump
// share its allocations (each keeps its own bytes when arena grows).
func ipOf(v []byte, family uint16, arena *[]byte) (net.IP, error) {
	n := 16
	if family == syscall.AF_INET {
		n = 4
	} else if family != syscall.AF_INET6 {
		return nil, fmt.Errorf("address of unknown family %d", family)
	}
	if len(v) < n {
		return nil, fmt.Errorf("address attribute of %d bytes", len(v))
	}
	if cap(*arena)-len(*arena) < n {
		*arena = make([]byte, 0, max(1024, 2*cap(*arena)))
	}
	start := len(*arena)
	*arena = append(*arena, v[:n]...)
	return net.IP((*arena)[start : start+n : start+n]), nil
}

// schedulers are the kernel's scheduler names, so that a dump does not
// allocate the same few strings once per service.
var schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos"}

func schedName(v []byte) string {
	if i := bytes.IndexByte(v, 0); i >= 0 {
		v = v[:i]
	}
	for _, s := range schedulers {
		if string(v) == s {
			return s
		}
	}
	return string(v)
}

func parseService(s *ipvs.Service, attrs []byte, arena *[]byte) error {
	var addr []byte
	forAttrs(attrs, func(typ uint16, v []byte) {
		switch typ {
		case ipvsSvcAttrAF:
			s.AddressFamily = u16(v)
		case ipvsSvcAttrProtocol:
			s.Protocol = u16(v)
		case ipvsSvcAttrAddr:
			addr = v
		case ipvsSvcAttrPort:
			if len(v) >= 2 {
				s.Port = binary.BigEndian.Uint16(v)
			}
		case ipvsSvcAttrFWMark:
			s.FWMark = u32(v)
		case ipvsSvcAttrSchedName:
			s.SchedName = schedName(v)
		case ipvsSvcAttrPEName:
			s.PEName = cString(v)
		case ipvsSvcAttrFlags:
			s.Flags = u32(v) // struct ip_vs_flags: the flags, then the mask
		case ipvsSvcAttrTimeout:
			s.Timeout = u32(v)
		case ipvsSvcAttrNetmask:
			s.Netmask = u32(v)
		case ipvsSvcAttrStats:
			s.Stats = parseStats(v)
		}
	})
	if addr != nil {
		ip, err := ipOf(addr, s.AddressFamily, arena)
		if err != nil {
			return fmt.Errorf("service: %w", err)
		}
		s.Address = ip
	}
	return nil
}

// parseDestination reads one destination of a service of family svcAF,
// the destination's family where a kernel before 3.18 does not say it.
func parseDestination(d *ipvs.Destination, attrs []byte, svcAF uint16, arena *[]byte) error {
	var addr []byte
	forAttrs(attrs, func(typ uint16, v []byte) {
		switch typ {
		case ipvsDestAttrAddrFamily:
			d.AddressFamily = u16(v)
		case ipvsDestAttrAddr:
			addr = v
		case ipvsDestAttrPort:
			if len(v) >= 2 {
				d.Port = binary.BigEndian.Uint16(v)
			}
		case ipvsDestAttrFwdMethod:
			d.ConnectionFlags = u32(v)
		case ipvsDestAttrWeight:
			d.Weight = int(int32(u32(v)))
		case ipvsDestAttrUThresh:
			d.UpperThreshold = u32(v)
		case ipvsDestAttrLThresh:
			d.LowerThreshold = u32(v)
		case ipvsDestAttrActiveConns:
			d.ActiveConnections = int(u32(v))
		case ipvsDestAttrInactiveConns:
			d.InactiveConnections = int(u32(v))
		case ipvsDestAttrStats:
			d.Stats = ipvs.DstStats(parseStats(v))
		}
	})
	if d.AddressFamily == 0 {
		d.AddressFamily = svcAF
	}
	if addr != nil {
		ip, err := ipOf(addr, d.AddressFamily, arena)
		if err != nil {
			return fmt.Errorf("destination: %w", err)
		}
		d.Address = ip
	}
	return nil
}

func parseStats(attrs []byte) ipvs.SvcStats {
	var s ipvs.SvcStats
	forAttrs(attrs, func(typ uint16, v []byte) {
		switch typ {
		case ipvsStatsConns:
			s.Connections = u32(v)
		case ipvsStatsInPkts:
			s.PacketsIn = u32(v)
		case ipvsStatsOutPkts:
			s.PacketsOut = u32(v)
		case ipvsStatsInBytes:
			s.BytesIn = u64(v)
		case ipvsStatsOutBytes:
			s.BytesOut = u64(v)
		case ipvsStatsCPS:
			s.CPS = u32(v)
		case ipvsStatsInPPS:
			s.PPSIn = u32(v)
		case ipvsStatsOutPPS:
			s.PPSOut = u32(v)
		case ipvsStatsInBPS:
			s.BPSIn = u32(v)
		case ipvsStatsOutBPS:
			s.BPSOut = u32(v)
		}
	})
	return s
}
