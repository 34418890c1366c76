package dataplane

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/ipvs"
	"google.golang.org/protobuf/proto"
	durpb "google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/dataplane/ipvssync"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// syncConfig is webConfig with connection sync on, as the FSM would hold
// it (normalised).
func syncConfig(change func(cs *shoalv1.ConnectionSync)) *shoalv1.Config {
	c := webConfig()
	c.Global = &shoalv1.Global{ConnectionSync: &shoalv1.ConnectionSync{Enabled: true, SyncId: 7}}
	if change != nil {
		change(c.Global.ConnectionSync)
	}
	config.Normalize(c)
	return c
}

const (
	startBackup = "start backup on eth0 syncid 7 group 224.0.0.81 port 8848 ttl 1"
	startMaster = "start master on eth0 syncid 7 group 224.0.0.81 port 8848 ttl 1"
)

func TestSyncBackupEverywhereMasterOnLeader(t *testing.T) {
	r := newRig(t, ModeIPVS, "")
	r.apply(t, syncConfig(nil))
	eq(t, "follower", r.sync.Ops(), []string{startBackup})

	r.d.SetLeader(true)
	eq(t, "taking over", r.sync.Ops(), []string{startMaster})
	if _, ok := r.sync.Running(ipvssync.Master); !ok {
		t.Fatal("no master after SetLeader(true) returned")
	}
	r.apply(t, syncConfig(nil))
	eq(t, "idle reconcile as leader", r.sync.Ops(), nil)

	r.d.SetLeader(false)
	eq(t, "stepping down", r.sync.Ops(), []string{"stop master"})
	if _, ok := r.sync.Running(ipvssync.Backup); !ok {
		t.Error("backup stopped with the master")
	}
	r.apply(t, syncConfig(nil))
	eq(t, "idle reconcile as follower", r.sync.Ops(), nil)
}

func TestSyncParameterChangeRestartsOnlyItsDaemon(t *testing.T) {
	r := newRig(t, ModeIPVS, "")
	r.apply(t, syncConfig(nil))
	r.d.SetLeader(true)
	r.sync.Ops()

	// The TTL is the master's alone: a backup sends nothing.
	r.apply(t, syncConfig(func(cs *shoalv1.ConnectionSync) { cs.Ttl = 2 }))
	eq(t, "ttl", r.sync.Ops(), []string{"stop master", "start master on eth0 syncid 7 group 224.0.0.81 port 8848 ttl 2"})

	// The sysctls change no daemon.
	r.apply(t, syncConfig(func(cs *shoalv1.ConnectionSync) {
		cs.Ttl = 2
		cs.SyncPeriod = proto.Uint32(100)
		cs.SyncRefreshPeriod = durpb.New(time.Minute)
		cs.SyncPersistMode = proto.Bool(true)
	}))
	eq(t, "sysctls: daemons", r.sync.Ops(), nil)
	eq(t, "sysctls", r.sysctls.Ops(), []string{"sync_threshold=3 100", "sync_refresh_period=60", "sync_persist_mode=1"})

	// The port is both daemons'.
	r.apply(t, syncConfig(func(cs *shoalv1.ConnectionSync) { cs.Ttl, cs.Port = 2, 8850 }))
	eq(t, "port", r.sync.Ops(), []string{
		"stop master", "start master on eth0 syncid 7 group 224.0.0.81 port 8850 ttl 2",
		"stop backup", "start backup on eth0 syncid 7 group 224.0.0.81 port 8850 ttl 2",
	})
	eq(t, "sysctls unset are left alone", r.sysctls.Ops(), nil)

	// A message length back to the kernel's choice needs a restart, which
	// only this process can tell.
	r.apply(t, syncConfig(func(cs *shoalv1.ConnectionSync) { cs.Ttl, cs.Port, cs.MaxLen = 2, 8850, 9000 }))
	eq(t, "max_len", r.sync.Ops(), []string{
		"stop master", "start master on eth0 syncid 7 group 224.0.0.81 port 8850 ttl 2 maxlen 9000",
		"stop backup", "start backup on eth0 syncid 7 group 224.0.0.81 port 8850 ttl 2 maxlen 9000",
	})
	r.apply(t, syncConfig(func(cs *shoalv1.ConnectionSync) { cs.Ttl, cs.Port = 2, 8850 }))
	eq(t, "max_len back to default", r.sync.Ops(), []string{
		"stop master", "start master on eth0 syncid 7 group 224.0.0.81 port 8850 ttl 2",
		"stop backup", "start backup on eth0 syncid 7 group 224.0.0.81 port 8850 ttl 2",
	})
}

