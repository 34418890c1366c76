package migrate

import (
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// wellKnownPorts covers the service names Piranha's GUI and hand-edited
// lvs.cf files use for port (port = http), so an import does not depend on
// the importing host's /etc/services.
var wellKnownPorts = map[string]uint32{
	"ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53, "dns": 53,
	"http": 80, "www": 80, "pop3": 110, "ntp": 123, "imap": 143, "imap2": 143,
	"snmp": 161, "ldap": 389, "https": 443, "smtps": 465, "submission": 587,
	"ldaps": 636, "imaps": 993, "pop3s": 995, "mysql": 3306, "postgresql": 5432,
}

// parsePort reads a port number or a service name.
func parsePort(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 16); err == nil {
		return uint32(n), nil
	}
	if p, ok := wellKnownPorts[strings.ToLower(s)]; ok {
		return p, nil
	}
	if p, err := net.LookupPort("tcp", s); err == nil && p > 0 && p < 65536 {
		return uint32(p), nil
	}
	return 0, fmt.Errorf("%q is not a port number or service name", s)
}

func parseUint(s string, max uint64) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > max {
		return 0, fmt.Errorf("%q is not a whole number between 0 and %d", s, max)
	}
	return n, nil
}

// parseSeconds reads a whole number of seconds, as every file format here
// writes durations.
func parseSeconds(s string) (time.Duration, error) {
	n, err := parseUint(s, 1<<31)
	if err != nil {
		return 0, err
	}
	return time.Duration(n) * time.Second, nil
}

// seconds renders a duration as whole seconds, rounding up so that a
// sub-second value never becomes 0 (which would switch a setting off).
func seconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64((d + time.Second - 1) / time.Second)
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "yes", "true", "on":
		return true, nil
	case "0", "no", "false", "off":
		return false, nil
	}
	return false, fmt.Errorf("%q is not 0 or 1", s)
}

func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	return a.Unmap(), nil
}

// parseMask reads a netmask written either as a dotted IPv4 mask or as a
// prefix length, as lvs.cf and keepalived both allow.
func parseMask(s string, v6 bool) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 8); err == nil {
		if (v6 && n > 128) || (!v6 && n > 32) {
			return 0, fmt.Errorf("prefix length %d is too long", n)
		}
		return uint32(n), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, fmt.Errorf("%q is not a netmask", s)
	}
	b := a.As4()
	m := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	ones := bits.LeadingZeros32(^m)
	if m<<ones != 0 {
		return 0, fmt.Errorf("%q is not a contiguous netmask", s)
	}
	return uint32(ones), nil
}

// maskString writes a prefix length the way the old tools did: a dotted mask
// for IPv4, a number for IPv6.
func maskString(prefix uint32, v6 bool) string {
	if v6 || prefix > 32 {
		return strconv.FormatUint(uint64(prefix), 10)
	}
	m := ^uint32(0) << (32 - prefix)
	if prefix == 0 {
		m = 0
	}
	return netip.AddrFrom4([4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}).String()
}

func isV6(addr string) bool {
	a, err := netip.ParseAddr(addr)
	return err == nil && a.Is6() && !a.Is4In6()
}

// hostPort renders address and port as ipvsadm and the API spell a real
// server: 10.0.0.1:80 or [2001:db8::1]:80.
func hostPort(addr string, port uint32) string {
	if a, err := netip.ParseAddr(addr); err == nil {
		return netip.AddrPortFrom(a, uint16(port)).String()
	}
	return net.JoinHostPort(addr, strconv.FormatUint(uint64(port), 10))
}

// splitInterface turns lvs.cf's "eth0:1" into the device and the alias label.
func splitInterface(dev string) (iface, label string) {
	if i := strings.IndexByte(dev, ':'); i >= 0 {
		return dev[:i], dev
	}
	return dev, ""
}

// decodeEscapes undoes the backslash escapes Piranha's nanny understood in
// send and expect strings (\\ \r \n \t \' \"); any other backslash stays as
// written, as nanny left it.
func decodeEscapes(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '\\':
			b.WriteByte('\\')
		case 'r':
			b.WriteByte('\r')
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case '\'':
			b.WriteByte('\'')
		case '"':
			b.WriteByte('"')
		default:
			b.WriteByte(c)
			continue
		}
		i++
	}
	return b.String()
}

// encodeEscapes writes s as a double-quoted string that decodeEscapes reads
// back exactly.
func encodeEscapes(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\r':
			b.WriteString(`\r`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// plainToken reports whether s can be written unquoted in lvs.cf or
// keepalived.conf.
func plainToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c <= ' ', c == '"', c == '\'', c == '#', c == '!', c == '{', c == '}', c == '\\', c == '=', c >= 0x7f:
			return false
		}
	}
	return true
}

// addrBits is 32 or 128, the length of a single-address prefix.
func addrBits(addr string) int {
	if isV6(addr) {
		return 128
	}
	return 32
}

// parseTimer reads keepalived's <TIMER>: seconds with up to six decimals
// ("3", "2.5", "0.000001"), its resolution being a microsecond. Zero is
// refused: every keepalived timer has a minimum of one microsecond.
func parseTimer(s string) (time.Duration, error) {
	whole, frac, dot := strings.Cut(s, ".")
	bad := fmt.Errorf("%q is not a time in seconds (such as 3 or 2.5)", s)
	if whole == "" && frac == "" || dot && frac == "" || len(frac) > 6 || !allDigits(whole) || !allDigits(frac) {
		return 0, bad
	}
	sec := uint64(0)
	if whole != "" {
		var err error
		if sec, err = parseUint(whole, 1<<31); err != nil {
			return 0, bad
		}
	}
	us := uint64(0)
	for i := 0; i < 6; i++ {
		us *= 10
		if i < len(frac) {
			us += uint64(frac[i] - '0')
		}
	}
	d := time.Duration(sec)*time.Second + time.Duration(us)*time.Microsecond
	if d <= 0 {
		return 0, fmt.Errorf("%q: must be more than 0", s)
	}
	return d, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// timerString writes d as keepalived's <TIMER>, rounded up to its
// microsecond resolution so that it never becomes 0.
func timerString(d time.Duration) string {
	if r := d % time.Microsecond; r != 0 {
		d += time.Microsecond - r
	}
	s := strconv.FormatInt(int64(d/time.Second), 10)
	if us := int64(d%time.Second) / int64(time.Microsecond); us != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%06d", us), "0")
	}
	return s
}
