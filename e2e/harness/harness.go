// Package harness runs real shoal binaries in tests: it builds them once per
// test binary, hands out free loopback ports, starts and stops processes
// with their output captured to files (printed when a test fails), and runs
// lvsctl with its JSON output parsed.
//
// It holds no knowledge of a particular lab: loopback, namespace and docker
// tests build their topology on these pieces.
package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

var (
	buildMu  sync.Mutex
	buildDir string
	built    = map[string]string{}
)

// Main runs the tests and removes the binaries Build made; call it from
// TestMain when the package has one (os.Exit(harness.Main(m))).
func Main(m *testing.M) int {
	code := m.Run()
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	return code
}

// Build compiles the main package pkg of the shoal module (such as
// "cmd/lvsd") with CGO_ENABLED=0, once per test binary, and returns the
// path of the executable.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if buildDir == "" {
		buildDir, err = os.MkdirTemp("", "shoal-e2e-bin-")
		if err != nil {
			t.Fatalf("create build dir: %v", err)
		}
	}
	out := filepath.Join(buildDir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, "./"+strings.TrimPrefix(pkg, "./"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	built[pkg] = out
	return out
}

// ModuleRoot is the directory of the shoal module's go.mod.
func ModuleRoot() (string, error) {
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(b))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the shoal module")
	}
	return filepath.Dir(mod), nil
}

// FreeAddr returns a 127.0.0.1:port that was free a moment ago. The port is
// released before returning, so a process started soon after can bind it.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return FreeAddrOn(t, "127.0.0.1")
}

// given is every address FreeAddrOn has handed out in this process: once
// the probe listener is closed, the kernel may offer the same port again,
// and two nodes of one cluster were given the same API address.
var given = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

// FreeAddrOn is FreeAddr on a given local address. It never returns the
// same address twice.
func FreeAddrOn(t testing.TB, host string) string {
	t.Helper()
	given.Lock()
	defer given.Unlock()
	for {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatalf("find a free port on %s: %v", host, err)
		}
		addr := l.Addr().String()
		l.Close()
		if !given.addrs[addr] {
			given.addrs[addr] = true
			return addr
		}
	}
}

// Process is a started program whose output goes to a log file.
type Process struct {
	Name    string
	Args    []string
	LogPath string

	t    testing.TB
	bin  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done closes
	log  *os.File
}

// Start runs bin with args; stdout and stderr go to a log file in the
// test's temp dir. The process is stopped (SIGTERM, then SIGKILL) when the
// test ends, and its log is printed if the test failed.
func Start(t testing.TB, name, bin string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: name, Args: args, t: t, bin: bin,
		LogPath: filepath.Join(t.TempDir(), name+".log")}
	p.start()
	t.Cleanup(func() {
		_ = p.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("---- log of %s (%s) ----\n%s", p.Name, strings.Join(p.Args, " "), p.Log())
		}
	})
	return p
}

// Restart starts the same command again after the process ended; the log
// file is appended to.
func (p *Process) Restart() {
	p.t.Helper()
	if p.Running() {
		p.t.Fatalf("restart %s: still running", p.Name)
	}
	p.start()
}

func (p *Process) start() {
	f, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatalf("open log of %s: %v", p.Name, err)
	}
	fmt.Fprintf(f, "==== %s start %s %s\n", time.Now().Format(time.RFC3339Nano), p.bin, strings.Join(p.Args, " "))
	cmd := exec.Command(p.bin, p.Args...)
	cmd.Stdout, cmd.Stderr = f, f
	// A process group of its own: signals from the terminal reach the test
	// binary, which then stops its children itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		p.t.Fatalf("start %s: %v", p.Name, err)
	}
	p.cmd, p.log, p.done, p.err = cmd, f, make(chan struct{}), nil
	go func(done chan struct{}) {
		err := cmd.Wait()
		p.err = err
		fmt.Fprintf(f, "==== %s exit: %v\n", time.Now().Format(time.RFC3339Nano), err)
		f.Close()
		close(done)
	}(p.done)
}

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error {
	if !p.Running() {
		return nil
	}
	return p.cmd.Process.Signal(sig)
}

// Wait waits up to timeout for the process to exit and returns its exit
// error (nil for status 0).
func (p *Process) Wait(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-t.C:
		return fmt.Errorf("%s still running after %s", p.Name, timeout)
	}
}

// Stop sends SIGTERM and waits up to timeout, then SIGKILLs. It returns
// the exit error of a process that stopped by itself in time.
func (p *Process) Stop(timeout time.Duration) error {
	if !p.Running() {
		return p.err
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.Wait(timeout); err == nil || !p.Running() {
		return err
	}
	p.Kill()
	return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.Name, timeout)
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Process) Kill() {
	if !p.Running() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Log is what the process has written so far.
func (p *Process) Log() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	return string(b)
}

// Result is the outcome of a command run to completion.
type Result struct {
	Stdout, Stderr string
	ExitCode       int
}

// Run runs bin to completion (bounded by timeout) and returns its output;
// a non-zero exit is not an error, a failure to run is.
func Run(ctx context.Context, bin string, args ...string) (Result, error) {
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ctx.Err() == nil:
		r.ExitCode = ee.ExitCode()
		return r, nil
	case err != nil:
		return r, fmt.Errorf("run %s %s: %w", filepath.Base(bin), strings.Join(args, " "), err)
	}
	return r, nil
}

// Err is nil for exit status 0, else an error with stderr.
func (r Result) Err() error {
	if r.ExitCode == 0 {
		return nil
	}
	return fmt.Errorf("exit status %d: %s", r.ExitCode, strings.TrimSpace(r.Stderr))
}

// JSON decodes stdout into v (encoding/json).
func (r Result) JSON(v any) error {
	if err := r.Err(); err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(r.Stdout), v); err != nil {
		return fmt.Errorf("decode JSON output: %w\n%s", err, r.Stdout)
	}
	return nil
}

// Proto decodes stdout (protojson, as lvsctl -o json prints) into m.
func (r Result) Proto(m proto.Message) error {
	if err := r.Err(); err != nil {
		return err
	}
	if err := protojson.Unmarshal([]byte(r.Stdout), m); err != nil {
		return fmt.Errorf("decode protojson output: %w\n%s", err, r.Stdout)
	}
	return nil
}

// Eventually polls cond every 20ms until it holds or timeout passes, and
// then fails the test with msg. It returns how long it took.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
