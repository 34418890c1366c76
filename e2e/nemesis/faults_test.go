package nemesis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/shoal-lb/shoal/e2e/netlab"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// nodeState is what the nemesis has done to a router's daemon.
type nodeState struct {
	killed, stopped, removed, disk bool
}

func (s *nodeState) up() bool { return !s.killed && !s.stopped && !s.removed }

// down is a stretch during which a router's daemon was killed or paused
// (or removed and killed): its kernel may keep the VIP it held.
type down struct {
	node       string
	start, end time.Time // end zero: still down
}

// fault is one running fault: what it did and how to undo it.
type fault struct {
	rec  FaultRecord
	heal func(ctx context.Context) error
}

// nemesis injects random, overlapping faults into a running lab and
// keeps their record.
type nemesis struct {
	lab   *netlab.Lab
	sh    *netlab.Shoal
	h     *History
	fpDir string // SHOAL_FAILPOINT_DIR
	nft   bool
	// maxActive is how many faults may overlap.
	maxActive int
	logf      func(format string, args ...any)

	mu        sync.Mutex
	rng       *rand.Rand
	state     map[string]*nodeState
	partition bool // drops or an unplugged port are in place
	member    bool // a member is out of the group
	active    int
	next      int
	downs     []down
	conns     map[string]*grpc.ClientConn
	wg        sync.WaitGroup
}

func newNemesis(lab *netlab.Lab, sh *netlab.Shoal, h *History, fpDir string, seed uint64, logf func(string, ...any)) *nemesis {
	n := &nemesis{lab: lab, sh: sh, h: h, fpDir: fpDir, nft: netlab.NftInstalled(), maxActive: 2, logf: logf,
		rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), state: map[string]*nodeState{}, conns: map[string]*grpc.ClientConn{}}
	for _, r := range lab.Routers {
		n.state[r.Name] = &nodeState{}
	}
	return n
}

func (n *nemesis) intn(k int) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rng.IntN(k)
}

func (n *nemesis) between(a, b time.Duration) time.Duration {
	return a + time.Duration(n.intn(int(b-a)+1))
}

// run injects faults until ctx ends, then waits for every fault to be
// healed.
func (n *nemesis) run(ctx context.Context) {
	defer n.wg.Wait()
	kinds := []struct {
		name   string
		weight int
		start  func(ctx context.Context) (*fault, error)
	}{
		{"kill", 3, n.kill},
		{"stop-leader", 2, func(ctx context.Context) (*fault, error) { return n.stop(ctx, true) }},
		{"stop-follower", 1, func(ctx context.Context) (*fault, error) { return n.stop(ctx, false) }},
		{"partition", 2, func(ctx context.Context) (*fault, error) { return n.drops(ctx, "split") }},
		{"isolate-leader", 2, func(ctx context.Context) (*fault, error) { return n.drops(ctx, "isolate-leader") }},
		{"bridge", 1, func(ctx context.Context) (*fault, error) { return n.drops(ctx, "bridge") }},
		{"one-way", 2, func(ctx context.Context) (*fault, error) { return n.drops(ctx, "one-way") }},
		{"unplug", 1, n.unplug},
		{"disk-slow", 1, func(ctx context.Context) (*fault, error) { return n.disk(ctx, false) }},
		{"disk-stall", 1, func(ctx context.Context) (*fault, error) { return n.disk(ctx, true) }},
		{"member", 1, n.memberOut},
	}
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(n.between(300*time.Millisecond, 2500*time.Millisecond)):
		}
		if ctx.Err() != nil {
			return
		}
		n.mu.Lock()
		busy := n.active >= n.maxActive
		n.mu.Unlock()
		if busy {
			continue
		}
		pick := n.intn(total)
		var kind string
		var start func(context.Context) (*fault, error)
		for _, k := range kinds {
			if pick < k.weight {
				kind, start = k.name, k.start
				break
			}
			pick -= k.weight
		}
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		begin := time.Now()
		f, err := start(sctx)
		cancel()
		if f == nil && err == nil {
			continue // not applicable now (say, no leader to pause)
		}
		n.mu.Lock()
		n.next++
		id := n.next
		n.mu.Unlock()
		if err != nil {
			rec := FaultRecord{ID: id, Kind: kind, Start: n.h.Since(begin), End: n.h.Now(), Err: err.Error()}
			if f != nil {
				rec.Nodes, rec.What = f.rec.Nodes, f.rec.What
			}
			n.record(rec)
			n.logf("fault %d %s failed to start: %v", id, kind, err)
			if f != nil && f.heal != nil {
				hctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_ = f.heal(hctx)
				cancel()
			}
			continue
		}
		f.rec.ID, f.rec.Kind, f.rec.Start = id, kind, n.h.Since(begin)
		hold := n.between(time.Second, 6*time.Second)
		n.logf("+%v fault %d %s %s: %s (for %v)", f.rec.Start.Round(time.Millisecond), id, kind, strings.Join(f.rec.Nodes, ","), f.rec.What, hold)
		n.mu.Lock()
		n.active++
		n.mu.Unlock()
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			select {
			case <-ctx.Done():
			case <-time.After(hold):
			}
			hctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			err := f.heal(hctx)
			cancel()
			f.rec.End = n.h.Now()
			if err != nil {
				f.rec.Err = "heal: " + err.Error()
				n.logf("fault %d %s heal: %v", f.rec.ID, f.rec.Kind, err)
			}
			n.record(f.rec)
			n.mu.Lock()
			n.active--
			n.mu.Unlock()
		}()
	}
}

