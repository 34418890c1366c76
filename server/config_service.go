package server

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

type configService struct {
	*Server
	shoalv1.UnimplementedConfigServiceServer
}

func (c configService) GetConfig(ctx context.Context, req *shoalv1.GetConfigRequest) (*shoalv1.GetConfigResponse, error) {
	st, err := c.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	return &shoalv1.GetConfigResponse{Config: st.GetConfig()}, nil
}

func (c configService) ApplyConfig(ctx context.Context, req *shoalv1.ApplyConfigRequest) (*shoalv1.ApplyConfigResponse, error) {
	if req.GetConfig() == nil {
		return nil, invalid("config", "required")
	}
	cmd := &shoalv1.Command{Op: &shoalv1.Command_ApplyConfig{ApplyConfig: req}}
	if req.GetDryRun() {
		res, err := c.dryRun(ctx, cmd)
		if err != nil {
			return nil, err
		}
		// A dry run commits nothing, so the serial stays where it is.
		return applyAnswer(c.node.FSM().State().GetConfig().GetSerial(), res.Changes, nil, res.State.GetConfig, req.GetFull()), nil
	}
	w, err := c.write(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return applyAnswer(w.serial, w.changes, w.summary, w.config, req.GetFull()), nil
}

// Watch streams committed configuration changes as this node applies them.
func (c configService) Watch(req *shoalv1.WatchRequest, stream grpc.ServerStreamingServer[shoalv1.WatchResponse]) error {
	ctx := stream.Context()
	// Subscribe before reading the state, so nothing falls between the
	// initial message and the first event.
	events, cancel := c.node.FSM().Subscribe(0)
	defer cancel()
	last := c.node.FSM().State().GetConfig()
	sent := last.GetSerial()
	if req.GetInitial() {
		if err := stream.Send(&shoalv1.WatchResponse{Serial: sent, Config: last}); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return status.Error(codes.Aborted, "watch fell behind the applied changes; watch again with initial")
			}
			// Registry changes leave the serial alone and are not
			// configuration changes.
			if ev.Serial <= sent {
				continue
			}
			sent = ev.Serial
			msg := &shoalv1.WatchResponse{Serial: ev.Serial, Changes: ev.Changes}
			if len(ev.Changes) == 0 {
				// A snapshot restore jumps ahead without a diff: send the
				// whole configuration, as the initial message does.
				msg.Config = ev.State.GetConfig()
			}
			if err := stream.Send(msg); err != nil {
				return err
			}
		}
	}
}
