package ipvssync

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink/nl"
)

func TestReadConns(t *testing.T) {
	table := `Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
TCP 0A000164 9C40 0A00010A 0050 0A00020B 0050 ESTABLISHED     899
UDP 0A000164 D431 0A00010A 0035 0A00020C 0035 UDP             299
IP  0A000164 0000 0A00010A 0050 0A00020B 0050 NONE            359
TCP 2001:0db8:0000:0000:0000:0000:0000:0064 9C40 2001:0db8:0000:0000:0000:0000:0000:000a 0050 2001:0db8:0000:0000:0000:0000:0000:000b 0050 SYN_RECV         59
TCP 0A000165 9C40 0A00010A 0050 0A00020B 0050 ESTABLISHED     899 sip 1234
`
	conns, err := ReadConns(strings.NewReader(table))
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != 5 {
		t.Fatalf("%d connections: %v", len(conns), conns)
	}
	if c := conns[0]; c.Key != "TCP 0A000164 9C40 0A00010A 0050 0A00020B 0050" || !c.Established() {
		t.Errorf("first: %+v", c)
	}
	for _, c := range conns[1:4] {
		if c.Established() {
			t.Errorf("%+v counted as established", c)
		}
	}
	if !strings.HasPrefix(conns[3].Key, "TCP 2001:0db8:") {
		t.Errorf("IPv6 key %q", conns[3].Key)
	}
	if _, err := ReadConns(strings.NewReader("TCP 0A000164 9C40\n")); err == nil {
		t.Error("a cut-off line read without an error")
	}
}

// TestParseDaemon reads back what the kernel sends for a dump
// (ip_vs_genl_fill_daemon), built with the same attribute helpers.
func TestParseDaemon(t *testing.T) {
	nest := nl.NewRtAttr(cmdAttrDaemon, nil)
	nest.AddRtAttr(daemonAttrState, nl.Uint32Attr(uint32(Backup)))
	nest.AddRtAttr(daemonAttrMcastIfn, nl.ZeroTerminated("eth0"))
	nest.AddRtAttr(daemonAttrSyncID, nl.Uint32Attr(7))
	nest.AddRtAttr(daemonAttrSyncMaxLen, nl.Uint16Attr(1472))
	nest.AddRtAttr(daemonAttrMcastPort, nl.Uint16Attr(8848))
	nest.AddRtAttr(daemonAttrMcastTTL, nl.Uint8Attr(1))
	nest.AddRtAttr(daemonAttrMcastGroup, []byte{224, 0, 0, 81})
	msg := append((&nl.Genlmsg{Command: cmdNewDaemon, Version: genlVersion}).Serialize(), nest.Serialize()...)
	d, err := parseDaemon(msg)
	if err != nil {
		t.Fatal(err)
	}
	want := Daemon{State: Backup, Interface: "eth0", SyncID: 7, MaxLen: 1472, Group: netip.MustParseAddr("224.0.0.81"), Port: 8848, TTL: 1}
	if d != want {
		t.Errorf("parsed %+v, want %+v", d, want)
	}
	if got := d.String(); got != "backup on eth0 syncid 7 group 224.0.0.81 port 8848 ttl 1 maxlen 1472" {
		t.Errorf("String() = %q", got)
	}

	// A kernel before 4.3 reports three attributes.
	old := nl.NewRtAttr(cmdAttrDaemon, nil)
	old.AddRtAttr(daemonAttrState, nl.Uint32Attr(uint32(Master)))
	old.AddRtAttr(daemonAttrMcastIfn, nl.ZeroTerminated("bond0"))
	old.AddRtAttr(daemonAttrSyncID, nl.Uint32Attr(0))
	d, err = parseDaemon(append((&nl.Genlmsg{Command: cmdNewDaemon, Version: genlVersion}).Serialize(), old.Serialize()...))
	if err != nil || d != (Daemon{State: Master, Interface: "bond0"}) {
		t.Errorf("old kernel: %+v, %v", d, err)
	}
	if _, err := parseDaemon([]byte{1, 2}); err == nil {
		t.Error("short message parsed")
	}
}