func (n *nemesis) record(r FaultRecord) {
	n.h.mu.Lock()
	n.h.Faults = append(n.h.Faults, r)
	n.h.mu.Unlock()
}

// injected is the number of faults that were put in place (a fault whose
// start failed, say a removal without a quorum, is recorded but not
// counted).
func (n *nemesis) injected() int {
	n.h.mu.Lock()
	defer n.h.mu.Unlock()
	k := 0
	for _, f := range n.h.Faults {
		if f.Err == "" || strings.HasPrefix(f.Err, "heal: ") {
			k++
		}
	}
	return k
}

// upNodes are the routers whose daemons run unhindered.
func (n *nemesis) upNodes() []*netlab.Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []*netlab.Node
	for _, r := range n.lab.Routers {
		if n.state[r.Name].up() {
			out = append(out, r)
		}
	}
	return out
}

func (n *nemesis) conn(r *netlab.Node) (*grpc.ClientConn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c := n.conns[r.Name]; c != nil {
		return c, nil
	}
	c, err := n.sh.Conn(r)
	if err != nil {
		return nil, err
	}
	n.conns[r.Name] = c
	return c, nil
}

func (n *nemesis) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.conns {
		_ = c.Close()
	}
	n.conns = map[string]*grpc.ClientConn{}
}

// leader asks the running daemons who leads; nil when none says.
func (n *nemesis) leader(ctx context.Context) *netlab.Node {
	for _, r := range n.upNodes() {
		c, err := n.conn(r)
		if err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		resp, err := shoalv1.NewNodeServiceClient(c).GetNodeStatus(cctx, &shoalv1.GetNodeStatusRequest{})
		cancel()
		if err != nil {
			continue
		}
		if l := n.lab.Router(resp.GetStatus().GetLeaderId()); l != nil {
			return l
		}
	}
	return nil
}

// pickUp picks a running router, the leader with probability leaderP.
func (n *nemesis) pickUp(ctx context.Context, leaderP int) *netlab.Node {
	up := n.upNodes()
	if len(up) == 0 {
		return nil
	}
	if n.intn(100) < leaderP {
		if l := n.leader(ctx); l != nil && slices.Contains(up, l) {
			return l
		}
	}
	return up[n.intn(len(up))]
}

func (n *nemesis) wentDown(r *netlab.Node) {
	n.mu.Lock()
	n.downs = append(n.downs, down{node: r.Name, start: time.Now()})
	n.mu.Unlock()
}

func (n *nemesis) cameBack(r *netlab.Node) {
	n.mu.Lock()
	for i := len(n.downs) - 1; i >= 0; i-- {
		if n.downs[i].node == r.Name && n.downs[i].end.IsZero() {
			n.downs[i].end = time.Now()
			break
		}
	}
	n.mu.Unlock()
}

