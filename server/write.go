package server

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"github.com/shoal-lb/shoal/raftfsm"
)

// Metadata of exactly-once writes (raftfsm/requests.go).
const (
	// requestIDKey carries a write's client request id: a write whose id
	// the cluster remembers as applied is answered with its first outcome
	// and not applied again, so a client may retry it safely.
	requestIDKey = "x-shoal-request-id"
	// replayedKey, "true" in a write's response header, says that the
	// answer is such a first outcome. The leader sets it on PeerService
	// answers too, so the follower that forwarded the write knows.
	replayedKey = "x-shoal-replayed"
)

// written is what a committed write leaves behind: the serial and changes
// the leader reported, and this node's state once it has applied them.
type written struct {
	serial  uint64
	changes []*shoalv1.Change
	state   *shoalv1.State
	// replayed says that the write's request id had been applied already:
	// serial and changes are that first outcome, and state may be later.
	replayed bool
	// summary is set, and changes nil, for a replay whose changes are no
	// longer kept (raftfsm.Result.Summary).
	summary *shoalv1.ChangeSummary
}

// config is the configuration as the write left it, at its serial: a
// replayed write, or a follower that has applied later writes too, holds
// a later one. When the history no longer reaches back that far, the
// state's own is the best there is.
func (w *written) config() *shoalv1.Config {
	c := w.state.GetConfig()
	if c.GetSerial() == w.serial {
		return c
	}
	if at, err := raftfsm.ConfigAt(w.state, w.serial); err == nil {
		return at
	}
	return c
}

// write is the one write path: record who asks (the audit the history
// keeps) and the client's request id, validate locally, then commit
// through Raft here or on the leader. Errors are already gRPC statuses.
func (s *Server) write(ctx context.Context, cmd *shoalv1.Command) (*written, error) {
	cmd.Audit = s.audit(ctx)
	id, err := requestID(ctx)
	if err != nil {
		return nil, err
	}
	cmd.RequestId = id
	res, base, err := s.validate(ctx, cmd)
	if err != nil {
		return nil, toStatus(err)
	}
	var w *written
	if res.Replayed {
		// This node has applied the first outcome, so it is committed:
		// answer with it without another round through raft.
		w = &written{serial: res.Serial, changes: res.Changes, state: res.State, replayed: true, summary: res.Summary}
	} else if w, err = s.commit(ctx, cmd, judged{base: base, res: res}); err != nil {
		return nil, toStatus(err)
	}
	if w.replayed {
		s.metrics.replays.WithLabelValues(cmd.GetAudit().GetMethod()).Inc()
		_ = grpc.SetHeader(ctx, metadata.Pairs(replayedKey, "true"))
		s.log.Debug("write answered with the first outcome of its request id",
			"request_id", id, "method", cmd.GetAudit().GetMethod(), "serial", w.serial)
	}
	return w, nil
}

// requestID is the client's request id of the call in ctx, "" without one.
// raftfsm.Apply judges its form, so that a forwarded command is judged the
// same way.
func requestID(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	switch ids := md.Get(requestIDKey); len(ids) {
	case 0:
		return "", nil
	case 1:
		return ids[0], nil
	default:
		return "", invalid("request_id", "%s was sent %d times; send it once", requestIDKey, len(ids))
	}
}

// mayHaveApplied is the answer to a write that reached the leader but lost
// its answer on the way. With a request id the client can find out by
// sending it again; without one, only by reading.
func mayHaveApplied(cmd *shoalv1.Command, what, detail string) error {
	if id := cmd.GetRequestId(); id != "" {
		return status.Errorf(codes.Unavailable, "%s during the write, which may or may not have been applied: "+
			"it is safe to retry with the same request id (%s), which applies it at most once: %s", what, id, detail)
	}
	return status.Errorf(codes.Unavailable, "%s during the write, which may or may not have been applied (read before retrying): %s", what, detail)
}

// audit is the caller of the API call in ctx, its method and this node's
// clock: the FSM takes the time from here, since it reads no clock itself.
func (s *Server) audit(ctx context.Context) *shoalv1.Audit {
	c := callerFrom(ctx)
	method, _ := grpc.Method(ctx)
	return &shoalv1.Audit{Actor: c.Name, Role: string(c.Role), Method: path.Base(method), Time: timestamppb.Now()}
}

// validate runs the command against local state without committing it.
// A refusal is an answer about the state ("expected serial 5, but the
// serial is 4", "not found"), so it must be given from a state as fresh
// as a linearizable read's: a follower may lag, and even the leader may
// not yet have applied what it has committed and acknowledged. Before it
// refuses a command, a node catches up with the leader (a read index) and
// judges again; when it cannot, it says Unavailable rather than refuse on
// a state that may be stale (the nemesis test found CAS writes refused so
// by a partitioned follower and by one behind a dead leader).
func (s *Server) validate(ctx context.Context, cmd *shoalv1.Command) (res *raftfsm.Result, base *shoalv1.State, err error) {
	base = s.node.FSM().State()
	if res, err = judge(base, cmd); err == nil {
		return res, base, mayChangeScripts(ctx, base, res)
	}
	if berr := s.barrier(ctx); berr != nil {
		return nil, nil, berr
	}
	base = s.node.FSM().State()
	if res, err = judge(base, cmd); err != nil {
		return nil, nil, err
	}
	return res, base, mayChangeScripts(ctx, base, res)
}

