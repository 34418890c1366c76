package server

import (
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	shoalconfig "github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// MaxMessageSize bounds one gRPC message in either direction, on the API,
// between nodes (forwarded writes) and in lvsctl. grpc's default receive
// limit, 4 MiB, is reached by the configuration of about 6,000 services of
// 10 real servers, and the answer to applying it by fewer: a client was
// told "received message larger than max" for a write that had been
// committed. 64 MiB holds a table of 100,000 real servers several times
// over and still bounds what one call may make a node allocate.
// Watch and snapshot transfer go through the same limit (Watch) or none
// (raft streams its snapshots).
const MaxMessageSize = 64 << 20

// CallOptions are the default call options of a client of the API:
// lvsctl, a node forwarding a write, a joining node.
func CallOptions() grpc.DialOption {
	return grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize))
}

// An apply answers with its changes and the resulting configuration only
// when there are at most maxAnswerChanges changes and the configuration
// encodes in at most maxAnswerConfig bytes, unless the client asks for them
// however large (ApplyConfigRequest.full); otherwise with the summary
// alone. Re-applying a table of 100,000 real servers changes nothing, and
// its answer was still 7 MB.
const (
	maxAnswerChanges = 1000
	maxAnswerConfig  = 1 << 20
)

// limitedAnswer is the answer to an apply or a rollback: the summary
// always, the changes and the configuration when there are few changes or
// the client asked for them all. config is called only when it is sent,
// since it may have to be rebuilt from the history.
type limitedAnswer struct {
	changes []*shoalv1.Change
	config  *shoalv1.Config
	summary *shoalv1.ChangeSummary
	omitted bool
}

// known is the summary of a replayed write whose changes are no longer
// kept (raftfsm.Result.Summary): the answer is that summary alone, full
// or not.
func limitAnswer(changes []*shoalv1.Change, known *shoalv1.ChangeSummary, config func() *shoalv1.Config, full bool) limitedAnswer {
	if known != nil {
		return limitedAnswer{summary: known, omitted: true}
	}
	a := limitedAnswer{summary: shoalconfig.Summarize(changes)}
	if !full && len(changes) > maxAnswerChanges {
		a.omitted = true
		return a
	}
	c := config()
	if !full && proto.Size(c) > maxAnswerConfig {
		a.omitted = true
		return a
	}
	a.changes, a.config = changes, c
	return a
}

func applyAnswer(serial uint64, changes []*shoalv1.Change, known *shoalv1.ChangeSummary, config func() *shoalv1.Config, full bool) *shoalv1.ApplyConfigResponse {
	a := limitAnswer(changes, known, config, full)
	return &shoalv1.ApplyConfigResponse{Serial: serial, Changes: a.changes, Config: a.config, Summary: a.summary, ChangesOmitted: a.omitted}
}

func rollbackAnswer(serial uint64, changes []*shoalv1.Change, known *shoalv1.ChangeSummary, config func() *shoalv1.Config, full bool) *shoalv1.RollbackConfigResponse {
	a := limitAnswer(changes, known, config, full)
	return &shoalv1.RollbackConfigResponse{Serial: serial, Changes: a.changes, Config: a.config, Summary: a.summary, ChangesOmitted: a.omitted}
}