// kill SIGKILLs a daemon (the leader half of the time) and restarts it
// when healed.
func (n *nemesis) kill(ctx context.Context) (*fault, error) {
	r := n.pickUp(ctx, 50)
	if r == nil {
		return nil, nil
	}
	n.mu.Lock()
	n.state[r.Name].killed = true
	n.mu.Unlock()
	n.wentDown(r)
	n.sh.Kill(r)
	n.h.AddEvent(r.Name, "kill")
	return &fault{rec: FaultRecord{Nodes: []string{r.Name}, What: "SIGKILL of lvsd, restarted at the end"},
		heal: func(context.Context) error {
			err := n.sh.Start(r)
			n.h.AddEvent(r.Name, "start")
			n.cameBack(r)
			n.mu.Lock()
			n.state[r.Name].killed = err != nil
			n.mu.Unlock()
			return err
		}}, nil
}

// stop pauses a daemon with SIGSTOP (the leader's, or a follower's) and
// continues it when healed.
func (n *nemesis) stop(ctx context.Context, leader bool) (*fault, error) {
	var r *netlab.Node
	if leader {
		r = n.leader(ctx)
		if r == nil || !slices.Contains(n.upNodes(), r) {
			return nil, nil
		}
	} else {
		l := n.leader(ctx)
		var fs []*netlab.Node
		for _, u := range n.upNodes() {
			if u != l {
				fs = append(fs, u)
			}
		}
		if len(fs) == 0 {
			return nil, nil
		}
		r = fs[n.intn(len(fs))]
	}
	p := n.sh.Process(r)
	if p == nil {
		return nil, nil
	}
	n.mu.Lock()
	n.state[r.Name].stopped = true
	n.mu.Unlock()
	n.wentDown(r)
	if err := syscall.Kill(-p.Pid(), syscall.SIGSTOP); err != nil {
		return nil, fmt.Errorf("start: SIGSTOP %s: %w", r.Name, err)
	}
	role := "a follower"
	if leader {
		role = "the leader"
	}
	n.h.AddEvent(r.Name, "stop")
	return &fault{rec: FaultRecord{Nodes: []string{r.Name}, What: "SIGSTOP of " + role + ", SIGCONT at the end"},
		heal: func(context.Context) error {
			err := syscall.Kill(-p.Pid(), syscall.SIGCONT)
			n.h.AddEvent(r.Name, "cont")
			n.cameBack(r)
			n.mu.Lock()
			n.state[r.Name].stopped = false
			n.mu.Unlock()
			return err
		}}, nil
}

