package raftfsm

import "sync"

// leadership fans raft's single NotifyCh out to any number of subscribers.
// Raft blocks while sending on NotifyCh, so the loop only records the value
// and hands it on without ever waiting for a subscriber.
type leadership struct {
	mu     sync.Mutex
	leader bool
	subs   map[uint64]chan bool
	next   uint64
	closed bool

	done chan struct{}
	wg   sync.WaitGroup
}

func newLeadership(notify <-chan bool) *leadership {
	l := &leadership{subs: map[uint64]chan bool{}, done: make(chan struct{})}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			select {
			case v := <-notify:
				l.set(v)
			case <-l.done:
				return
			}
		}
	}()
	return l
}

func (l *leadership) set(v bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if v == l.leader {
		return
	}
	l.leader = v
	for _, ch := range l.subs {
		offer(ch, v)
	}
}

// offer replaces whatever value is pending in a one-slot channel with v.
// Only set and subscribe send, both with mu held, so the slot is free after
// the drain.
func offer(ch chan bool, v bool) {
	select {
	case <-ch:
	default:
	}
	ch <- v
}

func (l *leadership) subscribe() (<-chan bool, func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch := make(chan bool, 1)
	if l.closed {
		ch <- false
		close(ch)
		return ch, func() {}
	}
	id := l.next
	l.next++
	l.subs[id] = ch
	ch <- l.leader
	return ch, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if c, ok := l.subs[id]; ok {
			delete(l.subs, id)
			close(c)
		}
	}
}

// stop ends the loop and tells every subscriber that leadership is over.
func (l *leadership) stop() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	close(l.done)
	l.wg.Wait()

	l.mu.Lock()
	defer l.mu.Unlock()
	l.leader = false
	for id, ch := range l.subs {
		offer(ch, false)
		close(ch)
		delete(l.subs, id)
	}
}
