package raftfsm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Raft has no notion of which cluster a peer belongs to: a node left
// running at an address that a new cluster's bootstrap names follows the
// new leader's heartbeats while it keeps a configuration of its own. Every
// cluster therefore has an ID, and every Raft connection opens with a
// hello that shows it (as etcd refuses a peer with "cluster ID mismatch").

// ClusterIDFile is the file in the data directory that holds the cluster
// ID, written when the node first bootstraps or joins.
const ClusterIDFile = "cluster-id"

// clusterIDBytes is the length of a cluster ID: hex of the first 16 bytes
// of a SHA-256.
const clusterIDBytes = 16

// ClusterIDFor derives a cluster's ID from what every router of its first
// bootstrap is given alike, so that each works it out without talking: the
// servers of the bootstrap configuration (in any order) and tokens that
// tell apart two clusters bootstrapped with the same list (a cluster name,
// a CA's fingerprint). Empty tokens at the end count for nothing.
func ClusterIDFor(servers []raft.Server, tokens ...string) string {
	for len(tokens) > 0 && tokens[len(tokens)-1] == "" {
		tokens = tokens[:len(tokens)-1]
	}
	list := make([]string, len(servers))
	for i, s := range servers {
		list[i] = string(s.ID) + "=" + string(s.Address)
	}
	slices.Sort(list)
	h := sha256.New()
	field := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field("shoal cluster id v1")
	field(strconv.Itoa(len(list)))
	for _, s := range list {
		field(s)
	}
	for _, t := range tokens {
		field(t)
	}
	return hex.EncodeToString(h.Sum(nil)[:clusterIDBytes])
}

