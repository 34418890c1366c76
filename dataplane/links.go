package dataplane

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// LinkMonitor watches the links named in the config's monitor_links. A node
// with a monitored link down must not hold the VIPs (the Dataplane refuses
// them) and, leading, should hand leadership away (lvsd subscribes).
type LinkMonitor struct {
	log *slog.Logger
	ns  netns.NsHandle

	mu        sync.Mutex
	up        map[string]bool // every link seen, by name
	monitored []string
	started   bool // the first dump is in; before it nothing is known to be down
	subs      map[chan bool]struct{}
	lastAll   bool
}

// LinkMonitorOptions configures a LinkMonitor.
type LinkMonitorOptions struct {
	Logger *slog.Logger
	// NetNS is the namespace whose links are watched; zero value = current.
	NetNS netns.NsHandle
}

// NewLinkMonitor returns a monitor that watches nothing until SetLinks.
func NewLinkMonitor(o LinkMonitorOptions) *LinkMonitor {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.NetNS == 0 {
		o.NetNS = netns.None()
	}
	return &LinkMonitor{log: o.Logger.With("component", "links"), ns: o.NetNS, up: map[string]bool{},
		subs: map[chan bool]struct{}{}, lastAll: true}
}

// SetLinks sets the names of the monitored links.
func (m *LinkMonitor) SetLinks(names []string) {
	names = slices.Clone(names)
	sort.Strings(names)
	m.mu.Lock()
	defer m.mu.Unlock()
	if slices.Equal(names, m.monitored) {
		return
	}
	for _, n := range m.monitored {
		if !slices.Contains(names, n) {
			linkUpGauge.DeleteLabelValues(n)
		}
	}
	m.monitored = names
	m.publishLocked()
}

// Known says whether the first list of links is in: before it, nothing is
// reported down.
func (m *LinkMonitor) Known() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.started
}

// Down lists the monitored links that are down or absent, sorted.
func (m *LinkMonitor) Down() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.downLocked()
}

// AllUp says whether every monitored link is up (true when none is).
func (m *LinkMonitor) AllUp() bool { return len(m.Down()) == 0 }

func (m *LinkMonitor) downLocked() []string {
	if !m.started {
		return nil
	}
	var down []string
	for _, n := range m.monitored {
		if !m.up[n] {
			down = append(down, n)
		}
	}
	return down
}

// Subscribe returns a channel carrying AllUp after every change of it, the
// current value first; a slow reader sees the latest value, not every one.
// cancel stops the subscription.
func (m *LinkMonitor) Subscribe() (<-chan bool, func()) {
	ch := make(chan bool, 1)
	m.mu.Lock()
	m.subs[ch] = struct{}{}
	ch <- len(m.downLocked()) == 0
	m.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			m.mu.Lock()
			delete(m.subs, ch)
			m.mu.Unlock()
		})
	}
}

func (m *LinkMonitor) publishLocked() {
	down := m.downLocked()
	for _, n := range m.monitored {
		v := 0.0
		if m.up[n] {
			v = 1
		}
		linkUpGauge.WithLabelValues(n).Set(v)
	}
	all := len(down) == 0
	if all == m.lastAll {
		return
	}
	m.lastAll = all
	if all {
		m.log.Info("monitored links up", "links", m.monitored)
	} else {
		m.log.Warn("monitored link down", "down", down)
	}
	for ch := range m.subs {
		select {
		case <-ch: // drop the stale value: the latest one matters
		default:
		}
		ch <- all
	}
}

// linkUp is the kernel's view: administratively up and with carrier
// (operstate up, or unknown for devices such as dummy and loopback that do
// not report one).
func linkUp(a *netlink.LinkAttrs) bool {
	if a.Flags&net.FlagUp == 0 {
		return false
	}
	switch a.OperState {
	case netlink.OperUp:
		return true
	case netlink.OperUnknown:
		return a.RawFlags&unix.IFF_LOWER_UP != 0 || a.RawFlags&unix.IFF_RUNNING != 0
	}
	return false
}

// Run follows link changes until ctx ends.
func (m *LinkMonitor) Run(ctx context.Context) error {
	ch := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	errc := make(chan error, 1)
	ns := m.ns
	err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
		Namespace:    &ns,
		ListExisting: true,
		ErrorCallback: func(err error) {
			select {
			case errc <- err:
			default:
			}
		},
	})
	if err != nil {
		return fmt.Errorf("subscribe to link changes: %w", err)
	}
	// netlink closes ch when its receive goroutine ends, after done closes.
	defer func() {
		close(done)
		for range ch {
		}
	}()
	// The dump of existing links ends without a marker; treat the state as
	// known once the current list has been read directly.
	h, err := netlink.NewHandleAt(m.ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open rtnetlink: %w", err)
	}
	links, err := h.LinkList()
	h.Close()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	m.mu.Lock()
	for _, l := range links {
		m.up[l.Attrs().Name] = linkUp(l.Attrs())
	}
	m.started = true
	m.publishLocked()
	m.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return fmt.Errorf("link changes: %w", err)
		case u, ok := <-ch:
			if !ok {
				return fmt.Errorf("link changes: subscription ended")
			}
			m.mu.Lock()
			name := u.Attrs().Name
			if u.Header.Type == unix.RTM_DELLINK {
				delete(m.up, name)
			} else {
				m.up[name] = linkUp(u.Attrs())
			}
			m.publishLocked()
			m.mu.Unlock()
		}
	}
}
