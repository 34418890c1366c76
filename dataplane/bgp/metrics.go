package bgp

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	sessionDesc = prometheus.NewDesc("shoal_bgp_session_established",
		"1 while the BGP session to the peer is established, else 0; state names the FSM state.",
		[]string{"peer", "asn", "state"}, nil)
	announcedDesc = prometheus.NewDesc("shoal_bgp_announced",
		"1 for each bgp-mode VIP prefix, while this router announces it, else 0.",
		[]string{"prefix"}, nil)
	blockedDesc = prometheus.NewDesc("shoal_bgp_withdrawn",
		"1 for the reason this router announces nothing (stopping, drained, no_majority, dataplane_unhealthy, starting, no_bgp_config, no_router_id); absent while it announces.",
		[]string{"reason"}, nil)
)

// Collector reads an Announcer's Status at every scrape, so the figures
// are never older than the scrape.
type Collector struct{ A *Announcer }

// Describe implements prometheus.Collector.
func (c Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- sessionDesc
	ch <- announcedDesc
	ch <- blockedDesc
}

// Collect implements prometheus.Collector.
func (c Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.A.Status()
	for _, s := range st.Sessions {
		v := 0.0
		if s.Established() {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(sessionDesc, prometheus.GaugeValue, v, s.Peer.String(), itoa(s.ASN), s.State)
	}
	on := map[string]bool{}
	for _, p := range st.Announced {
		on[p.String()] = true
	}
	for _, p := range st.Configured {
		v := 0.0
		if on[p.String()] {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(announcedDesc, prometheus.GaugeValue, v, p.String())
	}
	if st.Blocked != "" && len(st.Configured) > 0 {
		ch <- prometheus.MustNewConstMetric(blockedDesc, prometheus.GaugeValue, 1, string(st.Blocked))
	}
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
