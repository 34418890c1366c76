package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/ipv4"
)

// The programs of the connection-sync scenarios: an echo server on the real
// servers, and clients that keep many long-lived TCP connections or UDP
// flows busy through a VIP and say, when asked, which of them kept working.
//
// A client reads commands on stdin, one per line, and answers on stdout:
//
//	mark    note the time (a takeover is about to happen): "MARKED"
//	report  one line per connection, then "REPORTED":
//	        CONN i server state echoes-since-mark max-gap-ms gap-now-ms
//	        state is ok, broken (an error; the why follows) or moved
//	        (answered by another server)
//
// and ends at the end of stdin. Each connection sends a short message
// every interval and waits for its echo before the next one.

// echoPort is where the real servers echo, TCP and UDP; persistPort
// echoes TCP too, behind a persistent service.
const (
	echoPort    = 7
	persistPort = 8
)

// echod NAME: echo every line (TCP, ports 7 and 8) or datagram (UDP, port
// 7), prefixed with NAME, so the client sees which real server answered.
func echod(name string) error {
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", echoPort))
	if err != nil {
		return err
	}
	ln8, err := net.Listen("tcp", fmt.Sprintf(":%d", persistPort))
	if err != nil {
		return err
	}
	go serveEcho(ln8, name)
	pc, err := net.ListenPacket("udp4", fmt.Sprintf(":%d", echoPort))
	if err != nil {
		return err
	}
	// Answer from the address the datagram was sent to: a wildcard socket
	// would otherwise take the source of the route back (eth1's, for a
	// NAT reply that must leave through the NAT router with its inside
	// address), and the client would drop the answer.
	p := ipv4.NewPacketConn(pc)
	if err := p.SetControlMessage(ipv4.FlagDst, true); err != nil {
		return err
	}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, cm, from, err := p.ReadFrom(buf)
			if err != nil {
				return
			}
			var reply *ipv4.ControlMessage
			if cm != nil {
				reply = &ipv4.ControlMessage{Src: cm.Dst}
			}
			p.WriteTo([]byte(name+" "+string(buf[:n])), reply, from)
		}
	}()
	return serveEcho(ln, name)
}

func serveEcho(ln net.Listener, name string) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if _, err := io.WriteString(c, name+" "+line); err != nil {
					return
				}
			}
		}()
	}
}

// flow is one client connection or UDP flow as the client tracks it.
type flow struct {
	mu        sync.Mutex
	server    string // the first server that answered
	state     string // ok, broken, moved
	why       string
	last      time.Time // last echo
	maxGap    time.Duration
	sinceMark int
}

func (f *flow) echo(server string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.server == "" {
		f.server = server
	} else if server != f.server && f.state == "ok" {
		f.state, f.why = "moved", "answered by "+server
	}
	if !f.last.IsZero() {
		f.maxGap = max(f.maxGap, now.Sub(f.last))
	}
	f.last = now
	f.sinceMark++
}

func (f *flow) fail(why string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state == "ok" {
		f.state, f.why = "broken", why
	}
}

func (f *flow) line(i int, now time.Time) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	gapNow := time.Duration(0)
	if !f.last.IsZero() {
		gapNow = now.Sub(f.last)
	}
	s := fmt.Sprintf("CONN %d %s %s %d %d %d", i, orNone(f.server), f.state, f.sinceMark, f.maxGap.Milliseconds(), gapNow.Milliseconds())
	if f.why != "" {
		s += " " + oneLine(f.why)
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// flowClient runs the flows and the stdin commands.
type flowClient struct {
	out   *bufio.Writer
	outMu sync.Mutex
	flows []*flow
}

func (c *flowClient) println(s string) {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	c.out.WriteString(s + "\n")
	c.out.Flush()
}

// commands serves stdin until it ends.
func (c *flowClient) commands() {
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch strings.TrimSpace(in.Text()) {
		case "mark":
			for _, f := range c.flows {
				f.mu.Lock()
				f.sinceMark = 0
				f.mu.Unlock()
			}
			c.println("MARKED")
		case "report":
			now := time.Now()
			var lines []string
			for i, f := range c.flows {
				lines = append(lines, f.line(i, now))
			}
			c.println(strings.Join(append(lines, "REPORTED"), "\n"))
		}
	}
}

