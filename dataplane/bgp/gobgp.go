package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/types/known/anypb"
)

// GoBGPOptions are a router's own BGP settings: lvsd flags, since they
// differ per router.
type GoBGPOptions struct {
	// RouterID is the BGP identifier, an IPv4 address unique per router.
	RouterID netip.Addr
	// Source is the local address sessions are opened from; invalid lets
	// the kernel choose by route.
	Source netip.Addr
	// ListenPort accepts sessions the peers open; 0 opens them from this
	// side only (the peers must then not be passive).
	ListenPort int
	// ConnectRetry is how long to wait between attempts to open a session.
	// 0: 5s, so a router that comes back is announced within seconds.
	ConnectRetry time.Duration
	Logger       *slog.Logger
}

// GoBGP is the Speaker embedded in lvsd: github.com/osrg/gobgp/v3's
// server, used as a library (no gRPC, no listening API). It is started on
// the first SetPeers with a non-zero AS number, and restarted when that
// number changes (the AS of a running BGP server is fixed).
type GoBGP struct {
	o   GoBGPOptions
	log *slog.Logger

	mu    sync.Mutex // serialises every call into the server
	srv   *server.BgpServer
	asn   uint32
	peers map[netip.Addr]Peer
	paths map[netip.Prefix]Attributes // re-added after a restart

	stateMu sync.Mutex
	since   map[netip.Addr]time.Time // last change into or out of established
	estab   map[netip.Addr]bool
}

// NewGoBGP returns a speaker that holds no session until SetPeers.
func NewGoBGP(o GoBGPOptions) (*GoBGP, error) {
	if !o.RouterID.Is4() {
		return nil, fmt.Errorf("BGP router id %v: want an IPv4 address", o.RouterID)
	}
	if o.ConnectRetry <= 0 {
		o.ConnectRetry = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &GoBGP{
		o: o, log: o.Logger,
		peers: map[netip.Addr]Peer{}, paths: map[netip.Prefix]Attributes{},
		since: map[netip.Addr]time.Time{}, estab: map[netip.Addr]bool{},
	}, nil
}

func (g *GoBGP) start(ctx context.Context, asn uint32) error {
	srv := server.NewBgpServer(server.LoggerOption(slogAdapter{g.log}))
	go srv.Serve()
	listen := int32(g.o.ListenPort)
	if listen == 0 {
		listen = -1 // gobgp's "do not listen"
	}
	global := &api.Global{Asn: asn, RouterId: g.o.RouterID.String(), ListenPort: listen}
	if g.o.Source.IsValid() && listen > 0 {
		global.ListenAddresses = []string{g.o.Source.String()}
	}
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: global}); err != nil {
		srv.Stop()
		return fmt.Errorf("start BGP as AS%d router-id %s: %w", asn, g.o.RouterID, err)
	}
	err := srv.WatchEvent(context.Background(), &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, g.peerEvent)
	if err != nil {
		srv.Stop()
		return fmt.Errorf("watch BGP peers: %w", err)
	}
	g.srv, g.asn = srv, asn
	g.peers = map[netip.Addr]Peer{}
	return nil
}

func (g *GoBGP) peerEvent(r *api.WatchEventResponse) {
	p := r.GetPeer()
	if p == nil || p.Type != api.WatchEventResponse_PeerEvent_STATE {
		return
	}
	addr, err := netip.ParseAddr(p.GetPeer().GetConf().GetNeighborAddress())
	if err != nil {
		return
	}
	up := p.GetPeer().GetState().GetSessionState() == api.PeerState_ESTABLISHED
	g.stateMu.Lock()
	if g.estab[addr] != up {
		g.estab[addr] = up
		g.since[addr] = time.Now()
		if up {
			g.log.Info("bgp: session established", "peer", addr)
		} else {
			g.log.Warn("bgp: session down", "peer", addr)
		}
	}
	g.stateMu.Unlock()
}

