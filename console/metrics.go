package console

import "github.com/prometheus/client_golang/prometheus"

// metrics are the console's own; the calls it makes are counted by the
// API's (shoal_api_requests_total, shoal_api_auth_failures_total), since
// they go through it.
type metrics struct {
	logins  *prometheus.CounterVec
	refused *prometheus.CounterVec
}

func newMetrics(c *Console, reg prometheus.Registerer) *metrics {
	m := &metrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_console_logins_total",
			Help: "Web console logins by result: ok, bad-token (not a console token, or its key is not its certificate's), refused (the API refused its certificate: another CA, expired, revoked).",
		}, []string{"result"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_console_refused_requests_total",
			Help: "Web console form posts refused before reaching the API, by reason (csrf: a missing or wrong CSRF token, or another site's request).",
		}, []string{"reason"}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.logins, m.refused,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shoal_console_sessions", Help: "Web console sessions (token logins) held by this router."},
			func() float64 {
				c.mu.Lock()
				defer c.mu.Unlock()
				return float64(len(c.sessions))
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shoal_console_live_pages", Help: "Web console pages open with live updates (event streams) on this router."},
			func() float64 { return float64(len(c.streams)) }))
	return m
}
