package health

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/durationpb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

var loadFor = flag.Duration("health.load", 0,
	"run TestLoad for this long: 10,000 TCP checks at a 1s interval against loopback listeners, printing CPU and latency figures")

const loadChildEnv = "SHOAL_HEALTH_LOAD_LISTENERS"

// TestLoad measures what the monitor costs a director with 10,000 real
// servers checked every second:
//
//	go test ./dataplane/health/ -run TestLoad -health.load=10s -v
//
// The listeners run in a child process so that the CPU figure is the
// checker's alone. 100 listeners on 127.0.0.1 each stand for a real server
// in 100 services: 10,000 distinct (service, address:port) servers.
func TestLoad(t *testing.T) {
	if os.Getenv(loadChildEnv) != "" {
		serveLoadListeners(t)
		return
	}
	if *loadFor == 0 {
		t.Skip("load test: run with -health.load=10s")
	}
	const listeners, services = 100, 100
	raiseFileLimit(t)

	child := exec.Command(os.Args[0], "-test.run=^TestLoad$", "-test.count=1")
	child.Env = append(os.Environ(), fmt.Sprintf("%s=%d", loadChildEnv, listeners))
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); child.Wait() }()
	var ports []netip.AddrPort
	sc := bufio.NewScanner(stdout)
	for len(ports) < listeners && sc.Scan() {
		if ap, err := netip.ParseAddrPort(strings.TrimPrefix(sc.Text(), "listen ")); err == nil {
			ports = append(ports, ap)
		}
	}
	if len(ports) < listeners {
		t.Fatalf("child gave %d listeners: %v", len(ports), sc.Err())
	}
	go io.Copy(io.Discard, stdout)

	floor := dialFloor(t, ports, services*listeners, 3*time.Second)

	var (
		mu    sync.Mutex
		lat   []time.Duration
		fails int
		first string
	)
	m := New(Options{
		NodeID:     "load",
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registerer: prometheus.NewRegistry(),
	})
	m.observed = func(d time.Duration, err error) {
		mu.Lock()
		lat = append(lat, d)
		if err != nil {
			fails++
			if first == "" {
				first = err.Error()
			}
		}
		mu.Unlock()
	}
	hc := &shoalv1.HealthCheck{Kind: "tcp", Interval: durationpb.New(time.Second), Timeout: durationpb.New(time.Second), Rise: 1, Fall: 3}
	cfg := &shoalv1.Config{}
	for i := range services {
		cfg.Services = append(cfg.Services, service(fmt.Sprintf("svc%03d", i), hc, ports...))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	m.SetConfig(cfg)

	// One interval of warm-up: the first runs go within firstCheckSpread,
	// the second ones are spread over the interval.
	warm := time.Now().Add(time.Second)
	for time.Now().Before(warm) {
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	lat, fails = lat[:0], 0
	mu.Unlock()
	start, child0 := time.Now(), procCPU(t, child.Process.Pid)
	user0, sys0 := rusageSplit(t)
	end := start.Add(*loadFor)
	var goroutines int
	for time.Now().Before(end) {
		time.Sleep(100 * time.Millisecond)
		goroutines = max(goroutines, runtime.NumGoroutine())
	}
	wall := time.Since(start)
	user1, sys1 := rusageSplit(t)
	user, sys := user1-user0, sys1-sys0
	cpu, childCPU := user+sys, procCPU(t, child.Process.Pid)-child0
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	perCheck := cpu / time.Duration(max(len(lat), 1))
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(float64(len(lat))*p))]
	}
	up := 0
	for _, st := range m.Status() {
		if st.State == StateUp {
			up++
		}
	}
	report := fmt.Sprintf(`health load: %d servers (%d services x %d listeners), tcp check, interval 1s, %s measured
  checks:      %d (%.0f/s), failed %d %s
  checker CPU: %.3f cores (user %s + sys %s over %s wall, getrusage); %.1fµs per check = %.3f cores at 10,000 checks/s
  floor:       %.1fµs per bare dial+close without the monitor = %.3f cores at 10,000/s (loopback charges
               both ends of the handshake to the dialer, so this is mostly kernel TCP)
  listeners:   %.3f cores (child process, /proc/pid/stat)
  latency:     p50 %s  p90 %s  p99 %s  max %s
  servers up:  %d/%d, peak goroutines %d`,
		services*listeners, services, listeners, wall.Round(time.Millisecond),
		len(lat), float64(len(lat))/wall.Seconds(), fails, first,
		cpu.Seconds()/wall.Seconds(), user.Round(time.Millisecond), sys.Round(time.Millisecond), wall.Round(time.Millisecond),
		perCheck.Seconds()*1e6, perCheck.Seconds()*10000, floor.Seconds()*1e6, floor.Seconds()*10000,
		childCPU.Seconds()/wall.Seconds(),
		pct(.50), pct(.90), pct(.99), pct(1), up, services*listeners, goroutines)
	fmt.Println(report)
	t.Log(report)
}

// serveLoadListeners is the child side of TestLoad: it accepts and closes
// connections until its stdin closes.
func serveLoadListeners(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(loadChildEnv))
	raiseFileLimit(t)
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		fmt.Printf("listen %s\n", ln.Addr())
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	io.Copy(io.Discard, os.Stdin)
	for _, ln := range lns {
		ln.Close()
	}
}

func raiseFileLimit(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Logf("raise RLIMIT_NOFILE: %v", err)
	}
}

func rusage(t *testing.T) time.Duration {
	u, s := rusageSplit(t)
	return u + s
}

func rusageSplit(t *testing.T) (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// procCPU reads a process's user+sys time from /proc (clock ticks of 10ms).
func procCPU(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// dialFloor measures the CPU of one connect+close against the listeners,
// dialling at rate per second with nothing else going on: the share of the
// load that any TCP checker pays, whatever its design.
func dialFloor(t *testing.T, ports []netip.AddrPort, rate int, d time.Duration) time.Duration {
	const ticks = 100 // per second
	perTick := rate / ticks
	p := &probe{kind: KindTCP, network: "tcp", timeout: time.Second}
	start, ru0 := time.Now(), rusage(t)
	tick := time.NewTicker(time.Second / ticks)
	defer tick.Stop()
	var wg sync.WaitGroup
	n := 0
	for time.Since(start) < d {
		<-tick.C
		for range perTick {
			q := *p
			q.target = ports[n%len(ports)]
			n++
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), q.timeout)
				defer cancel()
				// A starved machine drops SYNs; the floor is about CPU, not
				// about whether every dial made it.
				_ = q.runTCP(ctx)
			})
		}
	}
	wg.Wait()
	return (rusage(t) - ru0) / time.Duration(max(n, 1))
}
