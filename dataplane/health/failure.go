package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
)

// Cause classifies why a check failed, so that "why is this real server
// out" can be counted (shoal_health_check_failures_total{cause}) and
// alerted on without parsing messages.
type Cause string

const (
	CauseRefused     Cause = "refused"     // nothing listens: RST or ICMP port unreachable
	CauseReset       Cause = "reset"       // the server reset the connection
	CauseUnreachable Cause = "unreachable" // no route, host down
	CauseNetwork     Cause = "network"     // another socket error
	CauseTimeout     Cause = "timeout"     // the check's timeout ran out
	CauseClosed      Cause = "closed"      // the server closed before answering
	CauseMismatch    Cause = "mismatch"    // the reply or output did not match expect
	CauseStatus      Cause = "status"      // unexpected HTTP status
	CauseTLS         Cause = "tls"         // handshake or certificate failure
	CauseProtocol    Cause = "protocol"    // not a valid HTTP answer
	CauseExit        Cause = "exit"        // the program exited non-zero or died
	CauseConfig      Cause = "config"      // the check cannot run as configured
	// CauseRefusedProgram: this router's script policy does not let the
	// exec check's program run (outside --script-dir, writable by others,
	// a shell command without --allow-shell-scripts).
	CauseRefusedProgram Cause = "refused-program"
	CauseCancelled      Cause = "cancelled" // stopped by a config change or shutdown; never counted
	CauseOther          Cause = "other"
)

// Failure is a failed check: an operator-readable message such as
// `connect 10.0.0.1:80: connection refused` and its cause.
type Failure struct {
	Cause Cause
	Msg   string
}

func (f *Failure) Error() string { return f.Msg }

func failf(c Cause, format string, args ...any) error {
	return &Failure{Cause: c, Msg: fmt.Sprintf(format, args...)}
}

// CauseOf returns the cause of a check error ("" for nil).
func CauseOf(err error) Cause {
	if err == nil {
		return ""
	}
	var f *Failure
	if errors.As(err, &f) {
		return f.Cause
	}
	return CauseOther
}

// cause reduces a network error to what an operator needs: the errno text
// ("connection refused") or that the check's timeout ran out.
func (p *probe) cause(ctx context.Context, err error) (Cause, string) {
	var ne net.Error
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return CauseTimeout, fmt.Sprintf("timeout after %s", p.timeout)
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return CauseCancelled, "check cancelled"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ECONNREFUSED:
			return CauseRefused, errno.Error()
		case syscall.ECONNRESET, syscall.EPIPE, syscall.ECONNABORTED:
			return CauseReset, errno.Error()
		case syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EHOSTDOWN, syscall.ENETDOWN:
			return CauseUnreachable, errno.Error()
		}
		return CauseNetwork, errno.Error()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return CauseClosed, "connection closed by server"
	}
	return CauseOther, err.Error()
}
