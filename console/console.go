package console

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configures a Console.
type Options struct {
	// Conn is the API in process (server.LocalConn).
	Conn *grpc.ClientConn
	// Store is this node's TLS material: the console's own certificate,
	// and the CA that client certificates must chain to. nil: the API runs
	// without TLS, and every visitor is its anonymous admin, as on the API.
	Store *pki.Store
	// Node is this node's id, for the page titles.
	Node   string
	Logger *slog.Logger
	// SampleEvery is how often the IPVS counters are read for the rates
	// (default 5s); Samples how many are kept per real server (default 60).
	// They are read only while someone looks at the services: until
	// SampleIdle (default 2m) after the page, or its live stream, last
	// loaded them. Each reading lists this router's whole IPVS table.
	SampleEvery time.Duration
	Samples     int
	SampleIdle  time.Duration
	// Registerer takes the console's metrics (nil: not registered).
	Registerer prometheus.Registerer
}

// Console serves the web console; see the package comment.
type Console struct {
	o       Options
	log     *slog.Logger
	cfg     shoalv1.ConfigServiceClient
	lb      shoalv1.LoadBalancerServiceClient
	cluster shoalv1.ClusterServiceClient
	node    shoalv1.NodeServiceClient
	pages   map[string]*template.Template
	// secret keys the CSRF tokens of callers without a session.
	secret []byte

	mu       sync.Mutex
	sessions map[string]*session

	rates *rates
	// lastLook is when the services were last loaded (unix nanoseconds);
	// look wakes the sampler that a look ended a pause.
	lastLook atomic.Int64
	look     chan struct{}
	// streams bounds the live pages open at once (MaxStreams).
	streams chan struct{}
	metrics *metrics
}

// MaxStreams is how many live pages (event streams) one router serves at
// once; the browser's EventSource retries one refused.
const MaxStreams = 64

// New returns a Console; call Run to sample the counters and Handler to
// serve it.
func New(o Options) (*Console, error) {
	if o.Conn == nil {
		return nil, errors.New("console: Options.Conn is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = 5 * time.Second
	}
	if o.Samples <= 0 {
		o.Samples = 60
	}
	if o.SampleIdle <= 0 {
		o.SampleIdle = 2 * time.Minute
	}
	c := &Console{
		o: o, log: o.Logger.With("component", "console"),
		cfg: shoalv1.NewConfigServiceClient(o.Conn), lb: shoalv1.NewLoadBalancerServiceClient(o.Conn),
		cluster: shoalv1.NewClusterServiceClient(o.Conn), node: shoalv1.NewNodeServiceClient(o.Conn),
		secret: make([]byte, 32), sessions: map[string]*session{}, rates: newRates(o.Samples),
		streams: make(chan struct{}, MaxStreams), look: make(chan struct{}, 1),
	}
	if _, err := rand.Read(c.secret); err != nil {
		return nil, fmt.Errorf("console secret: %w", err)
	}
	c.metrics = newMetrics(c, o.Registerer)
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	c.pages = pages
	return c, nil
}

// Handler is the console's HTTP handler.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /login", c.loginPage)
	mux.HandleFunc("POST /login", c.login)
	mux.HandleFunc("POST /logout", c.logout)
	mux.HandleFunc("GET /{$}", c.authed(c.overview))
	mux.HandleFunc("GET /services", c.authed(c.services))
	mux.HandleFunc("GET /history", c.authed(c.history))
	mux.HandleFunc("GET /history/{serial}", c.authed(c.historyEntry))
	mux.HandleFunc("GET /events", c.authed(c.events))
	mux.HandleFunc("GET /edit/realserver", c.authed(c.realServerForm))
	mux.HandleFunc("POST /edit/realserver", c.action(c.realServerEdit))
	mux.HandleFunc("GET /edit/service", c.authed(c.serviceForm))
	mux.HandleFunc("POST /edit/service", c.action(c.serviceEdit))
	mux.HandleFunc("GET /import", c.authed(c.importForm))
	mux.HandleFunc("POST /import", c.action(c.importEdit))
	mux.HandleFunc("POST /rollback", c.action(c.rollback))
	return securityHeaders(mux)
}

// securityHeaders: no framing (clickjacking), no scripts or styles but
// our own, no referrer leaving the console. (Not no-referrer: with it a
// browser sends "Origin: null" on the console's own forms, and sameOrigin
// could no longer tell them from another site's.)
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		if r.TLS != nil {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		h.ServeHTTP(w, r)
	})
}

// Run samples the IPVS counters for the rates until ctx ends, while
// someone looks at them (Options.SampleIdle): at 10,000 services a
// reading of the whole IPVS table costs the router more than its own
// periodic resync, for rates nobody sees.
func (c *Console) Run(ctx context.Context) {
	c.sampleWhileLooked(ctx, func() { c.sample(ctx) })
}

func (c *Console) sampleWhileLooked(ctx context.Context, sample func()) {
	t := time.NewTicker(c.o.SampleEvery)
	defer t.Stop()
	sampling := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.look:
			if sampling {
				continue // the ticker paces the samples
			}
			// A look after a pause samples at once: a rate needs two.
		}
		if time.Since(time.Unix(0, c.lastLook.Load())) > c.o.SampleIdle {
			if sampling {
				// Samples from before a pause would make one rate of
				// the whole pause.
				c.rates.reset()
				sampling = false
			}
			continue
		}
		sampling = true
		sample()
	}
}

// looked says that someone loaded the services.
func (c *Console) looked() {
	c.lastLook.Store(time.Now().UnixNano())
	select {
	case c.look <- struct{}{}:
	default:
	}
}

// sample reads this node's IPVS counters as the node itself: the samples
// are the node's, whoever is looking.
func (c *Console) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, c.o.SampleEvery)
	defer cancel()
	resp, err := c.node.GetNodeStatus(c.asNode(ctx), &shoalv1.GetNodeStatusRequest{})
	if err != nil {
		c.log.Debug("sample IPVS counters", "err", err)
		return
	}
	c.rates.add(time.Now(), resp.GetStatus().GetIpvs())
}