func TestSyncRepairsHandMadeChanges(t *testing.T) {
	r := newRig(t, ModeIPVS, "")
	r.apply(t, syncConfig(nil))
	r.d.SetLeader(true)
	r.sync.Ops()

	r.sync.StopByHand(ipvssync.Backup)
	r.apply(t, syncConfig(nil))
	eq(t, "hand-stopped backup", r.sync.Ops(), []string{startBackup})

	// A master started by hand with another sync id while sync is on is
	// replaced: shoal owns both daemons then.
	r.sync.StopByHand(ipvssync.Master)
	r.sync.StartByHand(ipvssync.Daemon{State: ipvssync.Master, Interface: "eth0", SyncID: 9})
	r.apply(t, syncConfig(nil))
	eq(t, "foreign master", r.sync.Ops(), []string{"stop master", startMaster})

	r.sysctls.SetByHand(ipvssync.SysctlPersistMode, "1")
	r.apply(t, syncConfig(func(cs *shoalv1.ConnectionSync) { cs.SyncPersistMode = proto.Bool(false) }))
	eq(t, "hand-set sysctl", r.sysctls.Ops(), []string{"sync_persist_mode=0"})
}

func TestSyncAfterRestartAdoptsAndOff(t *testing.T) {
	state := filepath.Join(t.TempDir(), "dataplane.json")
	r := newRig(t, ModeIPVS, state)
	r.apply(t, syncConfig(nil))
	r.d.SetLeader(true)
	r.sync.Ops()

	// lvsd restarts: the daemons run on in the kernel, as wanted; the new
	// process changes nothing.
	r.reopen(t, ModeIPVS)
	r.apply(t, syncConfig(nil))
	eq(t, "restart as follower", r.sync.Ops(), []string{"stop master"})
	r.d.SetLeader(true)
	r.sync.Ops()

	// Sync turned off: what shoal started stops, and the state file
	// remembers that across a restart.
	r.reopen(t, ModeIPVS)
	off := webConfig()
	r.d.SetLeader(true)
	r.apply(t, off)
	eq(t, "off", r.sync.Ops(), []string{"stop master", "stop backup"})

	// A daemon somebody else runs while sync is off is left alone.
	r.sync.StartByHand(ipvssync.Daemon{State: ipvssync.Backup, Interface: "eth1", SyncID: 3})
	r.apply(t, off)
	eq(t, "foreign daemon, sync off", r.sync.Ops(), nil)
	if _, ok := r.sync.Running(ipvssync.Backup); !ok {
		t.Error("a daemon shoal did not start was stopped")
	}
}

func TestSyncErrors(t *testing.T) {
	r := newRig(t, ModeIPVS, "")
	r.reopenWith(t, ModeIPVS, func(o *Options) { o.DefaultInterface = "" })
	r.d.SetConfig(syncConfig(nil))
	if err := r.d.Reconcile(); err == nil || !strings.Contains(err.Error(), "no interface") {
		t.Errorf("sync without an interface: %v", err)
	}
	eq(t, "nothing started", r.sync.Ops(), nil)

	r.reopen(t, ModeIPVS)
	r.sync.SetMissing("eth0", true)
	r.d.SetConfig(syncConfig(nil))
	err := r.d.Reconcile()
	if !errors.Is(err, syscall.ENODEV) {
		t.Fatalf("missing interface: %v", err)
	}
	var st shoalv1.NodeStatus
	r.d.Status(&st)
	if !strings.Contains(st.ReconcileError, "sync daemon") {
		t.Errorf("status reconcile_error %q does not name the sync daemon", st.ReconcileError)
	}
	r.sync.SetMissing("eth0", false)
	r.apply(t, syncConfig(nil))
	eq(t, "interface back", r.sync.Ops(), []string{startBackup})

	// A caller that passes its own IPVS and no sync backend gets an error,
	// not a crash, when the config turns sync on.
	r.reopenWith(t, ModeIPVS, func(o *Options) { o.SyncDaemons = nil })
	r.d.SetConfig(syncConfig(nil))
	if err := r.d.Reconcile(); !errors.Is(err, errNoSyncBackend) {
		t.Errorf("no backend: %v", err)
	}
}

