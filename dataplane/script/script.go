// Package script is how lvsd runs an operator's program: the exec health
// checks and the event hooks both go through a Runner.
//
// The programs are named in the replicated configuration, which any admin
// client of the API can change, while they run on every router. So the
// router, not the API, decides what may run (keepalived's
// enable_script_security and script_user, made the default):
//
//   - only an absolute path inside one of the router's own script
//     directories (lvsd --script-dir), never a name looked up in PATH;
//   - only a program that nobody but root (or lvsd's own user) can change:
//     the file and every directory above it owned by root and not writable
//     by a group other than root's or by others (a root-owned sticky
//     directory such as /tmp may be world-writable, as keepalived allows);
//   - as an unprivileged user (lvsd --script-user), with a minimal
//     environment, its own process group killed at the timeout, and its
//     output bounded;
//   - with arguments passed as argv, never through a shell, unless the
//     router allows shell commands (lvsd --allow-shell-scripts).
//
// A refused program is an error of type *RefusedError, never a crash.
// This package must never take a program from anywhere but its caller's
// configuration, nor pass event data through a shell.
package script

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultDir is where lvsd looks for programs unless told otherwise; the
// .deb creates it root-owned, mode 0755.
const DefaultDir = "/etc/shoal/scripts"

// DefaultUser runs the programs unless told otherwise: it exists on every
// Debian system and owns nothing.
const DefaultUser = "nobody"

// nobodyID is nobody's uid and gid on Debian and most systems.
const nobodyID = "65534"

// MaxOutput bounds what is kept of a program's output (stdout and stderr
// together): enough for any check's answer or a hook's complaint, small
// enough that thousands of checks cannot exhaust memory.
const MaxOutput = 64 << 10

// shellPath runs shell commands when they are allowed.
const shellPath = "/bin/sh"

// basePath is the PATH a program sees: the system's directories only, so
// that a script's own commands resolve the same on every router.
const basePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Options configures a Runner.
type Options struct {
	// Dirs are the directories programs must lie in (absolute).
	// Empty refuses every program.
	Dirs []string
	// User runs the programs: a name or a numeric uid. Empty means
	// DefaultUser. When lvsd is not root it cannot switch users and runs
	// them as itself.
	User string
	// AllowShell lets a check with shell: true run through /bin/sh -c.
	AllowShell bool
}

// Runner runs programs under one policy. It is immutable and safe for
// concurrent use.
type Runner struct {
	dirs       []string
	user       string
	cred       *syscall.Credential // nil: run as lvsd's own user
	home       string
	allowShell bool
	euid       int
}

// New checks o and resolves its user. A directory that does not exist is
// not an error (the .deb creates the default one; a router may have no
// scripts), but one that is not absolute is.
func New(o Options) (*Runner, error) {
	r := &Runner{allowShell: o.AllowShell, euid: os.Geteuid(), home: "/"}
	for _, d := range o.Dirs {
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("script directory %q is not an absolute path", d)
		}
		r.dirs = append(r.dirs, filepath.Clean(d))
	}
	r.user = o.User
	if r.user == "" {
		r.user = DefaultUser
	}
	u, err := lookupUser(r.user)
	var unknown user.UnknownUserError
	if r.user == DefaultUser && (errors.As(err, &unknown) || errors.Is(err, fs.ErrNotExist)) {
		// An image without /etc/passwd (FROM scratch, an initramfs) still
		// has the conventional nobody; Go's own lookup reports a missing
		// file rather than an unknown user.
		u, err = &user.User{Uid: nobodyID, Gid: nobodyID, Username: DefaultUser}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("script user %q: %w", r.user, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("script user %q: %w", r.user, err)
	}
	// Only root can switch; an unprivileged lvsd's programs are no more
	// privileged than itself.
	if r.euid == 0 && uid != 0 {
		// No supplementary groups: root's would come along otherwise.
		r.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	}
	return r, nil
}

func lookupUser(name string) (*user.User, error) {
	if _, err := strconv.ParseUint(name, 10, 32); err == nil {
		if u, err := user.LookupId(name); err == nil {
			return u, nil
		}
		// A numeric uid without a passwd entry is still a user to run as.
		return &user.User{Uid: name, Gid: name, Username: name}, nil
	}
	return user.Lookup(name)
}

// User is the user programs run as, as configured.
func (r *Runner) User() string { return r.user }

// Dirs are the allowed directories.
func (r *Runner) Dirs() []string { return append([]string(nil), r.dirs...) }

// Switches says whether programs run as another user than lvsd's.
func (r *Runner) Switches() bool { return r.cred != nil }

// Reason says why a program was refused; it is a metric label, so the set
// is fixed.
type Reason string

const (
	ReasonEmpty       Reason = "empty"        // no program named
	ReasonNotAbsolute Reason = "not-absolute" // a bare name or a relative path
	ReasonOutsideDirs Reason = "outside-dirs" // not under any --script-dir
	ReasonMissing     Reason = "missing"      // no such file, or not a regular file
	ReasonOwner       Reason = "owner"        // a component not owned by root
	ReasonWritable    Reason = "writable"     // a component writable by group or others
	ReasonShell       Reason = "shell"        // shell: true on a router that does not allow it
)

// RefusedError is a program the policy does not let run.
type RefusedError struct {
	Program string
	Reason  Reason
	Detail  string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refused to run %s: %s", e.Program, e.Detail)
}

