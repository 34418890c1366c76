package liveness

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// icmpSocket is a raw ICMPv4 socket that sees echo requests and replies
// with the kernel's receive time of each. The kernel itself answers echo
// requests; the socket only gets copies, so reading them late loses
// nothing but the chance to act sooner.
type icmpSocket struct {
	fd  int
	buf []byte
	oob []byte
}

// icmp message types and the raw socket option that filters them
// (linux/icmp.h).
const (
	icmpEchoReply   = 0
	icmpEchoRequest = 8
	icmpFilter      = 1
)

func openICMP() (*icmpSocket, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		return nil, fmt.Errorf("open raw ICMP socket (needs CAP_NET_RAW): %w", err)
	}
	s := &icmpSocket{fd: fd, buf: make([]byte, 1500), oob: make([]byte, 128)}
	// Only echo requests and replies; the filter's set bits are the types
	// dropped.
	pass := uint32(1<<icmpEchoReply | 1<<icmpEchoRequest)
	for _, o := range []struct {
		level, name, value int
		what               string
	}{
		{unix.SOL_RAW, icmpFilter, int(int32(^pass)), "ICMP_FILTER"},
		{unix.SOL_SOCKET, unix.SO_TIMESTAMPNS_NEW, 1, "SO_TIMESTAMPNS_NEW"},
		// A leader that did not run for a while reads what queued up:
		// a second of probes from a few peers.
		{unix.SOL_SOCKET, unix.SO_RCVBUF, 1 << 20, "SO_RCVBUF"},
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.name, o.value); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("raw ICMP socket: set %s: %w", o.what, err)
		}
	}
	return s, nil
}

func (s *icmpSocket) close() error { return unix.Close(s.fd) }

// magic starts the payload of shoal's probes.
const magic = "shl1"

// sendEcho sends an echo request to dst. Its payload names the newest
// probe answered so far (answered, when ok), so that the receiver learns
// which of its answers got back.
func (s *icmpSocket) sendEcho(dst netip.Addr, id, seq, answered uint16, ok bool) error {
	var b [16]byte
	b[0] = icmpEchoRequest
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], magic)
	binary.BigEndian.PutUint16(b[12:], answered)
	if ok {
		b[14] = 1
	}
	binary.BigEndian.PutUint16(b[2:], checksum(b[:]))
	err := unix.Sendto(s.fd, b[:], unix.MSG_DONTWAIT, &unix.SockaddrInet4{Addr: dst.As4()})
	if err != nil {
		return fmt.Errorf("send ICMP echo to %s: %w", dst, err)
	}
	return nil
}

// echo is one echo request or reply as the kernel received it.
type echo struct {
	src     netip.Addr
	typ     uint8
	id, seq uint16
	// shoal marks shoal's probes; answered is the newest probe their
	// sender had an answer to, when hasAnswered.
	shoal       bool
	answered    uint16
	hasAnswered bool
	at          time.Time // kernel receive time, on now's monotonic clock
}

// drain hands every queued echo to fn, without blocking. now is the
// caller's current time: the kernel stamps packets with the wall clock,
// which drain turns into times on now's monotonic clock.
func (s *icmpSocket) drain(now time.Time, fn func(echo)) error {
	for {
		n, oobn, _, _, err := unix.Recvmsg(s.fd, s.buf, s.oob, unix.MSG_DONTWAIT)
		switch {
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			return nil
		case err != nil:
			return fmt.Errorf("read raw ICMP socket: %w", err)
		}
		e, ok := parseEcho(s.buf[:n])
		if !ok {
			continue
		}
		e.at = now
		if stamp, ok := kernelStamp(s.oob[:oobn]); ok {
			e.at = onClockOf(now, stamp)
		}
		fn(e)
	}
}

// parseEcho reads an IPv4 packet holding an ICMP echo request or reply.
func parseEcho(b []byte) (echo, bool) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return echo{}, false
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || len(b) < ihl+8 {
		return echo{}, false
	}
	m := b[ihl:]
	if m[0] != icmpEchoRequest && m[0] != icmpEchoReply || m[1] != 0 {
		return echo{}, false
	}
	e := echo{
		src: netip.AddrFrom4([4]byte(b[12:16])),
		typ: m[0],
		id:  binary.BigEndian.Uint16(m[4:]),
		seq: binary.BigEndian.Uint16(m[6:]),
	}
	if p := m[8:]; len(p) >= 7 && string(p[:4]) == magic {
		e.shoal = true
		if p[6] == 1 {
			e.answered, e.hasAnswered = binary.BigEndian.Uint16(p[4:]), true
		}
	}
	return e, true
}

// kernelStamp reads the SO_TIMESTAMPNS_NEW control message: a 64-bit
// seconds and nanoseconds pair of the wall clock.
func kernelStamp(oob []byte) (time.Time, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS_NEW && len(m.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(m.Data))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:]))
			return time.Unix(sec, nsec), true
		}
	}
	return time.Time{}, false
}

// onClockOf places a wall-clock stamp on now's monotonic clock, where
// the callers compare times. A stamp from the future counts as now. Only
// a step of the wall clock between a packet's arrival and its reading
// could misplace it, by the step; time daemons slew the clock instead.
func onClockOf(now, stamp time.Time) time.Time {
	age := now.Round(0).Sub(stamp)
	if age < 0 {
		age = 0
	}
	return now.Add(-age)
}

// checksum is the Internet checksum (RFC 1071) of b.
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