// mayChangeScripts applies scriptAccess to a judged write: to the one
// service it changed, when it changed one, so that a write of one service
// costs one service here too (and needs no state after it, which Judge
// does not build).
func mayChangeScripts(ctx context.Context, st *shoalv1.State, res *raftfsm.Result) error {
	if res.Replayed {
		return nil
	}
	prev, next := st.GetConfig(), res.State.GetConfig()
	if res.Service != "" {
		prev = oneService(prev, res.Service)
		next = &shoalv1.Config{Global: prev.GetGlobal()}
		if res.After != nil {
			next.Services = []*shoalv1.VirtualService{res.After}
		}
	}
	return scriptAccess(callerFrom(ctx), prev, next)
}

// oneService is c with its global settings and the service named name
// alone (none if it has no such service); c's services are sorted by name.
func oneService(c *shoalv1.Config, name string) *shoalv1.Config {
	one := &shoalv1.Config{Global: c.GetGlobal()}
	ss := c.GetServices()
	if i, ok := slices.BinarySearchFunc(ss, name, func(s *shoalv1.VirtualService, name string) int {
		return strings.Compare(s.GetName(), name)
	}); ok {
		one.Services = []*shoalv1.VirtualService{ss[i]}
	}
	return one
}

// judged is the outcome of raftfsm.Judge(base, cmd) that validate
// computed: the leader's FSM takes it when it applies the command to base
// (raftfsm.Node.ApplyJudged), instead of computing it a second time.
type judged struct {
	base *shoalv1.State
	res  *raftfsm.Result
}

// dryRun validates cmd against a consistent view of the state and returns
// what it would do; it never reaches Raft.
func (s *Server) dryRun(ctx context.Context, cmd *shoalv1.Command) (*raftfsm.Result, error) {
	if err := s.barrier(ctx); err != nil {
		return nil, toStatus(err)
	}
	st := s.node.FSM().State()
	res, err := raftfsm.Apply(st, cmd)
	res, err = admit(st, res, err)
	return res, toStatus(err)
}

// judge is raftfsm.Judge plus the rules only the API enforces (admit).
func judge(st *shoalv1.State, cmd *shoalv1.Command) (*raftfsm.Result, error) {
	res, err := raftfsm.Judge(st, cmd)
	return admit(st, res, err)
}

