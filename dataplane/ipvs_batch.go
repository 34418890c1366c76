package dataplane

import (
	"encoding/binary"
	"fmt"
	"net"

	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// IPVSAdder is an IPVS that can add many entries in one round trip. moby/ipvs
// makes one (send, wait for the answer) per entry, which is what ipvsadm -R
// does too; programming 100,000 destinations from empty is then 100,000 round
// trips. *KernelIPVS implements it; the reconciler uses it where it has many
// entries to add, and the IPVS interface elsewhere.
type IPVSAdder interface {
	// Add adds each entry in order: a service (Dest nil) or a destination
	// of Service. It returns one error per entry, nil where it was added;
	// an entry after a failed one is still tried.
	Add(entries []IPVSEntry) []error
}

// IPVSEntry is one service or destination to add.
type IPVSEntry struct {
	Service *ipvs.Service
	Dest    *ipvs.Destination // nil: the service itself
}

// Generic netlink commands and attributes of include/uapi/linux/ip_vs.h,
// encoded as moby/ipvs encodes them (fillService, fillDestination), so that
// an entry added in a batch is the same as one added alone.
const (
	ipvsGenlVersion = 1

	ipvsCmdNewService = 1 // IPVS_CMD_NEW_SERVICE
	ipvsCmdNewDest    = 5 // IPVS_CMD_NEW_DEST

	ipvsCmdAttrService = 1 // IPVS_CMD_ATTR_SERVICE
	ipvsCmdAttrDest    = 2 // IPVS_CMD_ATTR_DEST

	ipvsSvcAttrAF        = 1
	ipvsSvcAttrProtocol  = 2
	ipvsSvcAttrAddr      = 3
	ipvsSvcAttrPort      = 4
	ipvsSvcAttrFWMark    = 5
	ipvsSvcAttrSchedName = 6
	ipvsSvcAttrFlags     = 7
	ipvsSvcAttrTimeout   = 8
	ipvsSvcAttrNetmask   = 9
	ipvsSvcAttrPEName    = 11

	ipvsDestAttrAddr      = 1
	ipvsDestAttrPort      = 2
	ipvsDestAttrFwdMethod = 3
	ipvsDestAttrWeight    = 4
	ipvsDestAttrUThresh   = 5
	ipvsDestAttrLThresh   = 6
)

// batchSocket is the generic netlink socket of Add and of the listings
// (ipvs_dump.go), apart from moby/ipvs's own so that their sequence numbers
// never meet.
type batchSocket struct {
	sock   *nl.NetlinkSocket
	family uint16
	seq    uint32
	req    []byte // a dump's request, reused
	buf    []byte // a dump's answers, reused (dumpBufSize)
}

func openBatchSocket() (*batchSocket, error) {
	fam, err := netlink.GenlFamilyGet("IPVS")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoIPVS, err)
	}
	sock, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_GENERIC)
	if err != nil {
		return nil, fmt.Errorf("open generic netlink: %w", err)
	}
	if err := sock.SetReceiveTimeout(&nl.SocketTimeoutTv); err != nil {
		sock.Close()
		return nil, err
	}
	return &batchSocket{sock: sock, family: fam.ID}, nil
}

// Add implements IPVSAdder: up to maxBatch commands per write, then their
// answers, matched by sequence number (sendBatch).
func (k *KernelIPVS) Add(entries []IPVSEntry) []error {
	k.mu.Lock()
	defer k.mu.Unlock()
	errs := make([]error, len(entries))
	for start := 0; start < len(entries); start += maxBatch {
		end := min(start+maxBatch, len(entries))
		if err := k.batch.add(entries[start:end], errs[start:end]); err != nil {
			// The answers of this write are lost with the socket's
			// state: say so for every entry not yet answered, and stop.
			for i := start; i < len(entries); i++ {
				if errs[i] == nil {
					errs[i] = err
				}
			}
			break
		}
	}
	return errs
}

