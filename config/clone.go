package config

import (
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// CloneService is proto.Clone of a service, written out for the service
// and its real servers: a write of one service clones it on every node,
// and the reflective clone was a fifth of judging a weight change. The
// VIP, the health checks and the sorry server's checks are cloned by
// proto.Clone still. A field the written-out copy does not name (one
// added to the proto since), or unknown fields, make it proto.Clone the
// message whole; TestCloneServiceCoversEveryField fails meanwhile.
func CloneService(s *shoalv1.VirtualService) *shoalv1.VirtualService {
	if s == nil {
		return nil
	}
	if !cloneWrittenOut || len(s.ProtoReflect().GetUnknown()) > 0 {
		return proto.Clone(s).(*shoalv1.VirtualService)
	}
	c := &shoalv1.VirtualService{
		Name: s.Name, Port: s.Port, Protocol: s.Protocol, Fwmark: s.Fwmark,
		Scheduler: s.Scheduler, PersistenceTimeout: s.PersistenceTimeout, PersistencePrefix: s.PersistencePrefix,
		Forward: s.Forward, Active: clonePtr(s.Active), Quiesce: s.Quiesce, Announce: s.Announce,
	}
	if s.Vip != nil {
		c.Vip = proto.Clone(s.Vip).(*shoalv1.Address)
	}
	if s.SorryServer != nil {
		c.SorryServer = cloneRealServer(s.SorryServer)
	}
	if s.HealthCheck != nil {
		c.HealthCheck = proto.Clone(s.HealthCheck).(*shoalv1.HealthCheck)
	}
	if len(s.RealServers) > 0 { // an empty list is unset, as proto.Clone leaves it
		c.RealServers = make([]*shoalv1.RealServer, len(s.RealServers))
		for i, rs := range s.RealServers {
			c.RealServers[i] = cloneRealServer(rs)
		}
	}
	return c
}

// cloneRealServer is proto.Clone of a real server that is an element of a
// list or a set field: nil becomes an empty real server, as proto.Clone
// makes it in a list (the field is never nil: CloneService asks).
func cloneRealServer(rs *shoalv1.RealServer) *shoalv1.RealServer {
	if rs == nil {
		return &shoalv1.RealServer{}
	}
	if len(rs.HealthChecks) > 0 || len(rs.ProtoReflect().GetUnknown()) > 0 {
		return proto.Clone(rs).(*shoalv1.RealServer)
	}
	return &shoalv1.RealServer{
		Address: rs.Address, Port: rs.Port, Weight: clonePtr(rs.Weight), Active: clonePtr(rs.Active),
		Forward: rs.Forward, Name: rs.Name, UpperThreshold: rs.UpperThreshold, LowerThreshold: rs.LowerThreshold,
	}
}

// clonePtr copies an optional scalar: a clone shares no memory with the
// state it came from.
func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// cloneWrittenOut is whether CloneService's copy names every field of a
// service and of a real server.
var cloneWrittenOut = hasFields(&shoalv1.VirtualService{}, "name", "vip", "port", "protocol", "fwmark", "scheduler",
	"persistence_timeout", "persistence_prefix", "forward", "active", "quiesce", "sorry_server", "health_check",
	"real_servers", "announce") &&
	hasFields(&shoalv1.RealServer{}, "address", "port", "weight", "active", "forward", "name",
		"upper_threshold", "lower_threshold", "health_checks")

// hasFields is whether m's fields are names, in order.
func hasFields(m proto.Message, names ...string) bool {
	fields := m.ProtoReflect().Descriptor().Fields()
	return fields.Len() == len(names) && !slices.ContainsFunc(names, func(n string) bool {
		fd := fields.ByName(protoreflect.Name(n))
		return fd == nil || fields.Get(slices.Index(names, n)) != fd
	})
}
