// Package dataplane makes the kernel match the committed configuration: it
// programs IPVS (virtual services and their real servers), raises the virtual
// IPs and the NAT router address while this node leads, and announces them with
// gratuitous ARP / unsolicited neighbour advertisements.
//
// It receives three inputs and nothing else: the committed configuration
// (SetConfig), a health verdict per real server (Options.Health, HealthChanged)
// and a "you lead / you don't" signal (SetLeader). It never imports raft or the
// API: the caller wires those.
//
// Invariants:
//
//   - Every node keeps IPVS equal to config ⊕ health, leader or not, so a
//     takeover only moves addresses.
//   - Only the leader holds addresses. SetLeader(false) and the return of Run
//     drop them first, before anything else, and synchronously: when the call
//     returns the addresses are gone.
//   - Every address is raised with a kernel lifetime (Options.AddressLifetime,
//     valid = preferred) that the leader renews in place every third of it,
//     so a router whose lvsd was killed or hangs drops the addresses by
//     itself within the lifetime (measured: the kernel takes up to ~0.3 s
//     more). An address the kernel let expire under a live leader is raised
//     again one renewal interval later, not at once: after a stall that long
//     leadership has most likely moved on, and the leadership signal gets
//     that interval to say so.
//   - The reconciler applies differences only (add, update in place, delete),
//     never a flush, so connections to unchanged services survive; an update of
//     scheduler, persistence, weight or forwarding method is done in place.
//   - A change of config or health costs what it changes: the desired table
//     is kept from one reconcile to the next and a new configuration is
//     compared with the last service by service, by pointer (raftfsm
//     shares the services a command did not touch), and Run applies the
//     difference without listing the kernel (a weight change is one
//     netlink call at any table size). The leader's addresses are kept the
//     same way. Every Options.Resync the services of one part of the table
//     are read one by one and compared with their destinations (a table of
//     up to about 5,000 entries is one part; larger ones are compared part
//     by part, each within as many periods as there are parts), a slice at
//     a time so that a change waits for one slice; a few services of other
//     parts are looked for, and one missing (a flush) makes every service
//     listed and compared at once. When a change fails or the last outcome
//     is unknown the whole table is compared. That repairs what was changed
//     behind shoal's back (ipvsadm by hand: within the parts' periods; a
//     flush: at the next period). KernelIPVS lists with a dump of its own,
//     one buffer for all. Many entries to add go in batches (IPVSAdder), not
//     one round trip each, and so do the addresses a takeover raises and
//     the leader renews (AddressAdder); each VIP is announced as soon as
//     its batch is up, and every node, follower too, keeps its table of
//     addresses current, so that a takeover starts raising at once.
//   - Entries shoal did not create are left alone unless they collide with a
//     configured service, which is then taken over. What shoal created is kept
//     in a state file so a restart still knows.
//   - A node with a monitored link (global.monitor_links) down holds no
//     address even when told it leads; Links() lets the caller hand
//     leadership away.
//   - With global.connection_sync on, every node runs the kernel's backup
//     sync daemon and the leader also runs the master, started by
//     SetLeader(true) right after the addresses and stopped by
//     SetLeader(false) right after they are dropped (both daemons at once
//     need Linux 2.6.39). The backup is left running when Run returns, so a
//     restarting node keeps receiving the leader's connections. A daemon is
//     restarted only when its own parameters change (the TTL is the
//     master's alone); the reconcile starts one that was stopped by hand and
//     replaces one started by hand with other parameters. With sync off,
//     only the daemons shoal started are stopped. The net.ipv4.vs sysctls
//     sync_threshold, sync_refresh_period and sync_persist_mode of lvsd's
//     own network namespace are written when the config sets them and sync
//     is on, and left as the kernel has them otherwise.
//   - Connection counts come from ipvsadm's per-destination ActiveConn and
//     InActConn, which the periodic resync lists anyway (the metric is as of
//     each service's last listing); the connection table
//     itself (/proc/net/ip_vs_conn, about 100 bytes of text a connection) is
//     read only for a planned transfer (SampleEstablished, MissingConns).
//   - Kernel access goes through the small IPVS, Addresses, Announcer,
//     Links, SyncDaemons, Sysctls and Conns interfaces; package kernelfake
//     holds in-memory fakes for tests, package ipvssync the sync daemons'
//     generic-netlink calls that moby/ipvs lacks.
//
// Rejected alternatives: flushing and re-creating the IPVS table on change
// (drops every connection; ipvsadm-restore style); announcing from the
// reconcile loop (a takeover would wait for a resync tick); an ICMPv6 socket
// for neighbour advertisements (needs a usable, non-tentative source address
// on the interface at the moment a VIP moves); a watchdog process that
// removes the addresses of a dead lvsd (one more process to die or hang,
// where the kernel's own address lifetime needs none).
//
// Decisions are counted in Prometheus: shoal_dataplane_reconcile_total{result},
// shoal_dataplane_ipvs_changes_total{op,result},
// shoal_dataplane_real_servers{state}, shoal_vip_changes_total{action,reason},
// shoal_vip_expired_total, shoal_vip_refused_total{reason},
// shoal_garp_sent_total{kind,result}, shoal_link_up{link},
// shoal_ipvs_connections{state}, shoal_sync_daemon_running{state},
// shoal_sync_daemon_changes_total{state,action,reason,result}.
package dataplane
