package server

import (
	"context"
	"net/http"
	"path"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// metrics live in a registry of their own, so several nodes in one test
// process do not collide in the global one; the handler merges it with the
// default registry.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// authFailures counts refused calls by reason (no-certificate,
	// expired, unknown-ca, role, join-token, ...).
	authFailures *prometheus.CounterVec
	// replays counts writes answered with the first outcome of their
	// request id (a client's retry), by method.
	replays *prometheus.CounterVec
	// transferSync counts planned transfers that waited for connection
	// sync, by result (complete, incomplete, error).
	transferSync *prometheus.CounterVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_api_requests_total",
			Help: "gRPC API requests by method and status code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shoal_api_request_duration_seconds",
			Help:    "gRPC API request latency by method (streams: their lifetime).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"method"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_api_auth_failures_total",
			Help: "API calls refused for their caller's certificate, role or join token, by reason.",
		}, []string{"reason"}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_api_replayed_writes_total",
			Help: "Writes answered with the first outcome of an earlier write with the same request id, not applied again, by method.",
		}, []string{"method"}),
		transferSync: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_transfer_sync_total",
			Help: "Planned leadership transfers with connection sync on, by result: complete (the target held every sampled connection of the leader), incomplete (the wait ran out and leadership moved anyway), error (the target could not be asked).",
		}, []string{"result"}),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.reg.MustRegister(
		m.requests, m.latency, m.authFailures, m.replays, m.transferSync,
		gauge("shoal_tls_certificate_expiry_timestamp_seconds", "When this node's TLS certificate expires (Unix time); 0 without TLS.", func() float64 {
			if s.o.TLS == nil || s.o.TLS.Store.Leaf() == nil {
				return 0
			}
			return float64(s.o.TLS.Store.Leaf().NotAfter.Unix())
		}),
		gauge("shoal_serial", "Serial of the configuration this node has applied.", func() float64 {
			return float64(s.node.FSM().State().GetConfig().GetSerial())
		}),
		gauge("shoal_raft_state", "Raft state: 0 follower, 1 candidate, 2 leader, 3 shutdown.", func() float64 {
			return float64(s.node.Raft().State())
		}),
		gauge("shoal_is_leader", "1 when this node is the raft leader.", func() float64 {
			if s.node.Raft().State() == raft.Leader {
				return 1
			}
			return 0
		}),
		gauge("shoal_applied_index", "Raft index of the last log entry this node applied.", func() float64 {
			return float64(s.node.FSM().AppliedIndex())
		}),
		gauge("shoal_commit_index", "Raft commit index as this node knows it.", func() float64 {
			return float64(s.node.Raft().CommitIndex())
		}),
		gauge("shoal_term", "Current raft term.", func() float64 {
			return float64(s.node.Status().Term)
		}),
		// As Prometheus' own *_build_info: constant 1, the build in the
		// labels, so that a query can join it to any other series.
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shoal_build_info",
			Help: "Always 1; the labels say which lvsd build this node runs.",
			ConstLabels: prometheus.Labels{
				"version": s.o.Build.Version, "commit": s.o.Build.Commit, "goversion": s.o.Build.GoVersion,
			},
		}, func() float64 { return 1 }),
	)
	return m
}

// MetricsHandler serves this node's API and raft metrics together with the
// default registry's (Go runtime, process, and what the dataplane and
// health monitor register there).
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(prometheus.Gatherers{s.metrics.reg, prometheus.DefaultGatherer}, promhttp.HandlerOpts{})
}

func (m *metrics) observe(fullMethod string, start time.Time, err error) {
	method := path.Base(fullMethod)
	m.requests.WithLabelValues(method, status.Code(err).String()).Inc()
	m.latency.WithLabelValues(method).Observe(time.Since(start).Seconds())
}

func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m.observe(info.FullMethod, start, err)
	return resp, err
}

func (m *metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	err := h(srv, ss)
	m.observe(info.FullMethod, start, err)
	return err
}
