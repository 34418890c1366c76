package netlab

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Process is a command running inside a lab namespace, in its own process
// group so that Kill takes down the daemon and anything it forked, as a
// crash would. (e2e/harness.Process signals only the pid: enough for lvsd
// on loopback, but killing keepalived's parent alone makes its VRRP child
// resign gracefully, which is not a crash.) Binaries come from
// harness.Build.
type Process struct {
	Node *Node
	Cmd  *exec.Cmd

	done    chan struct{}
	waitErr error
	once    sync.Once
}

// Start runs name with args inside the node's namespace; stdout and stderr go
// to out (nil = discarded). The lab kills the process on Close.
func (n *Node) Start(out io.Writer, name string, args ...string) (*Process, error) {
	return n.StartCmd(n.Command(context.Background(), name, args...), out)
}

// StartCmd starts cmd, which must come from Node.Command (or run `ip netns
// exec` itself), with the lab's process bookkeeping.
func (n *Node) StartCmd(cmd *exec.Cmd, out io.Writer) (*Process, error) {
	n.lab.mu.Lock()
	defer n.lab.mu.Unlock()
	if n.lab.closed {
		return nil, fmt.Errorf("netlab: lab %s is closed", n.lab.Prefix)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	// If the test binary dies, its daemons die with it.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("netlab: start %s in %s: %w", cmd.Args, n.NS, err)
	}
	p := &Process{Node: n, Cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	n.lab.procs = append(n.lab.procs, p)
	return p, nil
}

// Pid is the process id (also its process group id).
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Kill sends SIGKILL to the whole process group and waits for the process.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM to the process and waits up to grace for it to exit,
// then kills the group. It returns the process's exit error.
func (p *Process) Stop(grace time.Duration) error {
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL) // leftovers of the group
	return p.waitErr
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and its wait error.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// LogFile creates path (and its directory) for a process's output.
func LogFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	return os.Create(path)
}
