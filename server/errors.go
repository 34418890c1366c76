package server

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/raft"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/raftfsm"
)

// errNoLeader is returned when no leader is known, or the known one has not
// registered its API address yet.
var errNoLeader = errors.New("no leader is known; the cluster may be electing one or have lost quorum")

// toStatus is the one place where errors become gRPC statuses. Statuses
// already made (by a forwarded call, or by a handler for a bad request) pass
// through unchanged.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var fe *raftfsm.Error
	if errors.As(err, &fe) {
		return fsmStatus(fe)
	}
	var ce config.Errors
	if errors.As(err, &ce) {
		return fsmStatus(&raftfsm.Error{Kind: raftfsm.KindInvalid, Reason: "invalid config", Fields: ce})
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, raftfsm.ErrNotLeader), errors.Is(err, errNoLeader),
		errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrRaftShutdown),
		errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrAbortedByRestore):
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// fsmStatus maps a rejected command: the message names every field and
// reason (`services[web].port: must be 1..65535 unless fwmark is set`) and
// the same list travels as BadRequest field violations for programs.
func fsmStatus(fe *raftfsm.Error) error {
	code := codes.InvalidArgument
	switch fe.Kind {
	case raftfsm.KindNotFound:
		code = codes.NotFound
	case raftfsm.KindAlreadyExists:
		code = codes.AlreadyExists
	case raftfsm.KindFailedPrecondition:
		code = codes.FailedPrecondition
	}
	msg := fe.Reason
	if len(fe.Fields) > 0 {
		parts := make([]string, 0, len(fe.Fields))
		for _, f := range fe.Fields {
			parts = append(parts, f.Field+": "+f.Reason)
		}
		// The field list says more than the summary reason does.
		msg = strings.Join(parts, "; ")
	}
	if msg == "" {
		msg = "rejected"
	}
	st := status.New(code, msg)
	if len(fe.Fields) == 0 {
		return st.Err()
	}
	br := &errdetails.BadRequest{}
	for _, f := range fe.Fields {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: f.Field, Description: f.Reason})
	}
	if withDetails, err := st.WithDetails(br); err == nil {
		return withDetails.Err()
	}
	return st.Err()
}

// invalid is a request error found before a command could even be built
// (a missing message, an unknown mask path).
func invalid(field, format string, args ...any) error {
	return fsmStatus(&raftfsm.Error{Kind: raftfsm.KindInvalid, Fields: config.Errors{{Field: field, Reason: fmt.Sprintf(format, args...)}}})
}