// ValidClusterID reports whether id is a cluster ID as ClusterIDFor makes
// them: 32 lower-case hex digits.
func ValidClusterID(id string) bool {
	if len(id) != 2*clusterIDBytes {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// ReadClusterID returns the cluster ID stored in dataDir, or "" when the
// directory holds none.
func ReadClusterID(dataDir string) (string, error) {
	p := filepath.Join(dataDir, ClusterIDFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read cluster ID: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if !ValidClusterID(id) {
		return "", fmt.Errorf("%s does not hold a cluster ID (32 hex digits): the file is damaged; "+
			"copy it from another member of the cluster", p)
	}
	return id, nil
}

// writeClusterID stores id in dataDir (0600), replacing any file there
// whole: a crash leaves the old ID or the new one, never half of it.
func writeClusterID(dataDir, id string) error {
	if err := writeFileAtomic(filepath.Join(dataDir, ClusterIDFile), []byte(id+"\n")); err != nil {
		return fmt.Errorf("store the cluster ID: %w", err)
	}
	return nil
}

// writeFileAtomic writes a small file of root's (0600) beside the raft
// state: to a temporary file, synced, then renamed over p.
func writeFileAtomic(p string, data []byte) error {
	dir := filepath.Dir(p)
	tmp, err := os.CreateTemp(dir, filepath.Base(p)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ClusterIDMismatchError is a refusal of Open: the data directory belongs
// to one cluster and the caller says the node is of another.
type ClusterIDMismatchError struct {
	DataDir        string
	Stored, Wanted string
}

func (e *ClusterIDMismatchError) Error() string {
	return fmt.Sprintf("data dir %s belongs to cluster %s, not %s", e.DataDir, e.Stored, e.Wanted)
}

// PeerClusterError is a Raft connection refused because its two ends do
// not belong to the same cluster, or one of them does not know its cluster
// yet.
type PeerClusterError struct {
	// Addr is the peer's address; Node its raft server ID as it says.
	Addr, Node string
	// Peer and Local are the two cluster IDs; "" for one not known yet.
	Peer, Local string
}

func (e *PeerClusterError) Error() string {
	peer := "peer " + e.Addr
	if e.Node != "" {
		peer = fmt.Sprintf("peer %s at %s", e.Node, e.Addr)
	}
	switch {
	case e.Local == "":
		return fmt.Sprintf("cluster ID unknown: this node has not bootstrapped or joined a cluster yet, so it takes no part in Raft (%s belongs to cluster %s)", peer, orUnknown(e.Peer))
	case e.Peer == "":
		return fmt.Sprintf("cluster ID mismatch: %s does not know its cluster yet (it has not joined), this node belongs to %s", peer, e.Local)
	}
	return fmt.Sprintf("cluster ID mismatch: %s belongs to cluster %s, this node to %s", peer, e.Peer, e.Local)
}

func orUnknown(id string) string {
	if id == "" {
		return "(none yet)"
	}
	return id
}

// The hello that opens every Raft connection, sent by the dialer and
// answered by the acceptor, both before raft reads or writes a byte:
//
//	"SHOAL" | version (1) | cluster ID (16 bytes, zero: not known) | len(node ID) (1) | node ID
//
// The acceptor answers with its own hello whatever it decides, so that the
// dialer can say which cluster the peer belongs to; on a mismatch it then
// closes the connection.
const (
	helloMagic   = "SHOAL"
	helloVersion = 1
)

// helloTimeout bounds the exchange on an accepted connection, and on a
// dialled one when raft gives no timeout.
const helloTimeout = 5 * time.Second

var (
	errHelloLegacy = errors.New("the peer speaks Raft without a cluster ID hello: an lvsd from before cluster IDs? upgrade it")
	errHelloMagic  = errors.New("not a shoal Raft connection")
)

func encodeHello(clusterID, node string) []byte {
	var id [clusterIDBytes]byte
	if raw, err := hex.DecodeString(clusterID); err == nil && len(raw) == clusterIDBytes {
		id = [clusterIDBytes]byte(raw)
	}
	node = node[:min(len(node), 255)]
	b := make([]byte, 0, len(helloMagic)+2+clusterIDBytes+len(node))
	b = append(b, helloMagic...)
	b = append(b, helloVersion)
	b = append(b, id[:]...)
	b = append(b, byte(len(node)))
	return append(b, node...)
}

// readHello reads a hello, byte for byte: whatever follows belongs to raft.
func readHello(r io.Reader) (clusterID, node string, err error) {
	var head [len(helloMagic) + 1 + clusterIDBytes + 1]byte
	if _, err := io.ReadFull(r, head[:1]); err != nil {
		return "", "", err
	}
	// raft's own transport opens with an RPC type: 0 to 4.
	if head[0] <= 4 {
		return "", "", errHelloLegacy
	}
	if _, err := io.ReadFull(r, head[1:]); err != nil {
		return "", "", err
	}
	if string(head[:len(helloMagic)]) != helloMagic {
		return "", "", errHelloMagic
	}
	if v := head[len(helloMagic)]; v != helloVersion {
		return "", "", fmt.Errorf("cluster ID hello version %d, this node speaks %d: upgrade the older lvsd", v, helloVersion)
	}
	raw := head[len(helloMagic)+1 : len(helloMagic)+1+clusterIDBytes]
	if !bytes.Equal(raw, make([]byte, clusterIDBytes)) {
		clusterID = hex.EncodeToString(raw)
	}
	nb := make([]byte, head[len(head)-1])
	if _, err := io.ReadFull(r, nb); err != nil {
		return "", "", err
	}
	return clusterID, string(nb), nil
}

// identity is this node's cluster ID as its Raft connections show it.
type identity struct {
	node string
	log  *slog.Logger
	// learn, if set, persists an ID taken from a peer: for a data dir
	// from before cluster IDs, whose node was not bootstrapped with this
	// lvsd's flags, the first peer of its own configuration that it dials
	// and that knows the ID tells it.
	learn func(id string) error

	mu      sync.Mutex
	id      string
	limiter logLimiter
}

func newIdentity(node, id string, log *slog.Logger) *identity {
	return &identity{node: node, id: id, log: log, limiter: logLimiter{every: 10 * time.Second}}
}

func (i *identity) get() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.id
}

// errLearned says the dialer took the peer's cluster ID just now; the peer
// refused the connection that told it, so the caller dials again.
var errLearned = errors.New("learned the cluster ID; dial again")

// dial runs the dialer's half of the hello on c, a connection to addr.
func (i *identity) dial(c net.Conn, addr string, deadline time.Time) error {
	_ = c.SetDeadline(deadline)
	i.mu.Lock()
	local, canLearn := i.id, i.learn != nil
	i.mu.Unlock()
	if _, err := c.Write(encodeHello(local, i.node)); err != nil {
		return &helloError{addr, err}
	}
	peer, node, err := readHello(c)
	if err != nil {
		return &helloError{addr, err}
	}
	_ = c.SetDeadline(time.Time{})
	if local != "" && peer == local {
		return nil
	}
	if local == "" && peer != "" && canLearn {
		if err := i.adopt(peer, node, addr); err != nil {
			return err
		}
		return errLearned
	}
	return &PeerClusterError{Addr: addr, Node: node, Peer: peer, Local: local}
}

func (i *identity) adopt(id, node, addr string) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.id != "" {
		return nil
	}
	if err := i.learn(id); err != nil {
		return err
	}
	i.id, i.learn = id, nil
	i.log.Warn("adopted the cluster ID of a peer of this node's configuration: its data dir is from before cluster IDs",
		"cluster_id", id, "peer", node, "peer_addr", addr)
	return nil
}

// accept runs the acceptor's half of the hello on c and reports whether
// raft may have it.
func (i *identity) accept(c net.Conn, deadline time.Time) bool {
	_ = c.SetDeadline(deadline)
	remote := c.RemoteAddr().String()
	peer, node, err := readHello(c)
	if err != nil {
		if errors.Is(err, errHelloLegacy) {
			i.warn(remote, "legacy", slog.LevelWarn, "refused a Raft connection without a cluster ID hello", "remote", remote, "err", err)
		} else {
			// A port scan or a peer that gave up: not worth more.
			i.log.Debug("raft port: no cluster ID hello", "remote", remote, "err", err)
		}
		return false
	}
	local := i.get()
	if _, err := c.Write(encodeHello(local, i.node)); err != nil {
		i.log.Debug("raft port: could not answer a hello", "remote", remote, "err", err)
		return false
	}
	if local != "" && peer == local {
		_ = c.SetDeadline(time.Time{})
		return true
	}
	host, _, _ := net.SplitHostPort(remote)
	refusal := (&PeerClusterError{Addr: remote, Node: node, Peer: peer, Local: local}).Error()
	switch {
	case local == "":
		i.warn(host+"/"+peer, "unknown", slog.LevelWarn, "refused a Raft connection: this node does not know its cluster ID yet",
			"remote", remote, "remote_node", node, "remote_cluster_id", orUnknown(peer), "err", refusal)
	case peer == "":
		i.warn(host+"/", "unjoined", slog.LevelWarn, "refused a Raft connection from a node that has not joined a cluster",
			"remote", remote, "remote_node", node, "cluster_id", local, "err", refusal)
	default:
		i.warn(host+"/"+peer, "mismatch", slog.LevelError, "refused a Raft connection from a node of another cluster",
			"remote", remote, "remote_node", node, "remote_cluster_id", peer, "cluster_id", local, "err", refusal)
	}
	return false
}

// warn logs at most one line per key every few seconds, with the count of
// the lines it left out: a node of another cluster retries many times a
// second.
func (i *identity) warn(key, kind string, level slog.Level, msg string, args ...any) {
	ok, skipped := i.limiter.allow(kind+" "+key, time.Now())
	if !ok {
		return
	}
	if skipped > 0 {
		args = append(args, "suppressed", skipped)
	}
	i.log.Log(context.Background(), level, msg, args...)
}

// helloError is a hello that failed for another reason than the clusters:
// the peer went away, or does not speak it. It is never a closed pooled
// connection (voteTransport).
type helloError struct {
	addr string
	err  error
}

func (e *helloError) Error() string {
	return fmt.Sprintf("raft connection to %s: cluster ID hello: %v", e.addr, e.err)
}

func (e *helloError) Unwrap() error { return e.err }

// dialRaft dials addr and runs the hello on it, dialling again once after
// taking the peer's ID (identity.learn).
func dialRaft(id *identity, addr string, timeout time.Duration, dial func(time.Duration) (net.Conn, error)) (net.Conn, error) {
	if timeout <= 0 {
		timeout = helloTimeout
	}
	for try := 0; ; try++ {
		start := time.Now()
		c, err := dial(timeout)
		if err != nil {
			return nil, err
		}
		err = id.dial(c, addr, start.Add(timeout))
		if err == nil {
			return c, nil
		}
		c.Close()
		if !errors.Is(err, errLearned) || try > 0 {
			return nil, err
		}
	}
}

// logLimiter lets one line per key through every so often and counts the
// others.
type logLimiter struct {
	every time.Duration
	mu    sync.Mutex
	keys  map[string]*limited
}

type limited struct {
	last    time.Time
	skipped int
}

func (l *logLimiter) allow(key string, now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys == nil {
		l.keys = map[string]*limited{}
	}
	e := l.keys[key]
	if e != nil && now.Sub(e.last) < l.every {
		e.skipped++
		return false, 0
	}
	if len(l.keys) > 1024 {
		for k, v := range l.keys {
			if now.Sub(v.last) >= l.every {
				delete(l.keys, k)
			}
		}
	}
	skipped := 0
	if e != nil {
		skipped = e.skipped
	}
	l.keys[key] = &limited{last: now}
	return true, skipped
}
