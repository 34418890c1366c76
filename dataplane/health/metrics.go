package health

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are shared by every Monitor registered with the same registry (a
// process normally has one; tests have several).
type metrics struct {
	transitions *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	up          *prometheus.GaugeVec
	failures    *prometheus.CounterVec
	dropped     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_health_transitions_total",
			Help: "Real server health transitions, by service and new state (up or down).",
		}, []string{"service", "to"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shoal_health_check_duration_seconds",
			Help:    "Duration of one health check, by service and result (ok or fail).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9), // 100µs .. 6.5s
		}, []string{"service", "result"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shoal_health_up",
			Help: "1 when this node judges the real server up, 0 when down. Only real servers with a check to run have a series: one whose check is kind none is always up and has none (it is listed by the status API).",
		}, []string{"service", "server"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_health_check_failures_total",
			Help: "Failed health checks, by service and cause (refused, timeout, reset, mismatch, status, tls, exit, ...).",
		}, []string{"service", "cause"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_health_events_dropped_total",
			Help: "Health transitions not delivered to a subscriber whose buffer was full.",
		}),
	}
	m.transitions = register(reg, m.transitions)
	m.duration = register(reg, m.duration)
	m.up = register(reg, m.up)
	m.failures = register(reg, m.failures)
	m.dropped = register(reg, m.dropped)
	return m
}

// register adds c to reg, or returns the collector already registered under
// the same name so that several monitors can share one registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	return c
}
