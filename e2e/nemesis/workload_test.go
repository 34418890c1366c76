package nemesis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/shoal-lb/shoal/e2e/netlab"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

const (
	// service and the real server whose weight is the register.
	service  = "web"
	rsPort   = 80
	opTimout = 4 * time.Second // above the server's 3 s wait for a leader
	// staleTimeout bounds a stale read, which never waits for a leader.
	staleTimeout = time.Second
	// requestIDHeader is the gRPC metadata key of a write's request id.
	requestIDHeader = "x-shoal-request-id"
	// maxWeight is the largest weight; every write sets a new one.
	maxWeight = 65535
)

// workload runs concurrent clients against random routers and records
// every call in h.
type workload struct {
	sh      *netlab.Shoal
	h       *History
	rs      string // the real server's address
	clients int
	think   time.Duration
	runID   string
	seed    uint64
	logf    func(string, ...any)

	weight atomic.Uint32 // the last weight handed out
	reqs   atomic.Uint64
}

// nextWeight hands out a weight no other write uses; 0 once they are all
// used (the client then only reads).
func (w *workload) nextWeight() uint32 {
	v := w.weight.Add(1)
	if v > maxWeight {
		return 0
	}
	return v
}

// client is one client's state.
type client struct {
	w       *workload
	id      int
	rng     *rand.Rand
	session int
	node    *netlab.Node
	conn    *grpc.ClientConn
	serial  uint64 // the serial it last saw
}

func (w *workload) run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range w.clients {
		c := &client{w: w, id: i, rng: rand.New(rand.NewPCG(w.seed, uint64(i)+1)), serial: w.h.Base.Serial}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run(ctx)
		}()
	}
	wg.Wait()
}

// reconnect opens a new connection to a random router.
func (c *client) reconnect() {
	if c.conn != nil {
		_ = c.conn.Close()
	}
	rs := c.w.sh.Lab.Routers
	c.node = rs[c.rng.IntN(len(rs))]
	c.session++
	conn, err := c.w.sh.Conn(c.node)
	if err != nil {
		c.w.logf("client %d: connect to %s: %v", c.id, c.node.Name, err)
		c.conn = nil
		return
	}
	c.conn = conn
}

func (c *client) run(ctx context.Context) {
	defer func() {
		if c.conn != nil {
			_ = c.conn.Close()
		}
	}()
	for ctx.Err() == nil {
		if c.conn == nil || c.rng.IntN(20) == 0 {
			c.reconnect()
			if c.conn == nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
		}
		var ok bool
		switch p := c.rng.IntN(100); {
		case p < 30:
			ok = c.cas(ctx)
		case p < 55:
			ok = c.write(ctx)
		case p < 80:
			ok = c.read(ctx, KindRead)
		default:
			ok = c.read(ctx, KindStale)
		}
		if !ok && c.rng.IntN(2) == 0 {
			c.reconnect()
		}
		if c.w.think > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(c.rng.Int64N(int64(2 * c.w.think)))):
			}
		}
	}
}

func (c *client) op(kind Kind) Op {
	return Op{Client: c.id, Session: c.session, Node: c.node.Name, Kind: kind}
}

// finish fills in an operation's end and outcome and records it.
func (c *client) finish(o Op, err error) Op {
	o.Return = c.w.h.Now()
	o.Outcome, o.Code = classify(err)
	if err != nil {
		o.Err = status.Convert(err).Message()
	}
	c.w.h.Add(o)
	return o
}

// read is a linearizable or a stale GetConfig.
func (c *client) read(ctx context.Context, kind Kind) bool {
	req := &shoalv1.GetConfigRequest{}
	timeout := opTimout
	if kind == KindStale {
		req.Consistency = shoalv1.ReadConsistency_READ_CONSISTENCY_STALE
		timeout = staleTimeout
	}
	o := c.op(kind)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	o.Call = c.w.h.Now()
	resp, err := shoalv1.NewConfigServiceClient(c.conn).GetConfig(cctx, req)
	if err == nil {
		o.Serial = resp.GetConfig().GetSerial()
		o.ReadWeight = weightOf(resp.GetConfig(), c.w.rs)
	}
	o = c.finish(o, err)
	if o.Outcome == OK && kind == KindRead {
		c.serial = o.Serial
	}
	return o.Outcome == OK
}

// cas sets a new weight on condition that the serial is the one this
// client last saw.
func (c *client) cas(ctx context.Context) bool {
	if c.serial == 0 {
		// expected_serial 0 would be no condition: learn the serial first.
		return c.read(ctx, KindRead)
	}
	wt := c.w.nextWeight()
	if wt == 0 {
		return c.read(ctx, KindRead)
	}
	o := c.op(KindCAS)
	o.Weight, o.Expected = wt, c.serial
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimout)
	defer cancel()
	o.Call = c.w.h.Now()
	resp, err := shoalv1.NewLoadBalancerServiceClient(c.conn).UpdateRealServer(cctx, c.w.update(wt, c.serial))
	if err == nil {
		o.Serial = resp.GetSerial()
	}
	o = c.finish(o, err)
	switch {
	case o.Outcome == OK:
		c.serial = o.Serial
	case o.Code == codes.FailedPrecondition.String():
		// "expected serial N, but the serial is M": try M next, unless M
		// is older than what this client saw (a router behind the
		// others may say so; it may even say 0, which would make the
		// next CAS unconditional).
		if m := serialIs.FindStringSubmatch(o.Err); m != nil {
			if s, err := strconv.ParseUint(m[1], 10, 64); err == nil && s > c.serial {
				c.serial = s
			}
		}
	}
	return o.Outcome != Unknown
}