// drops cuts routers apart with nftables in their namespaces (the client
// keeps reaching every router): split, a random minority from the rest;
// isolate-leader; bridge, two groups that cannot see each other and one
// router that sees both; one-way, one router (the leader half of the time)
// that loses everything coming from some others, or everything it sends
// them.
func (n *nemesis) drops(ctx context.Context, how string) (*fault, error) {
	if !n.nft {
		return nil, nil
	}
	n.mu.Lock()
	if n.partition {
		n.mu.Unlock()
		return nil, nil
	}
	n.partition = true
	n.mu.Unlock()
	release := func() {
		n.mu.Lock()
		n.partition = false
		n.mu.Unlock()
	}
	routers := slices.Clone(n.lab.Routers)
	n.mu.Lock()
	n.rng.Shuffle(len(routers), func(i, j int) { routers[i], routers[j] = routers[j], routers[i] })
	n.mu.Unlock()
	in := map[*netlab.Node][]netip.Addr{}
	out := map[*netlab.Node][]netip.Addr{}
	cut := func(a, b []*netlab.Node) { // a and b lose each other both ways
		for _, x := range a {
			for _, y := range b {
				in[x], out[x] = append(in[x], y.Addr), append(out[x], y.Addr)
				in[y], out[y] = append(in[y], x.Addr), append(out[y], x.Addr)
			}
		}
	}
	var what string
	var nodes []*netlab.Node
	switch how {
	case "split":
		k := 1 + n.intn((len(routers)-1)/2)
		cut(routers[:k], routers[k:])
		nodes = routers[:k]
		what = fmt.Sprintf("%s cut off from %s", netlab.Names(routers[:k]), netlab.Names(routers[k:]))
	case "isolate-leader":
		l := n.leader(ctx)
		if l == nil {
			release()
			return nil, nil
		}
		var rest []*netlab.Node
		for _, r := range routers {
			if r != l {
				rest = append(rest, r)
			}
		}
		cut([]*netlab.Node{l}, rest)
		nodes = []*netlab.Node{l}
		what = "the leader " + l.Name + " cut off from the others"
	case "bridge":
		b, rest := routers[0], routers[1:]
		half := len(rest) / 2
		cut(rest[:half], rest[half:])
		nodes = []*netlab.Node{b}
		what = fmt.Sprintf("%s and %s cannot see each other; %s sees both", netlab.Names(rest[:half]), netlab.Names(rest[half:]), b.Name)
	case "one-way":
		x := routers[0]
		if n.intn(2) == 0 {
			if l := n.leader(ctx); l != nil {
				x = l
			}
		}
		var others []*netlab.Node
		for _, r := range routers {
			if r != x && (len(others) == 0 || n.intn(2) == 0) {
				others = append(others, r)
			}
		}
		var as []netip.Addr
		for _, o := range others {
			as = append(as, o.Addr)
		}
		nodes = []*netlab.Node{x}
		if n.intn(2) == 0 {
			in[x] = as
			what = fmt.Sprintf("%s drops what %s send it (it is heard, it hears nothing)", x.Name, netlab.Names(others))
		} else {
			out[x] = as
			what = fmt.Sprintf("%s drops what it sends %s (it hears them, they do not hear it)", x.Name, netlab.Names(others))
		}
	}
	heal := func(context.Context) error {
		defer release()
		var errs []string
		for _, r := range n.lab.Routers {
			if err := r.ClearDrops(); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%s", strings.Join(errs, "; "))
		}
		return nil
	}
	f := &fault{rec: FaultRecord{What: what}, heal: heal}
	for _, r := range nodes {
		f.rec.Nodes = append(f.rec.Nodes, r.Name)
	}
	for _, r := range n.lab.Routers {
		if len(in[r]) == 0 && len(out[r]) == 0 {
			continue
		}
		if err := r.Drop(in[r], out[r]); err != nil {
			return f, fmt.Errorf("start: %w", err)
		}
	}
	return f, nil
}

// unplug takes a router's switch port down: it loses everyone, the
// client included.
func (n *nemesis) unplug(ctx context.Context) (*fault, error) {
	n.mu.Lock()
	if n.partition {
		n.mu.Unlock()
		return nil, nil
	}
	n.partition = true
	n.mu.Unlock()
	r := n.lab.Routers[n.intn(len(n.lab.Routers))]
	if n.intn(2) == 0 {
		if l := n.leader(ctx); l != nil {
			r = l
		}
	}
	f := &fault{rec: FaultRecord{Nodes: []string{r.Name}, What: "switch port down (cut off from routers and client)"},
		heal: func(context.Context) error {
			defer func() {
				n.mu.Lock()
				n.partition = false
				n.mu.Unlock()
			}()
			return r.Plug()
		}}
	if err := r.Unplug(); err != nil {
		return f, fmt.Errorf("start: %w", err)
	}
	return f, nil
}

