package migrate

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

const kaSyncConf = `
global_defs {
    router_id lvs1
    lvs_sync_daemon eth1 VI_1 maxlen 1400 port 8850 ttl 2 group 239.1.1.81
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        192.0.2.10/24
    }
}
virtual_server 192.0.2.10 80 {
    lb_algo rr
    lb_kind DR
    real_server 10.0.0.1 80 {
    }
}
`

func TestKeepalivedSyncImport(t *testing.T) {
	r, err := Import([]byte(kaSyncConf), noFiles(Options{Format: FormatKeepalived}))
	if err != nil {
		t.Fatal(err)
	}
	want := &shoalv1.ConnectionSync{Enabled: true, Interface: "eth1", SyncId: 51, MaxLen: 1400, Port: 8850, Ttl: 2, Group: "239.1.1.81"}
	if got := r.Config.GetGlobal().GetConnectionSync(); !proto.Equal(got, want) {
		t.Errorf("connection_sync %v, want %v", got, want)
	}
	notes := notesText(r.Notes)
	for _, n := range []string{
		"lvs_sync_daemon: no id: sync_id 51, the virtual_router_id of VI_1, as keepalived does",
		"lvs_sync_daemon: imported as global.connection_sync: the Raft leader runs the master and every router a backup, whatever the state of vrrp_instance VI_1",
		"global_defs: not imported: router_id",
	} {
		if !strings.Contains(notes, n) {
			t.Errorf("notes lack %q:\n%s", n, notes)
		}
	}
	if !contains(r.GlobalSet, "connection_sync") {
		t.Errorf("global_set %v lacks connection_sync", r.GlobalSet)
	}

	out, _, err := Export(r.Config, FormatKeepalived)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "lvs_sync_daemon eth1 VI_1 id 51 maxlen 1400 port 8850 ttl 2 group 239.1.1.81") {
		t.Errorf("export:\n%s", out)
	}
	roundTrip(t, FormatKeepalived, []byte(kaSyncConf))
}

func TestKeepalivedSyncLegacyAndErrors(t *testing.T) {
	legacy := strings.Replace(kaSyncConf, "    lvs_sync_daemon eth1 VI_1 maxlen 1400 port 8850 ttl 2 group 239.1.1.81\n", "", 1)
	legacy = strings.Replace(legacy, "    interface eth0\n", "    interface eth0\n    lvs_sync_daemon_interface eth2\n", 1)
	r, err := Import([]byte(legacy), noFiles(Options{Format: FormatKeepalived}))
	if err != nil {
		t.Fatal(err)
	}
	cs := r.Config.GetGlobal().GetConnectionSync()
	if !cs.GetEnabled() || cs.GetInterface() != "eth2" || cs.GetSyncId() != 51 || cs.GetPort() != 8848 {
		t.Errorf("legacy lvs_sync_daemon_interface: %v", cs)
	}
	roundTrip(t, FormatKeepalived, []byte(legacy))

	for _, bad := range []string{
		"lvs_sync_daemon eth1 VI_1 id 300",
		"lvs_sync_daemon eth1 VI_1 id",
		"lvs_sync_daemon eth1 VI_1 speed 3",
		"lvs_sync_daemon eth1 VI_1 group 10.0.0.1",
		"lvs_sync_daemon",
	} {
		conf := strings.Replace(kaSyncConf, "lvs_sync_daemon eth1 VI_1 maxlen 1400 port 8850 ttl 2 group 239.1.1.81", bad, 1)
		if _, err := Import([]byte(conf), noFiles(Options{Format: FormatKeepalived})); err == nil {
			t.Errorf("%q imported without an error", bad)
		}
	}
}

func TestLVSCFSync(t *testing.T) {
	conf := "serial_no = 1\nsyncdaemon = 1\nsyncd_iface = eth1:2\nsyncd_id = 9\n\nvirtual web {\n address = 192.0.2.1 eth0:1\n port = 80\n server a {\n  address = 10.0.0.1\n }\n}\n"
	r, err := Import([]byte(conf), noFiles(Options{Format: FormatLVSCF}))
	if err != nil {
		t.Fatal(err)
	}
	cs := r.Config.GetGlobal().GetConnectionSync()
	if !cs.GetEnabled() || cs.GetInterface() != "eth1" || cs.GetSyncId() != 9 {
		t.Errorf("lvs.cf sync: %v", cs)
	}
	if !strings.Contains(notesText(r.Notes), "syncd_iface: alias eth1:2: the daemon uses the device eth1") {
		t.Errorf("notes: %s", notesText(r.Notes))
	}
	out, _, err := Export(r.Config, FormatLVSCF)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "syncdaemon = 1\nsyncd_iface = eth1\nsyncd_id = 9\n") {
		t.Errorf("export:\n%s", out)
	}
	roundTrip(t, FormatLVSCF, []byte(conf))

	// Off, as Piranha's GUI writes it, stays off; a bad id is refused.
	off, err := Import([]byte("syncdaemon = 0\nsyncd_iface = eth0\nvirtual web {\n address = 192.0.2.1\n server a {\n  address = 10.0.0.1\n }\n}\n"), noFiles(Options{Format: FormatLVSCF}))
	if err != nil || off.Config.GetGlobal().GetConnectionSync().GetEnabled() || off.Config.GetGlobal().GetConnectionSync().GetInterface() != "eth0" {
		t.Errorf("syncdaemon = 0: %v %v", off, err)
	}
	if _, err := Import([]byte("syncd_id = 256\n"), noFiles(Options{Format: FormatLVSCF})); err == nil {
		t.Error("syncd_id 256 imported")
	}

	// What lvs.cf cannot say is a note.
	r.Config.Global.ConnectionSync.Port = 9000
	r.Config.Global.ConnectionSync.SyncPersistMode = proto.Bool(true)
	_, notes, err := Export(r.Config, FormatLVSCF)
	if err != nil {
		t.Fatal(err)
	}
	if n := notesText(notes); !strings.Contains(n, "port 9000 cannot be written in lvs.cf") || !strings.Contains(n, "sync_persist_mode (net.ipv4.vs sysctls) cannot be written in lvs.cf") {
		t.Errorf("export notes: %s", n)
	}
	_, notes, err = Export(r.Config, FormatIPVSADM)
	if err != nil || !strings.Contains(notesText(notes), "ipvsadm --start-daemon master|backup --mcast-interface eth1 --syncid 9") {
		t.Errorf("ipvsadm export notes: %s %v", notesText(notes), err)
	}
}

func notesText(ns []Note) string {
	var b strings.Builder
	for _, n := range ns {
		b.WriteString(n.String() + "\n")
	}
	return b.String()
}