var serialIs = regexp.MustCompile(`the serial is (\d+)`)

// write sets a new weight unconditionally with a request id, and sends it
// again (same id, same weight, through another router) up to twice while
// the answer is indeterminate.
func (c *client) write(ctx context.Context) bool {
	wt := c.w.nextWeight()
	if wt == 0 {
		return c.read(ctx, KindRead)
	}
	id := fmt.Sprintf("%s-%d-%d", c.w.runID, c.id, c.w.reqs.Add(1))
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			c.reconnect()
			if c.conn == nil {
				return false
			}
		}
		o := c.op(KindWrite)
		o.Weight, o.RequestID, o.Attempt = wt, id, attempt
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimout)
		cctx = metadata.AppendToOutgoingContext(cctx, requestIDHeader, id)
		o.Call = c.w.h.Now()
		resp, err := shoalv1.NewLoadBalancerServiceClient(c.conn).UpdateRealServer(cctx, c.w.update(wt, 0))
		cancel()
		if err == nil {
			o.Serial = resp.GetSerial()
		}
		o = c.finish(o, err)
		if o.Outcome == OK {
			c.serial = o.Serial
			return true
		}
		if o.Outcome == Failed || ctx.Err() != nil {
			return false
		}
	}
	return false
}

func (w *workload) update(weight uint32, expected uint64) *shoalv1.UpdateRealServerRequest {
	return &shoalv1.UpdateRealServerRequest{
		Service:        service,
		RealServer:     &shoalv1.RealServer{Address: w.rs, Port: rsPort, Weight: &weight},
		UpdateMask:     &fieldmaskpb.FieldMask{Paths: []string{"weight"}},
		ExpectedSerial: expected,
	}
}

// weightOf is the weight of the real server rs of the service in c (0 if
// it is not there).
func weightOf(c *shoalv1.Config, rs string) uint32 {
	for _, s := range c.GetServices() {
		if s.GetName() != service {
			continue
		}
		for _, r := range s.GetRealServers() {
			if r.GetAddress() == rs {
				return r.GetWeight()
			}
		}
	}
	return 0
}

// classify maps a call's error to what the client knows of its effect.
// Unavailable is indeterminate, except when gRPC itself never sent the
// call (it had no connection: "connection error: ... while dialing").
func classify(err error) (Outcome, string) {
	if err == nil {
		return OK, ""
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.FailedPrecondition, codes.InvalidArgument, codes.NotFound, codes.AlreadyExists,
		codes.PermissionDenied, codes.Unauthenticated:
		return Failed, st.Code().String()
	case codes.Unavailable:
		if strings.HasPrefix(st.Message(), "connection error:") && strings.Contains(st.Message(), "while dialing") {
			return Failed, "Unavailable (not sent)"
		}
	}
	return Unknown, st.Code().String()
}

// historyReader reads the configuration history every interval through a
// random router, so that no change falls out of the last 1,000 before it
// is seen.
func (w *workload) historyReader(ctx context.Context, every time.Duration) {
	rng := rand.New(rand.NewPCG(w.seed, 0xc0ffee))
	conns := map[string]*grpc.ClientConn{}
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		rs := w.sh.Lab.Routers
		for range rs {
			r := rs[rng.IntN(len(rs))]
			c := conns[r.Name]
			if c == nil {
				var err error
				if c, err = w.sh.Conn(r); err != nil {
					continue
				}
				conns[r.Name] = c
			}
			if readHistory(ctx, c, w.h, shoalv1.ReadConsistency_READ_CONSISTENCY_UNSPECIFIED) == nil {
				break
			}
		}
	}
}

var weightChange = regexp.MustCompile(`weight: \d+ -> (\d+)`)

// readHistory reads the configuration history through c into h.
func readHistory(ctx context.Context, c *grpc.ClientConn, h *History, cons shoalv1.ReadConsistency) error {
	resp, err := listHistory(ctx, c, cons)
	if err != nil {
		return err
	}
	for _, e := range resp.GetEntries() {
		h.Commit(e.GetSerial(), entryWeight(e))
	}
	return nil
}

func listHistory(ctx context.Context, c *grpc.ClientConn, cons shoalv1.ReadConsistency) (*shoalv1.ListHistoryResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return shoalv1.NewConfigServiceClient(c).ListHistory(cctx, &shoalv1.ListHistoryRequest{Consistency: cons})
}

// entryWeight is the weight a history entry set on the real server (0 if
// it did not change it).
func entryWeight(e *shoalv1.HistoryEntry) uint32 {
	for _, ch := range e.GetChanges() {
		if ch.GetService() != service || ch.GetRealServer() == "" || ch.GetAction() != shoalv1.ChangeAction_CHANGE_ACTION_MODIFIED {
			continue
		}
		if m := weightChange.FindStringSubmatch(ch.GetDetail()); m != nil {
			if v, err := strconv.ParseUint(m[1], 10, 32); err == nil {
				return uint32(v)
			}
		}
	}
	return 0
}