// SetPeers implements Speaker.
func (g *GoBGP) SetPeers(ctx context.Context, asn uint32, peers []Peer) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if asn == 0 {
		g.stopLocked()
		return nil
	}
	if g.srv != nil && g.asn != asn {
		g.log.Info("bgp: local AS changed; restarting the speaker", "from", g.asn, "to", asn)
		g.stopLocked()
	}
	if g.srv == nil {
		if err := g.start(ctx, asn); err != nil {
			return err
		}
		for p, a := range g.paths {
			if err := g.addPathLocked(ctx, p, a); err != nil {
				return err
			}
		}
	}
	want := map[netip.Addr]Peer{}
	for _, p := range peers {
		want[p.Address] = p
	}
	var errs []error
	for addr, cur := range g.peers {
		if w, ok := want[addr]; ok && w == cur {
			continue
		}
		if err := g.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
			errs = append(errs, fmt.Errorf("remove peer %s: %w", addr, err))
			continue
		}
		delete(g.peers, addr)
	}
	for addr, w := range want {
		if _, ok := g.peers[addr]; ok {
			continue
		}
		if err := g.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: g.apiPeer(w)}); err != nil {
			errs = append(errs, fmt.Errorf("add peer %s AS%d: %w", addr, w.ASN, err))
			continue
		}
		g.peers[addr] = w
		g.log.Info("bgp: peer added", "peer", addr, "asn", w.ASN, "hold_time", w.HoldTime)
	}
	return errors.Join(errs...)
}

func (g *GoBGP) apiPeer(p Peer) *api.Peer {
	hold := uint64(p.HoldTime / time.Second)
	ap := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.ASN},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime: hold, KeepaliveInterval: hold / 3,
			ConnectRetry:           uint64(g.o.ConnectRetry / time.Second),
			IdleHoldTimeAfterReset: uint64(g.o.ConnectRetry / time.Second),
		}},
		Transport: &api.Transport{RemotePort: uint32(p.Port)},
		AfiSafis: []*api.AfiSafi{
			{Config: &api.AfiSafiConfig{Family: family(true), Enabled: true}},
			{Config: &api.AfiSafiConfig{Family: family(false), Enabled: true}},
		},
	}
	if g.o.Source.IsValid() {
		ap.Transport.LocalAddress = g.o.Source.String()
	}
	return ap
}

func family(v4 bool) *api.Family {
	if v4 {
		return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	}
	return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
}

// apiPath builds the path of p; the unspecified next hop makes gobgp put
// the session's own local address there, so each router names itself.
func apiPath(p netip.Prefix, a Attributes) (*api.Path, error) {
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
	if err != nil {
		return nil, err
	}
	var attrs []*anypb.Any
	origin, _ := anypb.New(&api.OriginAttribute{Origin: 0}) // IGP
	attrs = append(attrs, origin)
	v4 := p.Addr().Is4()
	if v4 {
		nh, _ := anypb.New(&api.NextHopAttribute{NextHop: "0.0.0.0"})
		attrs = append(attrs, nh)
	} else {
		mp, _ := anypb.New(&api.MpReachNLRIAttribute{Family: family(false), NextHops: []string{"::"}, Nlris: []*anypb.Any{nlri}})
		attrs = append(attrs, mp)
	}
	if a.MED != nil {
		med, _ := anypb.New(&api.MultiExitDiscAttribute{Med: *a.MED})
		attrs = append(attrs, med)
	}
	if len(a.Communities) > 0 {
		c, _ := anypb.New(&api.CommunitiesAttribute{Communities: slices.Clone(a.Communities)})
		attrs = append(attrs, c)
	}
	return &api.Path{Family: family(v4), Nlri: nlri, Pattrs: attrs}, nil
}

func (g *GoBGP) addPathLocked(ctx context.Context, p netip.Prefix, a Attributes) error {
	path, err := apiPath(p, a)
	if err != nil {
		return fmt.Errorf("path %s: %w", p, err)
	}
	if _, err := g.srv.AddPath(ctx, &api.AddPathRequest{Path: path}); err != nil {
		return fmt.Errorf("add path %s: %w", p, err)
	}
	return nil
}