// disk delays raft's log writes through the failpoint (lvsd built with
// -tags nemesis): slow, 20-400 ms on one or more routers, or a stall of
// one (the leader half of the time) until healed.
func (n *nemesis) disk(ctx context.Context, stall bool) (*fault, error) {
	var targets []*netlab.Node
	var delay time.Duration
	if stall {
		r := n.pickUp(ctx, 50)
		if r == nil {
			return nil, nil
		}
		targets, delay = []*netlab.Node{r}, 10*time.Minute
	} else {
		up := n.upNodes()
		if len(up) == 0 {
			return nil, nil
		}
		n.mu.Lock()
		n.rng.Shuffle(len(up), func(i, j int) { up[i], up[j] = up[j], up[i] })
		n.mu.Unlock()
		targets = up[:1+n.intn(len(up))]
		delay = n.between(20*time.Millisecond, 400*time.Millisecond)
	}
	n.mu.Lock()
	var ts []*netlab.Node
	for _, r := range targets {
		if !n.state[r.Name].disk {
			n.state[r.Name].disk = true
			ts = append(ts, r)
		}
	}
	n.mu.Unlock()
	if len(ts) == 0 {
		return nil, nil
	}
	what := fmt.Sprintf("raft log writes delayed %v", delay)
	if stall {
		what = "raft log writes stalled until healed"
	}
	f := &fault{rec: FaultRecord{What: what}, heal: func(context.Context) error {
		var err error
		for _, r := range ts {
			if e := n.setDiskDelay(r, 0); e != nil {
				err = e
			}
			n.mu.Lock()
			n.state[r.Name].disk = false
			n.mu.Unlock()
		}
		return err
	}}
	for _, r := range ts {
		f.rec.Nodes = append(f.rec.Nodes, r.Name)
		if err := n.setDiskDelay(r, delay); err != nil {
			return f, fmt.Errorf("start: %w", err)
		}
	}
	return f, nil
}

// setDiskDelay writes the failpoint's file for r (atomically: the daemon
// reads it at every write).
func (n *nemesis) setDiskDelay(r *netlab.Node, d time.Duration) error {
	dir := filepath.Join(n.fpDir, r.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".disk-delay.tmp")
	if err := os.WriteFile(tmp, []byte(d.String()+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "disk-delay"))
}

