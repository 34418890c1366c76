package raftfsm

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter sends raft's hclog output to slog. Raft is chatty about routine
// elections and pipelines, so trace, debug and info become slog debug; its
// warnings and errors keep their level because they are what an operator
// needs to see (lost quorum, failed heartbeats).
type hclogAdapter struct {
	l       *slog.Logger
	name    string
	implied []any
}

func newHclogAdapter(l *slog.Logger) hclog.Logger {
	return &hclogAdapter{l: l}
}

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	var lvl slog.Level
	switch {
	case level >= hclog.Error:
		lvl = slog.LevelError
	case level == hclog.Warn:
		lvl = slog.LevelWarn
	default:
		lvl = slog.LevelDebug
	}
	ctx := context.Background()
	if !h.l.Enabled(ctx, lvl) {
		return
	}
	if h.name != "" {
		msg = h.name + ": " + msg
	}
	h.l.Log(ctx, lvl, msg, append(h.implied[:len(h.implied):len(h.implied)], fixArgs(args)...)...)
}

// fixArgs keeps slog from printing !BADKEY for hclog's odd trailing value.
func fixArgs(args []any) []any {
	if len(args)%2 == 1 {
		args = append(args[:len(args):len(args)], "")
	}
	out := make([]any, len(args))
	for i := 0; i < len(args); i += 2 {
		out[i] = args[i]
		if _, ok := args[i].(string); !ok {
			out[i] = fmt.Sprint(args[i])
		}
		out[i+1] = args[i+1]
		// hclog.Fmt("%+v", x) defers formatting to the logger.
		if f, ok := args[i+1].(hclog.Format); ok && len(f) > 0 {
			if format, ok := f[0].(string); ok {
				out[i+1] = fmt.Sprintf(format, f[1:]...)
			}
		}
	}
	return out
}

func (h *hclogAdapter) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogAdapter) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogAdapter) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hclogAdapter) IsTrace() bool { return h.l.Enabled(context.Background(), slog.LevelDebug) }
func (h *hclogAdapter) IsDebug() bool { return h.l.Enabled(context.Background(), slog.LevelDebug) }
func (h *hclogAdapter) IsInfo() bool  { return h.l.Enabled(context.Background(), slog.LevelDebug) }
func (h *hclogAdapter) IsWarn() bool  { return h.l.Enabled(context.Background(), slog.LevelWarn) }
func (h *hclogAdapter) IsError() bool { return h.l.Enabled(context.Background(), slog.LevelError) }

func (h *hclogAdapter) ImpliedArgs() []any { return h.implied }

func (h *hclogAdapter) With(args ...any) hclog.Logger {
	c := *h
	c.implied = append(h.implied[:len(h.implied):len(h.implied)], fixArgs(args)...)
	return &c
}

func (h *hclogAdapter) Name() string { return h.name }

func (h *hclogAdapter) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

// SetLevel is ignored: the slog handler decides.
func (h *hclogAdapter) SetLevel(hclog.Level) {}

func (h *hclogAdapter) GetLevel() hclog.Level {
	switch {
	case h.IsDebug():
		return hclog.Debug
	case h.IsWarn():
		return hclog.Warn
	}
	return hclog.Error
}

func (h *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		h.Log(hclog.Debug, string(trimNewline(p)))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

func trimNewline(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}