func refuse(prog string, r Reason, format string, args ...any) *RefusedError {
	return &RefusedError{Program: prog, Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// Check says whether prog may run: nil or a *RefusedError.
func (r *Runner) Check(prog string) error {
	if prog == "" {
		return refuse(prog, ReasonEmpty, "no program")
	}
	if !filepath.IsAbs(prog) {
		return refuse(prog, ReasonNotAbsolute, "not an absolute path (programs are not looked up in PATH)")
	}
	clean := filepath.Clean(prog)
	if clean != prog {
		// "/etc/shoal/scripts/../../bin/sh" must not pass as inside.
		return refuse(prog, ReasonNotAbsolute, "not a clean path (write %s)", clean)
	}
	inside := false
	for _, d := range r.dirs {
		if strings.HasPrefix(prog, strings.TrimSuffix(d, "/")+"/") {
			inside = true
			break
		}
	}
	if !inside {
		if len(r.dirs) == 0 {
			return refuse(prog, ReasonOutsideDirs, "this router allows no script directory (lvsd --script-dir)")
		}
		return refuse(prog, ReasonOutsideDirs, "not inside the script directories %s of this router (lvsd --script-dir)", strings.Join(r.dirs, ", "))
	}
	if err := r.checkPath(prog, prog); err != nil {
		return err
	}
	// A symlink is judged by where it leads as well: its target and the
	// directories above the target must be as safe.
	real, err := filepath.EvalSymlinks(prog)
	if err != nil {
		return refuse(prog, ReasonMissing, "%s", statReason(err))
	}
	if real != prog {
		return r.checkPath(prog, real)
	}
	return nil
}

// checkPath follows keepalived's check_script_secure: every prefix of the
// path, and the file, stat'ed through symlinks, must be owned by root
// (or by lvsd's own user) and not writable by others or by a group other
// than root's; a directory with the sticky bit may be world-writable.
func (r *Runner) checkPath(prog, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return refuse(prog, ReasonMissing, "%s", statReason(err))
	}
	if !fi.Mode().IsRegular() {
		return refuse(prog, ReasonMissing, "not a regular file")
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return refuse(prog, ReasonMissing, "not executable")
	}
	parts := strings.Split(path[1:], "/")
	p := "/"
	for i := 0; i <= len(parts); i++ {
		st, err := os.Stat(p)
		if err != nil {
			return refuse(prog, ReasonMissing, "%s: %s", p, statReason(err))
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok {
			return refuse(prog, ReasonMissing, "%s: no owner information", p)
		}
		if sys.Uid != 0 && int(sys.Uid) != r.euid {
			return refuse(prog, ReasonOwner, "%s is owned by uid %d, not root", p, sys.Uid)
		}
		mode := st.Mode()
		sticky := mode.IsDir() && mode&fs.ModeSticky != 0
		if !sticky && ((sys.Gid != 0 && mode.Perm()&0o020 != 0) || mode.Perm()&0o002 != 0) {
			return refuse(prog, ReasonWritable, "%s is writable by %s (mode %04o)", p, writers(sys.Gid, mode), mode.Perm())
		}
		if i < len(parts) {
			p = filepath.Join(p, parts[i])
		}
	}
	return nil
}

func writers(gid uint32, mode fs.FileMode) string {
	if mode.Perm()&0o002 != 0 {
		return "everyone"
	}
	return "group " + strconv.Itoa(int(gid))
}

func statReason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// Command is one run of a program.
type Command struct {
	// Argv is the program and its arguments, already substituted: each
	// element arrives as one argument whatever it holds.
	Argv []string
	// Shell runs Argv[0] through /bin/sh -c (Argv[1:] become $0, $1, ...),
	// only when the Runner allows shell commands.
	Shell bool
	// Env is added to the minimal environment (PATH, HOME, LANG);
	// nothing of lvsd's own environment is passed on.
	Env []string
	// Timeout kills the program and everything in its process group; 0
	// leaves it to ctx.
	Timeout time.Duration
}

// Result is what a run produced.
type Result struct {
	// Output is the first MaxOutput bytes of stdout and stderr.
	Output []byte
	// Err is nil when the program exited 0; a *RefusedError when it was
	// not started; *exec.ExitError for a non-zero exit or a signal;
	// context.DeadlineExceeded when Timeout (or ctx's deadline) killed it;
	// context.Canceled when ctx was cancelled; anything else when it could
	// not start.
	Err error
	// Duration is how long it ran.
	Duration time.Duration
}

// Run runs c and waits for it.
func (r *Runner) Run(ctx context.Context, c Command) Result {
	if len(c.Argv) == 0 {
		return Result{Err: refuse("", ReasonEmpty, "no program")}
	}
	argv := c.Argv
	if c.Shell {
		if !r.allowShell {
			return Result{Err: refuse(firstWord(argv[0]), ReasonShell,
				"shell commands are off on this router (lvsd --allow-shell-scripts); name a program and its arguments instead")}
		}
		argv = append([]string{shellPath, "-c"}, argv...)
	} else if err := r.Check(argv[0]); err != nil {
		return Result{Err: err}
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// Its own process group, so that a timeout kills what it started too
	// (a script's curl, a shell's children).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: r.cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A grandchild that left the group may hold the pipe open; do not wait
	// for it long after the kill.
	cmd.WaitDelay = 100 * time.Millisecond
	cmd.Dir = "/"
	var out boundedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Nothing of lvsd's environment: it may hold SHOAL_TOKEN.
	cmd.Env = append([]string{basePath, "HOME=" + r.home, "LANG=C"}, c.Env...)
	start := time.Now()
	err := cmd.Run()
	res := Result{Output: out.b, Duration: time.Since(start)}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		res.Err = err
	}
	return res
}

func firstWord(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return s
	}
	return f[0]
}

// boundedBuffer keeps the first MaxOutput bytes and discards the rest
// without failing the write, so a chatty program is not killed by SIGPIPE.
type boundedBuffer struct{ b []byte }

func (w *boundedBuffer) Write(p []byte) (int, error) {
	if room := MaxOutput - len(w.b); room > 0 {
		w.b = append(w.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