// memberOut removes a router from the group (lvsctl cluster remove through
// another member), kills its daemon and wipes its data directory; healing
// joins it again with a token from lvsctl cluster token.
func (n *nemesis) memberOut(ctx context.Context) (*fault, error) {
	n.mu.Lock()
	if n.member || n.active > 0 {
		n.mu.Unlock()
		return nil, nil
	}
	for _, s := range n.state {
		if !s.up() {
			n.mu.Unlock()
			return nil, nil
		}
	}
	n.member = true
	n.mu.Unlock()
	r := n.pickUp(ctx, 30)
	f := &fault{rec: FaultRecord{Nodes: []string{r.Name}, What: "removed from the group, data wiped, joined again at the end"}}
	var via *netlab.Node
	var err error
	for _, o := range n.lab.Routers {
		if o == r {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = n.sh.Ctl(cctx, o, "--request-timeout", "4s", "cluster", "remove", r.Name)
		cancel()
		if err == nil {
			via = o
			break
		}
	}
	if via == nil {
		// The removal may still commit; the final heal checks membership.
		n.mu.Lock()
		n.member = false
		n.mu.Unlock()
		return f, fmt.Errorf("start: lvsctl cluster remove %s: %v", r.Name, err)
	}
	n.h.AddEvent(r.Name, "removed")
	n.mu.Lock()
	n.state[r.Name].removed = true
	n.mu.Unlock()
	n.wentDown(r)
	n.sh.Kill(r)
	n.h.AddEvent(r.Name, "kill")
	if err := os.RemoveAll(n.sh.DataDir(r)); err != nil {
		return f, fmt.Errorf("start: wipe %s: %w", n.sh.DataDir(r), err)
	}
	f.heal = func(ctx context.Context) error {
		defer func() {
			n.mu.Lock()
			n.member = false
			n.mu.Unlock()
		}()
		return n.rejoin(ctx, r)
	}
	return f, nil
}

// rejoin starts r's daemon with an empty data directory and a fresh join
// token, through a member that hands one out.
func (n *nemesis) rejoin(ctx context.Context, r *netlab.Node) error {
	var last error
	for ctx.Err() == nil {
		for _, via := range n.lab.Routers {
			if via == r || !n.isUp(via) {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			tok, err := n.sh.JoinToken(cctx, via)
			cancel()
			if err != nil {
				last = err
				continue
			}
			if err := os.RemoveAll(n.sh.DataDir(r)); err != nil {
				return err
			}
			if err := n.sh.Join(r, via, tok); err != nil {
				return err
			}
			n.h.AddEvent(r.Name, "join")
			n.cameBack(r)
			n.mu.Lock()
			n.state[r.Name].removed = false
			n.state[r.Name].killed = false
			n.mu.Unlock()
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("rejoin %s: no join token: %v", r.Name, last)
}

// members is the Raft group as a router that knows a leader reports it, or
// nil when none answers within a while.
func (n *nemesis) members(ctx context.Context) map[string]bool {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		for _, via := range n.lab.Routers {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			out, err := n.sh.Ctl(cctx, via, "-o", "json", "--request-timeout", "2s", "cluster", "status")
			cancel()
			var st shoalv1.GetClusterStatusResponse
			if err != nil || protojson.Unmarshal([]byte(out), &st) != nil || st.GetLeaderId() == "" {
				continue
			}
			m := map[string]bool{}
			for _, mb := range st.GetMembers() {
				m[mb.GetId()] = true
			}
			return m
		}
		time.Sleep(500 * time.Millisecond)
	}
	return nil
}

func (n *nemesis) isUp(r *netlab.Node) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state[r.Name].up()
}

// healAll undoes whatever may be left: every paused daemon continued,
// every drop and unplugged port gone, no disk delay, every killed daemon
// restarted, and every router that is not a member of the group (a removal
// that committed after its call failed, say) joined again.
func (n *nemesis) healAll(ctx context.Context) error {
	var errs []string
	for _, r := range n.lab.Routers {
		n.mu.Lock()
		st := *n.state[r.Name]
		n.mu.Unlock()
		if st.stopped {
			if p := n.sh.Process(r); p != nil {
				_ = syscall.Kill(-p.Pid(), syscall.SIGCONT)
			}
		}
		if n.nft {
			if err := r.ClearDrops(); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if err := r.Plug(); err != nil {
			errs = append(errs, err.Error())
		}
		if err := n.setDiskDelay(r, 0); err != nil {
			errs = append(errs, err.Error())
		}
		if st.killed && !st.removed {
			if err := n.sh.Start(r); err != nil {
				errs = append(errs, err.Error())
			}
			n.h.AddEvent(r.Name, "start")
			n.cameBack(r)
		}
		n.mu.Lock()
		*n.state[r.Name] = nodeState{removed: st.removed}
		n.mu.Unlock()
	}
	// A removal whose call failed may have committed all the same (the
	// leader lost during it): such a router still runs with its old data,
	// outside the group, and must be wiped and joined like any other.
	members := n.members(ctx)
	for _, r := range n.lab.Routers {
		n.mu.Lock()
		removed := n.state[r.Name].removed
		n.mu.Unlock()
		if !removed && members != nil && !members[r.Name] {
			n.h.AddEvent(r.Name, "found removed")
			n.sh.Kill(r)
			n.h.AddEvent(r.Name, "kill")
			removed = true
		}
		if removed {
			if err := n.rejoin(ctx, r); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("heal: %s", strings.Join(errs, "; "))
	}
	return nil
}

// staleGrace is how long after its daemon runs again a router may still
// hold a VIP it held when its daemon was killed or paused: a restarted
// lvsd, or a continued one whose lease has lapsed, removes it first thing.
const staleGrace = 2 * time.Second

// staleHolder says whether a VIP that r has held since acquired and still
// holds at t may be the address its daemon could not drop: the daemon went
// down (killed, paused, removed) after acquiring it, and is still down at t
// or came back less than staleGrace before.
func (n *nemesis) staleHolder(r string, acquired, t time.Time) bool {
	_, ok := n.staleFor(r, acquired, t)
	return ok
}

// staleFor is staleHolder that also says for how long, at t, r has held
// the VIP since its daemon went down.
func (n *nemesis) staleFor(r string, acquired, t time.Time) (time.Duration, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, d := range n.downs {
		if d.node == r && !d.start.Before(acquired) && !d.start.After(t) && (d.end.IsZero() || t.Sub(d.end) <= staleGrace) {
			return t.Sub(d.start), true
		}
	}
	return 0, false
}