// conns ADDR COUNT INTERVAL [STAGGER]: COUNT long-lived TCP connections to
// ADDR, the i-th opened i*STAGGER after the first.
func conns(addr string, count int, interval, stagger time.Duration) error {
	c := &flowClient{out: bufio.NewWriter(os.Stdout)}
	for range count {
		c.flows = append(c.flows, &flow{state: "ok"})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i, f := range c.flows {
		go func() {
			time.Sleep(time.Duration(i) * stagger) // spacing the dials, not synchronisation
			d := net.Dialer{Timeout: 10 * time.Second}
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				f.fail("dial: " + err.Error())
				c.println(fmt.Sprintf("BROKEN %d %s", i, oneLine(err.Error())))
				return
			}
			defer conn.Close()
			r := bufio.NewReader(conn)
			announced := false
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for seq := 0; ctx.Err() == nil; seq++ {
				// Long enough to ride out a takeover under emulation, with
				// TCP's retransmission back-off on top.
				conn.SetDeadline(time.Now().Add(120 * time.Second))
				msg := strconv.Itoa(seq)
				if _, err := io.WriteString(conn, msg+"\n"); err != nil {
					f.fail("write: " + err.Error())
					return
				}
				line, err := r.ReadString('\n')
				if err != nil {
					f.fail("read: " + err.Error())
					return
				}
				server, got, _ := strings.Cut(strings.TrimSpace(line), " ")
				if got != msg {
					f.fail(fmt.Sprintf("echo %q for %q", got, msg))
					return
				}
				f.echo(server, time.Now())
				if !announced {
					announced = true
					c.println(fmt.Sprintf("OPEN %d %d %s %d", i, conn.LocalAddr().(*net.TCPAddr).Port, server, time.Now().UnixMilli()))
				}
				select {
				case <-ctx.Done():
				case <-tick.C:
				}
			}
		}()
	}
	c.commands()
	return nil
}

// udpflows ADDR COUNT INTERVAL: COUNT UDP flows (each from its own port)
// to ADDR. A datagram without an echo within a second is lost, not an
// error: the state says which server answered before and after.
func udpflows(addr string, count int, interval time.Duration) error {
	c := &flowClient{out: bufio.NewWriter(os.Stdout)}
	for range count {
		c.flows = append(c.flows, &flow{state: "ok"})
	}
	for i, f := range c.flows {
		go func() {
			conn, err := net.Dial("udp", addr)
			if err != nil {
				f.fail("dial: " + err.Error())
				return
			}
			defer conn.Close()
			buf := make([]byte, 2048)
			announced := false
			for seq := 0; ; seq++ {
				start := time.Now()
				msg := strconv.Itoa(seq)
				if _, err := conn.Write([]byte(msg)); err != nil && !errors.Is(err, net.ErrClosed) {
					// ICMP unreachable during a takeover: keep trying.
					time.Sleep(interval) // pacing, not synchronisation
					continue
				}
				conn.SetReadDeadline(time.Now().Add(time.Second))
				for {
					n, err := conn.Read(buf)
					if err != nil {
						break
					}
					server, got, _ := strings.Cut(string(buf[:n]), " ")
					if got == msg {
						f.echo(server, time.Now())
						if !announced {
							announced = true
							c.println(fmt.Sprintf("OPEN %d %d %s %d", i, conn.LocalAddr().(*net.UDPAddr).Port, server, time.Now().UnixMilli()))
						}
						break
					}
				}
				if rest := interval - time.Since(start); rest > 0 {
					time.Sleep(rest) // pacing the flow, not synchronisation
				}
			}
		}()
	}
	c.commands()
	return nil
}

// flowReport is a client's report as the lab reads it.
type flowReport struct {
	server    string
	state     string
	sinceMark int
	maxGap    time.Duration
	gapNow    time.Duration
	why       string
}

func parseFlowReport(lines []string) []flowReport {
	var out []flowReport
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 7 || f[0] != "CONN" {
			continue
		}
		n, _ := strconv.Atoi(f[4])
		gap, _ := strconv.Atoi(f[5])
		now, _ := strconv.Atoi(f[6])
		out = append(out, flowReport{server: f[2], state: f[3], sinceMark: n,
			maxGap: time.Duration(gap) * time.Millisecond, gapNow: time.Duration(now) * time.Millisecond,
			why: strings.Join(f[7:], " ")})
	}
	return out
}