func TestSyncShutdownStopsMasterKeepsBackup(t *testing.T) {
	r := newRig(t, ModeIPVS, "")
	r.d.SetConfig(syncConfig(nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.d.Run(ctx) }()
	r.d.SetLeader(true)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, m := r.sync.Running(ipvssync.Master)
		_, b := r.sync.Running(ipvssync.Backup)
		if m && b {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("daemons not started")
		}
		time.Sleep(5 * time.Millisecond) // polling a fake; nothing to wake on
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, ok := r.sync.Running(ipvssync.Master); ok {
		t.Error("master still runs after Run returned")
	}
	if _, ok := r.sync.Running(ipvssync.Backup); !ok {
		t.Error("backup stopped at shutdown: a restarting node would miss the leader's connections")
	}
}

func TestSyncStatusAndConnections(t *testing.T) {
	r := newRig(t, ModeIPVS, "")
	r.apply(t, syncConfig(nil))
	r.d.SetLeader(true)
	if err := r.ipvs.SetStats("tcp/192.0.2.10:80", "10.0.0.1:80", ipvs.SvcStats{}, 3, 2); err != nil {
		t.Fatal(err)
	}
	var st shoalv1.NodeStatus
	r.d.Status(&st)
	r.d.IPVSStatus(&st)
	if len(st.SyncDaemons) != 2 || st.SyncDaemons[0].State != "master" || st.SyncDaemons[1].State != "backup" ||
		st.SyncDaemons[1].Group != "224.0.0.81" || st.SyncDaemons[1].MaxLen != 1472 || st.SyncDaemons[0].SyncId != 7 {
		t.Errorf("status sync daemons: %v", st.SyncDaemons)
	}
	if c := st.Connections; c.GetActive() != 3 || c.GetInactive() != 2 {
		t.Errorf("status connections: %v", c)
	}

	r.conns.Set(
		ipvssync.Conn{Key: "TCP 0A000164 9C40 C000020A 0050 0A000001 0050", Protocol: "TCP", State: "ESTABLISHED"},
		ipvssync.Conn{Key: "TCP 0A000164 9C41 C000020A 0050 0A000002 0050", Protocol: "TCP", State: "SYN_RECV"},
		ipvssync.Conn{Key: "UDP 0A000164 9C42 C000020A 0035 0A000002 0035", Protocol: "UDP", State: "UDP"},
	)
	keys, err := r.d.SampleEstablished()
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "established sample", keys, []string{"TCP 0A000164 9C40 C000020A 0050 0A000001 0050"})
	missing, total, err := r.d.MissingConns(append(keys, "TCP 0A000165 9C40 C000020A 0050 0A000001 0050"))
	if err != nil || total != 3 {
		t.Fatalf("MissingConns: %v, total %d", err, total)
	}
	eq(t, "missing", missing, []string{"TCP 0A000165 9C40 C000020A 0050 0A000001 0050"})
	if !r.d.SyncEnabled() {
		t.Error("SyncEnabled false with sync on")
	}
}

func TestSyncSample(t *testing.T) {
	r := newRig(t, ModeIPVS, "")
	var many []ipvssync.Conn
	for i := range 3 * MaxSampledConns {
		many = append(many, ipvssync.Conn{Key: "TCP " + itoa(i), Protocol: "TCP", State: "ESTABLISHED"})
	}
	r.conns.Set(many...)
	keys, err := r.d.SampleEstablished()
	if err != nil || len(keys) != MaxSampledConns {
		t.Fatalf("sample of %d: %d keys, %v", len(many), len(keys), err)
	}
}

func TestDaemonDiffers(t *testing.T) {
	base := ipvssync.Daemon{State: ipvssync.Backup, Interface: "eth0", SyncID: 1}
	old := base // as a kernel before 4.3 lists it: no group, port, TTL, length
	want := base
	want.Port, want.TTL = 8848, 1
	if daemonDiffers(old, want, ipvssync.Daemon{}, false) {
		t.Error("unknown fields made a restart")
	}
	started := want
	started.Port = 8849
	if !daemonDiffers(old, want, started, true) {
		t.Error("a port this process started with and the config no longer has made no restart")
	}
	other := want
	other.Interface = "eth1"
	if !daemonDiffers(other, want, ipvssync.Daemon{}, false) {
		t.Error("interface change made no restart")
	}
}
