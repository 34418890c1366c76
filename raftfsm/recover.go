package raftfsm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// ForceNewCluster rewrites the Raft state in dataDir so that node id is the
// only voter of its cluster, keeping its log and so its configuration: the
// way out when a majority of the routers is gone for good, and the rest
// can neither elect a leader nor commit anything (etcd's
// --force-new-cluster, Consul's peers.json). lvsd must not be running on
// dataDir. It returns the node's Raft address as the old configuration
// had it.
//
// The old members must not come back with their data: two of three could
// still elect a leader among themselves. Move their data directories away
// and join them again.
func ForceNewCluster(dataDir, id string, logger *slog.Logger) (string, error) {
	path := filepath.Join(dataDir, "raft.db")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("no raft state to recover: %w", err)
	}
	// raft panics on a damaged log; rebuilding a cluster from one would
	// spread the damage.
	if err := checkDataDir(dataDir, logger); err != nil {
		return "", err
	}
	// bbolt locks the file while lvsd has it open; waiting a second tells
	// that lvsd runs, instead of blocking for ever.
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{Timeout: time.Second}})
	if errors.Is(err, bbolt.ErrTimeout) {
		return "", fmt.Errorf("%s is in use: stop lvsd on this router first", path)
	}
	if err != nil {
		return "", fmt.Errorf("open %s: %w", path, err)
	}
	defer bolt.Close()
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(id)
	conf.Logger = newHclogAdapter(logger.With("component", "raft"))
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dataDir, 2, conf.Logger)
	if err != nil {
		return "", fmt.Errorf("open the snapshots in %s: %w", dataDir, err)
	}

	// The address is the one the members knew this node by.
	_, probe := raft.NewInmemTransport("")
	readConf := *conf
	old, err := raft.GetConfiguration(&readConf, NewFSM(), bolt, bolt, snaps, probe)
	if err != nil {
		return "", fmt.Errorf("read the raft configuration in %s: %w", dataDir, err)
	}
	i := slices.IndexFunc(old.Servers, func(s raft.Server) bool { return s.ID == raft.ServerID(id) })
	if i < 0 {
		var ids []string
		for _, s := range old.Servers {
			ids = append(ids, string(s.ID))
		}
		return "", fmt.Errorf("node %q is not in the configuration in %s (members: %s); give the right --id", id, dataDir, strings.Join(ids, ", "))
	}
	addr := old.Servers[i].Address
	_, trans := raft.NewInmemTransport(addr)
	alone := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: addr}}}
	if err := raft.RecoverCluster(conf, NewFSM(), bolt, bolt, snaps, trans, alone); err != nil {
		return "", fmt.Errorf("recover the raft state in %s: %w", dataDir, err)
	}
	// A cluster of its own, under an ID of its own: the old members, should
	// one come back with its data, are refused on the wire rather than
	// followed (a member that leads a higher term is followed by any node
	// whose configuration does not even list it).
	was, err := ReadClusterID(dataDir)
	if err != nil {
		return "", err
	}
	b := make([]byte, clusterIDBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("draw a cluster ID: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dataDir, RecoveredFile), []byte(fmt.Sprintf("recovered from cluster %s at %s\n",
		orUnknown(was), time.Now().UTC().Format(time.RFC3339)))); err != nil {
		return "", err
	}
	if err := writeClusterID(dataDir, hex.EncodeToString(b)); err != nil {
		return "", err
	}
	return string(addr), nil
}

// RecoveredFile marks a data dir that ForceNewCluster made the only member
// of a cluster of its own: its cluster ID is its own, not the one
// --bootstrap describes, and Open does not hold that against it.
const RecoveredFile = "recovered"
