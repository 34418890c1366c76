package server

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"github.com/shoal-lb/shoal/raftfsm"
)

type lbService struct {
	*Server
	shoalv1.UnimplementedLoadBalancerServiceServer
}

// serviceAfter answers a write with the named service as the write left
// it (as first committed, for a replay).
func serviceAfter(w *written, name string) *shoalv1.VirtualService {
	if c := w.state.GetConfig(); c.GetSerial() != w.serial {
		// Rebuild the one service, not the whole configuration (see
		// written.config).
		if s, err := raftfsm.ServiceAt(w.state, w.serial, name); err == nil {
			return s
		}
	}
	return findService(w.state.GetConfig(), name)
}

func (l lbService) CreateVirtualService(ctx context.Context, req *shoalv1.CreateVirtualServiceRequest) (*shoalv1.CreateVirtualServiceResponse, error) {
	if req.GetService() == nil {
		return nil, invalid("service", "required")
	}
	w, err := l.write(ctx, &shoalv1.Command{Op: &shoalv1.Command_CreateVirtualService{CreateVirtualService: req}})
	if err != nil {
		return nil, err
	}
	return &shoalv1.CreateVirtualServiceResponse{Service: serviceAfter(w, req.GetService().GetName()), Serial: w.serial}, nil
}

func (l lbService) GetVirtualService(ctx context.Context, req *shoalv1.GetVirtualServiceRequest) (*shoalv1.GetVirtualServiceResponse, error) {
	if req.GetName() == "" {
		return nil, invalid("name", "required")
	}
	st, err := l.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	vs := findService(st.GetConfig(), req.GetName())
	if vs == nil {
		return nil, status.Errorf(codes.NotFound, "services[%s]: no such virtual service", req.GetName())
	}
	return &shoalv1.GetVirtualServiceResponse{Service: vs, Serial: st.GetConfig().GetSerial()}, nil
}

func (l lbService) ListVirtualServices(ctx context.Context, req *shoalv1.ListVirtualServicesRequest) (*shoalv1.ListVirtualServicesResponse, error) {
	st, err := l.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	return &shoalv1.ListVirtualServicesResponse{Services: st.GetConfig().GetServices(), Serial: st.GetConfig().GetSerial()}, nil
}

func (l lbService) UpdateVirtualService(ctx context.Context, req *shoalv1.UpdateVirtualServiceRequest) (*shoalv1.UpdateVirtualServiceResponse, error) {
	if req.GetService() == nil {
		return nil, invalid("service", "required")
	}
	if req.GetService().GetName() == "" {
		return nil, invalid("service.name", "required: it names the service to change")
	}
	w, err := l.write(ctx, &shoalv1.Command{Op: &shoalv1.Command_UpdateVirtualService{UpdateVirtualService: req}})
	if err != nil {
		return nil, err
	}
	return &shoalv1.UpdateVirtualServiceResponse{Service: serviceAfter(w, req.GetService().GetName()), Serial: w.serial}, nil
}

func (l lbService) DeleteVirtualService(ctx context.Context, req *shoalv1.DeleteVirtualServiceRequest) (*shoalv1.DeleteVirtualServiceResponse, error) {
	if req.GetName() == "" {
		return nil, invalid("name", "required")
	}
	w, err := l.write(ctx, &shoalv1.Command{Op: &shoalv1.Command_DeleteVirtualService{DeleteVirtualService: req}})
	if err != nil {
		return nil, err
	}
	return &shoalv1.DeleteVirtualServiceResponse{Serial: w.serial}, nil
}

func (l lbService) AddRealServer(ctx context.Context, req *shoalv1.AddRealServerRequest) (*shoalv1.AddRealServerResponse, error) {
	if req.GetService() == "" {
		return nil, invalid("service", "required")
	}
	if req.GetRealServer() == nil {
		return nil, invalid("real_server", "required")
	}
	w, err := l.write(ctx, &shoalv1.Command{Op: &shoalv1.Command_AddRealServer{AddRealServer: req}})
	if err != nil {
		return nil, err
	}
	return &shoalv1.AddRealServerResponse{Service: serviceAfter(w, req.GetService()), Serial: w.serial}, nil
}

func (l lbService) UpdateRealServer(ctx context.Context, req *shoalv1.UpdateRealServerRequest) (*shoalv1.UpdateRealServerResponse, error) {
	if req.GetService() == "" {
		return nil, invalid("service", "required")
	}
	if req.GetRealServer() == nil {
		return nil, invalid("real_server", "required")
	}
	w, err := l.write(ctx, &shoalv1.Command{Op: &shoalv1.Command_UpdateRealServer{UpdateRealServer: req}})
	if err != nil {
		return nil, err
	}
	return &shoalv1.UpdateRealServerResponse{Service: serviceAfter(w, req.GetService()), Serial: w.serial}, nil
}

func (l lbService) RemoveRealServer(ctx context.Context, req *shoalv1.RemoveRealServerRequest) (*shoalv1.RemoveRealServerResponse, error) {
	if req.GetService() == "" {
		return nil, invalid("service", "required")
	}
	if req.GetAddress() == "" {
		return nil, invalid("address", "required")
	}
	w, err := l.write(ctx, &shoalv1.Command{Op: &shoalv1.Command_RemoveRealServer{RemoveRealServer: req}})
	if err != nil {
		return nil, err
	}
	return &shoalv1.RemoveRealServerResponse{Service: serviceAfter(w, req.GetService()), Serial: w.serial}, nil
}
