package dataplane

import "github.com/prometheus/client_golang/prometheus"

// Counters are package-level so that several Dataplanes in one process (an
// in-process cluster test) share, rather than re-register, them.
var (
	reconcileTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_dataplane_reconcile_total",
		Help: "Reconciles of the kernel with config and health, by result (ok, error).",
	}, []string{"result"})
	reconcileSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "shoal_dataplane_reconcile_seconds",
		Help:    "Time one reconcile took.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	})
	fullResyncTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_dataplane_full_resync_total",
		Help: "Comparisons of the kernel's whole IPVS table with the desired one, by reason: service_missing (a periodic resync found a service missing, e.g. after a flush; a period otherwise compares one part of a table of more than about 5,000 entries and looks for a few other services), periodic (a whole comparison asked for, Dataplane.Reconcile), unknown_state (the first, or the one after a failed reconcile), change_failed (a change applied as a difference failed, e.g. an entry removed by hand). A change of config or health is otherwise applied as its difference alone.",
	}, []string{"reason"})
	ipvsChangesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_dataplane_ipvs_changes_total",
		Help: "IPVS changes applied, by operation (add_service, update_service, delete_service, take_over_service, add_destination, update_destination, delete_destination, set_timeouts) and result.",
	}, []string{"op", "result"})
	realServers = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "shoal_dataplane_real_servers",
		Help: "Configured real servers by what the last reconcile made of them (up, quiesced, down, inactive, sorry, displaced_by_sorry_server).",
	}, []string{"state"})
	vipChangesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_vip_changes_total",
		Help: "Addresses raised and dropped, by action (add, remove) and reason (leader, follower, config, link, repair, expired, shutdown, stale).",
	}, []string{"action", "reason"})
	vipExpiredTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "shoal_vip_expired_total",
		Help: "Addresses the kernel dropped from a leader because their lifetime was not renewed in time: lvsd did not run for a whole address lifetime.",
	})
	vipRefusedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_vip_refused_total",
		Help: "Addresses the leader did not raise, by reason (no_interface, invalid_address, add_failed, link_down).",
	}, []string{"reason"})
	garpSentTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_garp_sent_total",
		Help: "Gratuitous ARPs and unsolicited neighbour advertisements, by kind (burst, refresh) and result (ok, error).",
	}, []string{"kind", "result"})
	linkUpGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "shoal_link_up",
		Help: "Monitored links: 1 up, 0 down.",
	}, []string{"link"})
	ipvsConnections = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "shoal_ipvs_connections",
		Help: "IPVS connections of the configured services, each as of the last listing of its destinations (the periodic resync lists a part of the services each period), by state: active (established TCP/SCTP) and inactive (every other, UDP included), as ipvsadm's ActiveConn and InActConn; on a follower, the entries its backup sync daemon received.",
	}, []string{"state"})
	syncDaemonRunning = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "shoal_sync_daemon_running",
		Help: "IPVS connection-sync daemons in this node's kernel, by state (master, backup): 1 running, 0 not.",
	}, []string{"state"})
	resyncParts = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "shoal_dataplane_resync_parts",
		Help: "How many resync periods the periodic comparison of the IPVS table with the desired one takes to go round it once: 1 up to about 5,000 services and real servers, more on a larger table. A service or destination changed by hand is repaired within this many periods (a flush at the next).",
	})
	syncDaemonChangesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_sync_daemon_changes_total",
		Help: "Sync daemons started and stopped, by state (master, backup), action (start, stop), reason (leader, follower, repair, restart, shutdown) and result (ok, error).",
	}, []string{"state", "action", "reason", "result"})
)

func init() {
	prometheus.MustRegister(reconcileTotal, reconcileSeconds, fullResyncTotal, ipvsChangesTotal, realServers,
		vipChangesTotal, vipExpiredTotal, vipRefusedTotal, garpSentTotal, linkUpGauge,
		ipvsConnections, syncDaemonRunning, syncDaemonChangesTotal, resyncParts)
}