// flowSession drives one client program from the lab.
type flowSession struct {
	name  string
	cmd   interface{ Wait() error }
	stdin io.WriteCloser
	mu    sync.Mutex
	opens []openEvent
	cond  chan []string // each report
	mark  chan struct{}
	done  chan struct{}
}

type openEvent struct {
	flow   int // the flow's index, as in a report
	port   int
	server string
	at     time.Time
}

func (s *flowSession) read(r io.Reader) {
	defer close(s.done)
	sc := bufio.NewScanner(r)
	var report []string
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "OPEN "):
			f := strings.Fields(l)
			if len(f) == 5 {
				i, _ := strconv.Atoi(f[1])
				port, _ := strconv.Atoi(f[2])
				ms, _ := strconv.ParseInt(f[4], 10, 64)
				s.mu.Lock()
				s.opens = append(s.opens, openEvent{flow: i, port: port, server: f[3], at: time.UnixMilli(ms)})
				s.mu.Unlock()
			}
		case l == "MARKED":
			s.mark <- struct{}{}
		case strings.HasPrefix(l, "CONN "):
			report = append(report, l)
		case l == "REPORTED":
			s.cond <- report
			report = nil
		}
	}
}

func (s *flowSession) opened() []openEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.opens)
}

func (s *flowSession) command(ctx context.Context, c string) error {
	if _, err := io.WriteString(s.stdin, c+"\n"); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	return nil
}

func (s *flowSession) doMark(ctx context.Context) error {
	if err := s.command(ctx, "mark"); err != nil {
		return err
	}
	select {
	case <-s.mark:
		return nil
	case <-s.done:
		return fmt.Errorf("%s ended", s.name)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *flowSession) report(ctx context.Context) ([]flowReport, error) {
	if err := s.command(ctx, "report"); err != nil {
		return nil, err
	}
	select {
	case lines := <-s.cond:
		return parseFlowReport(lines), nil
	case <-s.done:
		return nil, fmt.Errorf("%s ended", s.name)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *flowSession) close() {
	s.stdin.Close()
	<-s.done
	s.cmd.Wait()
}

// startFlows starts a client program (conns or udpflows) in m and waits
// until every flow has had its first echo. extra are more arguments
// (conns' STAGGER).
func startFlows(ctx context.Context, m *machine, program, addr string, count int, extra ...string) (*flowSession, error) {
	cmd := execCommand(ctx, "/init", append([]string{program, addr, strconv.Itoa(count), "20ms"}, extra...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := m.start(cmd); err != nil {
		return nil, err
	}
	s := &flowSession{name: program + " " + addr, cmd: cmd, stdin: stdin, cond: make(chan []string, 4), mark: make(chan struct{}, 4), done: make(chan struct{})}
	go s.read(stdout)
	if err := eventually(ctx, 60*time.Second, func() error {
		if n := len(s.opened()); n < count {
			return fmt.Errorf("%s: %d of %d flows answered", s.name, n, count)
		}
		return nil
	}); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// once ADDR N: N short TCP connections one after the other, each one echo;
// prints "ONCE server" or "ONCEERR why" per connection.
func once(addr string, n int) error {
	for range n {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			fmt.Printf("ONCEERR %s\n", oneLine(err.Error()))
			continue
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, "0\n")
		line, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if err != nil {
			fmt.Printf("ONCEERR %s\n", oneLine(err.Error()))
			continue
		}
		server, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		fmt.Printf("ONCE %s\n", server)
	}
	return nil
}

// onceFrom runs once in m and returns the servers that answered, and the
// errors.
func onceFrom(ctx context.Context, m *machine, addr string, n int) (servers, errs []string, err error) {
	cmd := execCommand(ctx, "/init", "once", addr, strconv.Itoa(n))
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := m.start(cmd); err != nil {
		return nil, nil, err
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "ONCE "); ok {
			servers = append(servers, s)
		} else if e, ok := strings.CutPrefix(sc.Text(), "ONCEERR "); ok {
			errs = append(errs, e)
		}
	}
	return servers, errs, cmd.Wait()
}