// admit applies the rules only the API enforces (config.Admit: addresses
// that cannot work), which the state machine must not, so that a log
// committed before them replays the same, to the outcome of a command
// on st.
func admit(st *shoalv1.State, res *raftfsm.Result, err error) (*raftfsm.Result, error) {
	if err != nil || res.Replayed {
		return res, err
	}
	if res.Service != "" {
		// A write of one service: judge it alone, not the whole table.
		err = config.AdmitService(st.GetConfig(), res.After)
	} else if c := res.State.GetConfig(); c != st.GetConfig() {
		err = config.Admit(st.GetConfig(), c)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// commit applies cmd on the leader, forwarding when this node does not
// lead, and retries while leadership moves (up to LeaderWait).
func (s *Server) commit(ctx context.Context, cmd *shoalv1.Command, j judged) (*written, error) {
	deadline := time.Now().Add(s.o.LeaderWait)
	for {
		w, err := s.commitOnce(ctx, cmd, j)
		if err == nil || !retryable(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return w, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// retryable errors mean "the leader moved before the command was
// accepted"; the command was not committed and can be sent again.
func retryable(err error) bool {
	if errors.Is(err, raftfsm.ErrNotLeader) || errors.Is(err, errNoLeader) || errors.Is(err, raft.ErrNotLeader) {
		return true
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable {
		return st.Message() == notLeaderMsg
	}
	return false
}

func (s *Server) commitOnce(ctx context.Context, cmd *shoalv1.Command, j judged) (*written, error) {
	if s.isLeader() {
		res, err := s.node.ApplyJudged(ctx, cmd, j.base, j.res)
		if err == nil {
			return writtenHere(res), nil
		}
		if errors.Is(err, raft.ErrLeadershipLost) {
			return nil, mayHaveApplied(cmd, "this node lost its leadership", err.Error())
		}
		if !errors.Is(err, raftfsm.ErrNotLeader) {
			return nil, err
		}
	}
	id, addr, self, err := s.leader(ctx)
	if err != nil {
		return nil, err
	}
	if self {
		res, err := s.node.ApplyJudged(ctx, cmd, j.base, j.res)
		if errors.Is(err, raft.ErrLeadershipLost) {
			return nil, mayHaveApplied(cmd, "this node lost its leadership", err.Error())
		}
		if err != nil {
			return nil, err
		}
		return writtenHere(res), nil
	}
	cc, err := s.conn(addr)
	if err != nil {
		return nil, err
	}
	var header metadata.MD
	resp, err := shoalv1.NewPeerServiceClient(cc).ApplyCommand(ctx, &shoalv1.ApplyCommandRequest{Command: cmd}, grpc.Header(&header))
	if err != nil {
		if notConnected(err) {
			// The command never left this node: wait for the
			// followers to notice and elect someone else.
			return nil, fmt.Errorf("leader %s at %s unreachable (%s): %w", id, addr, status.Convert(err).Message(), errNoLeader)
		}
		if st := status.Convert(err); st.Code() == codes.Unavailable && st.Message() != notLeaderMsg {
			// Sent but unanswered: retrying without a request id could
			// apply it twice.
			return nil, mayHaveApplied(cmd, "leader "+id+" went away", st.Message())
		}
		return nil, err
	}
	// Answer with this node's state once it holds the write, so a client
	// that reads from here next sees what it wrote. The write is committed
	// whatever happens here: a node cut off from the leader answers with
	// its older state rather than an error.
	wctx, cancel := context.WithTimeout(ctx, s.o.LeaderWait)
	defer cancel()
	st, err := s.waitApplied(wctx, resp.GetIndex(), resp.GetSerial())
	if err != nil {
		s.log.Warn("committed write not applied here in time; answering with local state",
			"serial", resp.GetSerial(), "applied_serial", s.node.FSM().State().GetConfig().GetSerial(), "err", err)
		st = s.node.FSM().State()
	}
	replayed := slices.Contains(header.Get(replayedKey), "true")
	return &written{serial: resp.GetSerial(), changes: resp.GetChanges(), state: st, replayed: replayed, summary: resp.GetSummary()}, nil
}

// writtenHere is a write this node committed as the leader.
func writtenHere(res *raftfsm.Result) *written {
	return &written{serial: res.Serial, changes: res.Changes, state: res.State, replayed: res.Replayed, summary: res.Summary}
}

// waitApplied waits until the local FSM has applied index, or, from a leader
// that does not say the index, reached serial.
func (s *Server) waitApplied(ctx context.Context, index, serial uint64) (*shoalv1.State, error) {
	if index == 0 {
		return s.waitSerial(ctx, serial)
	}
	if err := s.node.WaitApplied(ctx, index); err != nil {
		return nil, err
	}
	return s.node.FSM().State(), nil
}

// waitSerial waits until the local FSM's config serial reaches serial.
func (s *Server) waitSerial(ctx context.Context, serial uint64) (*shoalv1.State, error) {
	fsm := s.node.FSM()
	events, cancel := fsm.Subscribe(0)
	defer cancel()
	// The event channel wakes us promptly; the ticker covers an event
	// dropped for a slow subscriber.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		st := fsm.State()
		if st.GetConfig().GetSerial() >= serial {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case _, ok := <-events:
			if !ok {
				events = nil
			}
		case <-tick.C:
		}
	}
}

const notLeaderMsg = "this node is not the leader"

// notConnected reports a call that failed because no connection to the peer
// could be made, so the request was certainly not delivered (and a retry
// cannot apply a command twice).
func notConnected(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return false
	}
	msg := st.Message()
	return strings.Contains(msg, "while dialing") || strings.Contains(msg, "connection refused") ||
		strings.Contains(msg, "no route to host")
}

// peerService is spoken between nodes. It never forwards: a node that does
// not lead says so and the sender looks the leader up again.
type peerService struct {
	*Server
	shoalv1.UnimplementedPeerServiceServer
}

func (p peerService) ApplyCommand(ctx context.Context, req *shoalv1.ApplyCommandRequest) (*shoalv1.ApplyCommandResponse, error) {
	if req.GetCommand() == nil {
		return nil, invalid("command", "required")
	}
	if !p.isLeader() {
		return nil, status.Error(codes.Unavailable, notLeaderMsg)
	}
	// The sending node stamped the client's audit and request id; a
	// command of its own (none so far) is the node's. The request id is
	// kept as sent, never made here: a retry must carry the same one.
	if req.GetCommand().GetAudit() == nil {
		req.GetCommand().Audit = p.audit(ctx)
	}
	res, err := p.node.Apply(ctx, req.GetCommand())
	if errors.Is(err, raftfsm.ErrNotLeader) {
		return nil, status.Error(codes.Unavailable, notLeaderMsg)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	if res.Replayed {
		_ = grpc.SetHeader(ctx, metadata.Pairs(replayedKey, "true"))
	}
	return &shoalv1.ApplyCommandResponse{Serial: res.Serial, Changes: res.Changes, Index: res.Index, Summary: res.Summary}, nil
}

func (p peerService) ReadIndex(ctx context.Context, _ *shoalv1.ReadIndexRequest) (*shoalv1.ReadIndexResponse, error) {
	idx, err := p.node.ReadIndex(ctx)
	if errors.Is(err, raftfsm.ErrNotLeader) {
		return nil, status.Error(codes.Unavailable, notLeaderMsg)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &shoalv1.ReadIndexResponse{Index: idx}, nil
}
