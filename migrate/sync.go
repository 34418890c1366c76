package migrate

import (
	"fmt"
	"strings"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// Connection sync (global.connection_sync) in the formats shoal replaces:
//
//	keepalived.conf  global_defs { lvs_sync_daemon IFACE VRRP_INSTANCE [id N]
//	                 [maxlen N] [port N] [ttl N] [group ADDR] }, and the older
//	                 vrrp_instance { lvs_sync_daemon_interface IFACE }; without
//	                 an id keepalived uses the instance's virtual_router_id.
//	lvs.cf           syncdaemon = 0|1, syncd_iface = IFACE, syncd_id = N
//	ipvsadm-save     nothing: the daemons are started with ipvsadm
//	                 --start-daemon, which ipvsadm-save does not write.
//
// keepalived ran the master daemon on the router whose VRRP instance was
// master and the backup on the others; shoal runs a backup on every router
// and a master on the Raft leader as well, so the instance's name is kept
// only in a note.

const syncPath = "global.connection_sync"

// kaSyncDecl is a sync daemon declared in keepalived.conf.
type kaSyncDecl struct {
	node     *kaNode
	instance string
	idSet    bool
	cs       *shoalv1.ConnectionSync
}

// kaSyncDaemon reads global_defs' lvs_sync_daemon.
func (im *importer) kaSyncDaemon(n *kaNode) *kaSyncDecl {
	if len(n.args) < 2 {
		im.kaStrict(n, "lvs_sync_daemon wants INTERFACE [VRRP_INSTANCE] [id N] [maxlen N] [port N] [ttl N] [group ADDRESS]")
		return nil
	}
	d := &kaSyncDecl{node: n, cs: &shoalv1.ConnectionSync{Enabled: true, Interface: n.args[1]}}
	rest := n.args[2:]
	if len(rest) > 0 && !kaSyncOption[rest[0]] {
		d.instance, rest = rest[0], rest[1:]
	}
	for len(rest) > 0 {
		opt := rest[0]
		if !kaSyncOption[opt] || len(rest) < 2 {
			im.kaStrict(n, "lvs_sync_daemon: %q: want id, maxlen, port, ttl or group, each with a value", opt)
			return nil
		}
		v := rest[1]
		rest = rest[2:]
		var err error
		switch opt {
		case "id":
			var id uint64
			id, err = parseUint(v, config.MaxSyncID)
			d.cs.SyncId, d.idSet = uint32(id), true
		case "maxlen":
			var l uint64
			l, err = parseUint(v, 65535)
			d.cs.MaxLen = uint32(l)
		case "port":
			d.cs.Port, err = parsePort(v)
		case "ttl":
			var t uint64
			t, err = parseUint(v, 255)
			d.cs.Ttl = uint32(t)
		case "group":
			a, perr := parseAddr(v)
			d.cs.Group, err = a.String(), perr
		}
		if err != nil {
			im.kaStrict(n, "lvs_sync_daemon %s: %v", opt, err)
			return nil
		}
	}
	return d
}

var kaSyncOption = map[string]bool{"id": true, "maxlen": true, "port": true, "ttl": true, "group": true}

// kaSync turns the declared sync daemon into global.connection_sync.
// vrids maps VRRP instance names to their virtual_router_id, which
// keepalived takes as the sync id when none is given.
func (im *importer) kaSync(c *shoalv1.Config, decls []*kaSyncDecl, vrids map[string]uint32) {
	if len(decls) == 0 {
		return
	}
	d := decls[0]
	for _, other := range decls[1:] {
		im.kaNote(other.node, other.node.args[0], "not imported: %s on line %d already declares the sync daemon (keepalived runs one)", d.node.args[0], d.node.line)
	}
	if !d.idSet {
		if id, ok := vrids[d.instance]; ok {
			d.cs.SyncId = id
			im.kaNote(d.node, d.node.args[0], "no id: sync_id %d, the virtual_router_id of %s, as keepalived does", id, d.instance)
		}
	}
	how := "the Raft leader runs the master and every router a backup"
	if d.instance != "" {
		how += ", whatever the state of vrrp_instance " + d.instance
	}
	im.kaNote(d.node, d.node.args[0], "imported as global.connection_sync: %s", how)
	c.Global.ConnectionSync = d.cs
	im.setGlobal("connection_sync")
	im.kaMark(syncPath, d.node)
}

// kaExportSync writes global.connection_sync as global_defs'
// lvs_sync_daemon, naming the VRRP instance on its interface. ifaces are
// the interfaces of the instances written, VI_1 first.
func (ex *exporter) kaExportSync(cs *shoalv1.ConnectionSync, ifaces []string) {
	if !cs.GetEnabled() {
		ex.note(syncPath, "off: not written (keepalived has no sync daemon that is declared and off)")
		return
	}
	dev := cs.GetInterface()
	inst := 0
	for i, f := range ifaces {
		if f == dev {
			inst = i
		}
	}
	if dev == "" {
		if len(ifaces) == 0 {
			ex.note(syncPath, "cannot be written: no interface (each router's lvsd --interface) and no VRRP instance to take one from")
			return
		}
		dev = ifaces[0]
		ex.note(syncPath+".interface", "empty (each router's lvsd --interface): written as %s, the interface of VI_1", dev)
	}
	line := fmt.Sprintf("lvs_sync_daemon %s VI_%d id %d", dev, inst+1, cs.GetSyncId())
	if cs.GetMaxLen() != 0 {
		line += fmt.Sprintf(" maxlen %d", cs.GetMaxLen())
	}
	if p := cs.GetPort(); p != 0 && p != config.DefaultSyncPort {
		line += fmt.Sprintf(" port %d", p)
	}
	if t := cs.GetTtl(); t != 0 && t != config.DefaultSyncTTL {
		line += fmt.Sprintf(" ttl %d", t)
	}
	if g := cs.GetGroup(); g != "" && g != config.DefaultSyncGroup {
		line += " group " + g
	}
	ex.printf("\nglobal_defs {\n    %s\n}\n", line)
	ex.syncSysctlNote(cs, "keepalived.conf")
}

func (ex *exporter) syncSysctlNote(cs *shoalv1.ConnectionSync, format string) {
	var lost []string
	if cs.SyncThreshold != nil {
		lost = append(lost, "sync_threshold")
	}
	if cs.SyncPeriod != nil {
		lost = append(lost, "sync_period")
	}
	if cs.SyncRefreshPeriod != nil {
		lost = append(lost, "sync_refresh_period")
	}
	if cs.SyncPersistMode != nil {
		lost = append(lost, "sync_persist_mode")
	}
	if len(lost) > 0 {
		ex.note(syncPath, "%s (net.ipv4.vs sysctls) cannot be written in %s; an import keeps the cluster's values", strings.Join(lost, ", "), format)
	}
}

// lvsSyncKey reads one of lvs.cf's sync keys into cs.
func (im *importer) lvsSyncKey(cs *shoalv1.ConnectionSync, k lvsKey) {
	switch k.key {
	case "syncdaemon":
		on, err := parseBool(k.val)
		if err != nil {
			im.strictf(k.line, "syncdaemon: %v", err)
			return
		}
		cs.Enabled = on
		im.mark(syncPath, k.line)
	case "syncd_iface":
		dev, label := splitInterface(k.val)
		// A name that starts with "#" is the kernel's to allow, but lvs.cf
		// cannot write it back ("syncd_iface = #x" reads as a comment).
		if dev == "" || strings.ContainsAny(k.val, " \t") || strings.HasPrefix(dev, "#") {
			im.strictf(k.line, "syncd_iface: %q is not a device name", k.val)
			return
		}
		if label != "" {
			im.note(k.line, k.key, "alias %s: the daemon uses the device %s", label, dev)
		}
		cs.Interface = dev
		im.mark(syncPath+".interface", k.line)
	case "syncd_id":
		id, err := parseUint(k.val, config.MaxSyncID)
		if err != nil {
			im.strictf(k.line, "syncd_id: %v", err)
			return
		}
		cs.SyncId = uint32(id)
		im.mark(syncPath+".sync_id", k.line)
	}
	im.setGlobal("connection_sync")
}

// lvsExportSync writes global.connection_sync as lvs.cf's sync keys.
func (ex *exporter) lvsExportSync(cs *shoalv1.ConnectionSync) {
	if cs == nil {
		return
	}
	ex.printf("syncdaemon = %d\n", b2i(cs.GetEnabled()))
	switch dev := cs.GetInterface(); {
	case strings.HasPrefix(dev, "#"):
		// The kernel allows the name; lvs.cf's reader would take it for a
		// comment after "syncd_iface = ".
		ex.note(syncPath+".interface", "interface %q cannot be written in lvs.cf (it would read as a comment); an import uses each router's lvsd --interface", dev)
	case dev != "":
		ex.printf("syncd_iface = %s\n", dev)
	}
	if cs.GetSyncId() != 0 {
		ex.printf("syncd_id = %d\n", cs.GetSyncId())
	}
	var lost []string
	if g := cs.GetGroup(); g != "" && g != config.DefaultSyncGroup {
		lost = append(lost, "group "+g)
	}
	if p := cs.GetPort(); p != 0 && p != config.DefaultSyncPort {
		lost = append(lost, fmt.Sprintf("port %d", p))
	}
	if t := cs.GetTtl(); t != 0 && t != config.DefaultSyncTTL {
		lost = append(lost, fmt.Sprintf("ttl %d", t))
	}
	if cs.GetMaxLen() != 0 {
		lost = append(lost, fmt.Sprintf("max_len %d", cs.GetMaxLen()))
	}
	if len(lost) > 0 {
		ex.note(syncPath, "%s cannot be written in lvs.cf (syncdaemon, syncd_iface and syncd_id only); an import gets the kernel's defaults", strings.Join(lost, ", "))
	}
	ex.syncSysctlNote(cs, "lvs.cf")
}
