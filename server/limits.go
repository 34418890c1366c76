package server

import (
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

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

// summarize counts changes by what they touch.
func summarize(changes []*shoalv1.Change) *shoalv1.ChangeSummary {
	s := &shoalv1.ChangeSummary{}
	for _, c := range changes {
		switch {
		case c.GetService() == "":
			s.GlobalModified = true
		case c.GetRealServer() == "":
			switch c.GetAction() {
			case shoalv1.ChangeAction_CHANGE_ACTION_ADDED:
				s.ServicesAdded++
			case shoalv1.ChangeAction_CHANGE_ACTION_REMOVED:
				s.ServicesRemoved++
			default:
				s.ServicesModified++
			}
		default:
			switch c.GetAction() {
			case shoalv1.ChangeAction_CHANGE_ACTION_ADDED:
				s.RealServersAdded++
			case shoalv1.ChangeAction_CHANGE_ACTION_REMOVED:
				s.RealServersRemoved++
			default:
				s.RealServersModified++
			}
		}
	}
	return s
}

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

func limitAnswer(changes []*shoalv1.Change, config func() *shoalv1.Config, full bool) limitedAnswer {
	a := limitedAnswer{summary: summarize(changes)}
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

func applyAnswer(serial uint64, changes []*shoalv1.Change, config func() *shoalv1.Config, full bool) *shoalv1.ApplyConfigResponse {
	a := limitAnswer(changes, config, full)
	return &shoalv1.ApplyConfigResponse{Serial: serial, Changes: a.changes, Config: a.config, Summary: a.summary, ChangesOmitted: a.omitted}
}

func rollbackAnswer(serial uint64, changes []*shoalv1.Change, config func() *shoalv1.Config, full bool) *shoalv1.RollbackConfigResponse {
	a := limitAnswer(changes, config, full)
	return &shoalv1.RollbackConfigResponse{Serial: serial, Changes: a.changes, Config: a.config, Summary: a.summary, ChangesOmitted: a.omitted}
}
