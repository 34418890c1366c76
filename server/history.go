package server

import (
	"context"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"github.com/shoal-lb/shoal/raftfsm"
)

// ListHistory answers from the replicated history, newest first. The
// entries are the state's own (never modified), so nothing is copied.
func (c configService) ListHistory(ctx context.Context, req *shoalv1.ListHistoryRequest) (*shoalv1.ListHistoryResponse, error) {
	st, err := c.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	h := st.GetHistory()
	n := len(h)
	if limit := int(req.GetLimit()); limit > 0 && limit < n {
		n = limit
	}
	entries := make([]*shoalv1.HistoryEntry, 0, n)
	for i := len(h) - 1; i >= len(h)-n; i-- {
		entries = append(entries, h[i].GetEntry())
	}
	return &shoalv1.ListHistoryResponse{Entries: entries, OldestSerial: raftfsm.OldestSerial(st), Serial: st.GetConfig().GetSerial()}, nil
}

func (c configService) GetHistoryEntry(ctx context.Context, req *shoalv1.GetHistoryEntryRequest) (*shoalv1.GetHistoryEntryResponse, error) {
	if req.GetSerial() == 0 {
		// No change produces serial 0: it is the empty configuration.
		return nil, invalid("serial", "required: the serial a change produced")
	}
	st, err := c.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	entry, before, after, err := raftfsm.HistoryEntry(st, req.GetSerial())
	if err != nil {
		return nil, toStatus(err)
	}
	return &shoalv1.GetHistoryEntryResponse{Entry: entry, Before: before, After: after}, nil
}

// RollbackConfig commits the configuration of an earlier serial as a new
// change. The FSM rebuilds it from the history it holds when the command
// applies, so the request carries only the serial, and a rollback racing
// another write restores the same configuration either way (expected_serial
// makes it conditional on nothing having happened since).
func (c configService) RollbackConfig(ctx context.Context, req *shoalv1.RollbackConfigRequest) (*shoalv1.RollbackConfigResponse, error) {
	cmd := &shoalv1.Command{Op: &shoalv1.Command_RollbackConfig{RollbackConfig: req}}
	if req.GetDryRun() {
		res, err := c.dryRun(ctx, cmd)
		if err != nil {
			return nil, err
		}
		// A dry run commits nothing, so the serial stays where it is.
		return rollbackAnswer(c.node.FSM().State().GetConfig().GetSerial(), res.Changes, nil, res.State.GetConfig, req.GetFull()), nil
	}
	w, err := c.write(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return rollbackAnswer(w.serial, w.changes, w.summary, w.config, req.GetFull()), nil
}