// Announce implements Speaker. It fails while the speaker does not run (no
// local AS yet, or it failed to start), so that nobody is told a prefix is
// announced when no session could carry it; the caller tries again.
func (g *GoBGP) Announce(ctx context.Context, p netip.Prefix, a Attributes) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.srv == nil {
		return errors.New("the BGP speaker is not running")
	}
	// AddPath of a known prefix replaces its attributes (an implicit
	// withdraw of the old path).
	if err := g.addPathLocked(ctx, p, a); err != nil {
		return err
	}
	g.paths[p] = a
	return nil
}

// Withdraw implements Speaker.
func (g *GoBGP) Withdraw(ctx context.Context, p netip.Prefix) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	a, ok := g.paths[p]
	if !ok {
		return nil
	}
	if g.srv != nil {
		path, err := apiPath(p, a)
		if err != nil {
			return err
		}
		if err := g.srv.DeletePath(ctx, &api.DeletePathRequest{Family: path.Family, Path: path}); err != nil {
			return fmt.Errorf("withdraw %s: %w", p, err)
		}
	}
	delete(g.paths, p)
	return nil
}

// Sessions implements Speaker.
func (g *GoBGP) Sessions() []Session {
	g.mu.Lock()
	srv := g.srv
	g.mu.Unlock()
	if srv == nil {
		return nil
	}
	var out []Session
	_ = srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
		addr, err := netip.ParseAddr(p.GetConf().GetNeighborAddress())
		if err != nil {
			return
		}
		st := strings.ToLower(p.GetState().GetSessionState().String())
		g.stateMu.Lock()
		since := g.since[addr]
		g.stateMu.Unlock()
		out = append(out, Session{Peer: addr, ASN: p.GetConf().GetPeerAsn(), State: st, Since: since})
	})
	slices.SortFunc(out, func(a, b Session) int { return a.Peer.Compare(b.Peer) })
	return out
}

// Stop closes every session (the peers see a NOTIFICATION, Cease, and
// drop this router's routes at once rather than after a hold time).
func (g *GoBGP) Stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopLocked()
}

func (g *GoBGP) stopLocked() {
	if g.srv == nil {
		return
	}
	g.srv.Stop()
	g.srv, g.asn = nil, 0
	g.peers = map[netip.Addr]Peer{}
	g.stateMu.Lock()
	g.estab = map[netip.Addr]bool{}
	g.stateMu.Unlock()
}

// slogAdapter sends gobgp's log to slog. gobgp's info level reports every
// FSM step, so it is lowered to debug; warnings and errors stay.
type slogAdapter struct{ l *slog.Logger }

func (s slogAdapter) args(f gobgplog.Fields) []any {
	out := make([]any, 0, 2*len(f)+2)
	out = append(out, "component", "gobgp")
	for k, v := range f {
		out = append(out, k, v)
	}
	return out
}
func (s slogAdapter) Panic(msg string, f gobgplog.Fields) { s.l.Error(msg, s.args(f)...); panic(msg) }
func (s slogAdapter) Fatal(msg string, f gobgplog.Fields) { s.l.Error(msg, s.args(f)...) }
func (s slogAdapter) Error(msg string, f gobgplog.Fields) { s.l.Error(msg, s.args(f)...) }
func (s slogAdapter) Warn(msg string, f gobgplog.Fields)  { s.l.Warn(msg, s.args(f)...) }
func (s slogAdapter) Info(msg string, f gobgplog.Fields)  { s.l.Debug(msg, s.args(f)...) }
func (s slogAdapter) Debug(msg string, f gobgplog.Fields) { s.l.Debug(msg, s.args(f)...) }
func (s slogAdapter) SetLevel(gobgplog.LogLevel)          {}
func (s slogAdapter) GetLevel() gobgplog.LogLevel         { return gobgplog.InfoLevel }
