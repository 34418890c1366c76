package raftfsm

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
)

// Snapshot format: uvarint version (1), uvarint applied index, then the
// deterministic protobuf encoding of the State. The applied index travels with
// the state because raft does not tell Restore which index a snapshot ends at,
// and a follower that installs a snapshot must still answer WaitApplied.
const snapshotVersion = 1

type snapshot struct {
	state   *shoalv1.State
	applied uint64
}

// marshalSnapshot is deterministic: the same state and index give the same bytes.
func marshalSnapshot(st *shoalv1.State, applied uint64) ([]byte, error) {
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("marshal state: %w", err)
	}
	out := binary.AppendUvarint(nil, snapshotVersion)
	out = binary.AppendUvarint(out, applied)
	return append(out, body...), nil
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	b, err := marshalSnapshot(s.state, s.applied)
	if err == nil {
		_, err = sink.Write(b)
	}
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() {}

func readSnapshot(r io.Reader) (*shoalv1.State, uint64, error) {
	br := bufio.NewReader(r)
	v, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, 0, fmt.Errorf("read snapshot header: %w", err)
	}
	if v != snapshotVersion {
		return nil, 0, fmt.Errorf("snapshot format %d is not %d", v, snapshotVersion)
	}
	applied, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, 0, fmt.Errorf("read snapshot header: %w", err)
	}
	body, err := io.ReadAll(br)
	if err != nil {
		return nil, 0, fmt.Errorf("read snapshot: %w", err)
	}
	st := &shoalv1.State{}
	if err := proto.Unmarshal(body, st); err != nil {
		return nil, 0, fmt.Errorf("decode snapshot: %w", err)
	}
	if st.Config == nil {
		st.Config = EmptyState().Config
	}
	return st, applied, nil
}
