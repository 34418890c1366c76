package kernelfake

import (
	"context"
	"slices"
	"sync"
)

// Links is a link monitor whose links go up and down when a test says so.
// Every link is up until SetUp(name, false).
type Links struct {
	mu        sync.Mutex
	down      map[string]bool
	monitored []string
	subs      map[chan bool]struct{}
	last      bool
}

// NewLinks returns a monitor with every link up.
func NewLinks() *Links {
	return &Links{down: map[string]bool{}, subs: map[chan bool]struct{}{}, last: true}
}

// SetUp brings a link up or down.
func (l *Links) SetUp(name string, up bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down[name] = !up
	l.publishLocked()
}

func (l *Links) SetLinks(names []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.monitored = slices.Clone(names)
	l.publishLocked()
}

func (l *Links) Down() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.downLocked()
}

func (l *Links) downLocked() []string {
	var out []string
	for _, n := range l.monitored {
		if l.down[n] {
			out = append(out, n)
		}
	}
	return out
}

func (l *Links) Subscribe() (<-chan bool, func()) {
	ch := make(chan bool, 1)
	l.mu.Lock()
	l.subs[ch] = struct{}{}
	ch <- len(l.downLocked()) == 0
	l.mu.Unlock()
	return ch, func() {
		l.mu.Lock()
		delete(l.subs, ch)
		l.mu.Unlock()
	}
}

func (l *Links) publishLocked() {
	all := len(l.downLocked()) == 0
	if all == l.last {
		return
	}
	l.last = all
	for ch := range l.subs {
		select {
		case <-ch:
		default:
		}
		ch <- all
	}
}

// Run waits for ctx: the fake has nothing to watch.
func (l *Links) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
