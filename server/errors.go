package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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
		// The field list says more than the summary reason does. It is
		// capped: a status message travels in an HTTP/2 header, and ten
		// thousand problems outgrew the header limit (the client saw
		// COMPRESSION_ERROR instead of any of them).
		shown := fe.Fields[:min(len(fe.Fields), maxMessageFields)]
		parts := make([]string, 0, len(shown)+1)
		for _, f := range shown {
			parts = append(parts, f.Field+": "+f.Reason)
		}
		if more := len(fe.Fields) - len(shown); more > 0 {
			parts = append(parts, fmt.Sprintf("… and %s more (every problem is in the status's BadRequest details)", thousands(more)))
		}
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
	for _, f := range fe.Fields[:min(len(fe.Fields), maxDetailFields)] {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: f.Field, Description: f.Reason})
	}
	if more := len(fe.Fields) - maxDetailFields; more > 0 {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field: "config", Description: fmt.Sprintf("… and %s more problems not listed", thousands(more))})
	}
	if withDetails, err := st.WithDetails(br); err == nil {
		return withDetails.Err()
	}
	return st.Err()
}

// How many field problems a status lists: in its message, which people
// read; in its BadRequest details, which programs read. Both travel in the
// response's trailers, whose size the client bounds (grpc-go: 16 MiB);
// 100,000 problems of about 60 bytes, base64 encoded, stay well below it.
const (
	maxMessageFields = 10
	maxDetailFields  = 100000
)

// thousands formats n with commas: 9,990.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// invalid is a request error found before a command could even be built
// (a missing message, an unknown mask path).
func invalid(field, format string, args ...any) error {
	return fsmStatus(&raftfsm.Error{Kind: raftfsm.KindInvalid, Fields: config.Errors{{Field: field, Reason: fmt.Sprintf(format, args...)}}})
}