func (b *batchSocket) add(entries []IPVSEntry, errs []error) error {
	var buf []byte
	first := b.seq + 1
	for _, e := range entries {
		cmd := uint8(ipvsCmdNewService)
		if e.Dest != nil {
			cmd = ipvsCmdNewDest
		}
		req := nl.NewNetlinkRequest(int(b.family), unix.NLM_F_ACK)
		b.seq++
		req.Seq = b.seq
		req.AddData(&nl.Genlmsg{Command: cmd, Version: ipvsGenlVersion})
		req.AddData(serviceAttr(e.Service))
		if e.Dest != nil {
			req.AddData(destAttr(e.Dest))
		}
		buf = append(buf, req.Serialize()...)
	}
	if err := sendBatch(b.sock, first, buf, errs); err != nil {
		return fmt.Errorf("IPVS: %w", err)
	}
	return nil
}

func (b *batchSocket) close() { b.sock.Close() }

// appendServiceKey appends the attributes that name s to the kernel: its
// family, then its fwmark or its protocol, address and port. It is the one
// encoding of the key, for the listings' requests and for Add alike.
func appendServiceKey(b []byte, s *ipvs.Service) []byte {
	b = appendAttr(b, ipvsSvcAttrAF, binary.NativeEndian.AppendUint16(nil, s.AddressFamily))
	if s.FWMark != 0 {
		return appendAttr(b, ipvsSvcAttrFWMark, binary.NativeEndian.AppendUint32(nil, s.FWMark))
	}
	b = appendAttr(b, ipvsSvcAttrProtocol, binary.NativeEndian.AppendUint16(nil, s.Protocol))
	b = appendAttr(b, ipvsSvcAttrAddr, ipBytes(s.Address))
	return appendAttr(b, ipvsSvcAttrPort, binary.BigEndian.AppendUint16(nil, s.Port))
}

// serviceAttr is the whole service, for NEW_SERVICE and NEW_DEST. The key
// goes in as the nest's own data: nl.RtAttr serializes its data before its
// children, and the key's attributes are each padded to 4 bytes, so the
// bytes are those of the key's attributes added as children.
func serviceAttr(s *ipvs.Service) *nl.RtAttr {
	a := nl.NewRtAttr(ipvsCmdAttrService, appendServiceKey(nil, s))
	a.AddRtAttr(ipvsSvcAttrSchedName, nl.ZeroTerminated(s.SchedName))
	if s.PEName != "" {
		a.AddRtAttr(ipvsSvcAttrPEName, nl.ZeroTerminated(s.PEName))
	}
	// struct ip_vs_flags {flags, mask}: every bit is ours to say.
	flags := binary.NativeEndian.AppendUint32(nil, s.Flags)
	a.AddRtAttr(ipvsSvcAttrFlags, binary.NativeEndian.AppendUint32(flags, 0xFFFFFFFF))
	a.AddRtAttr(ipvsSvcAttrTimeout, nl.Uint32Attr(s.Timeout))
	a.AddRtAttr(ipvsSvcAttrNetmask, nl.Uint32Attr(s.Netmask))
	return a
}

func destAttr(d *ipvs.Destination) *nl.RtAttr {
	a := nl.NewRtAttr(ipvsCmdAttrDest, nil)
	a.AddRtAttr(ipvsDestAttrAddr, ipBytes(d.Address))
	a.AddRtAttr(ipvsDestAttrPort, binary.BigEndian.AppendUint16(nil, d.Port))
	a.AddRtAttr(ipvsDestAttrFwdMethod, nl.Uint32Attr(d.ConnectionFlags&ipvs.ConnectionFlagFwdMask))
	a.AddRtAttr(ipvsDestAttrWeight, nl.Uint32Attr(uint32(d.Weight)))
	a.AddRtAttr(ipvsDestAttrUThresh, nl.Uint32Attr(d.UpperThreshold))
	a.AddRtAttr(ipvsDestAttrLThresh, nl.Uint32Attr(d.LowerThreshold))
	return a
}

// ipBytes is the address as the kernel reads it: 4 bytes for IPv4 (the
// attribute is a union nf_inet_addr; the kernel copies its length).
func ipBytes(ip net.IP) []byte {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip
}
