package migrate

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// Piranha ran its commands through a shell (pulse with system(), nanny's
// send_program through /bin/sh -c). shoal's routers run hooks and exec
// checks as argv, without a shell: a command line that is only words
// becomes argv (SplitCommand); one that needs a shell (pipes,
// redirections, variables, globs) does not import as a hook, and stays a
// shell exec check, which routers refuse unless lvsd
// --allow-shell-scripts. Move such a line into a script under the routers'
// --script-dir. keepalived never used a shell for its notify scripts and
// misc_path: it splits the line itself and execs the words, so its
// importer splits them with keepalived's rules (kaSplitQuoted) instead.

// errShellSyntax says a command line needs a shell.
var errShellSyntax = errors.New("uses shell syntax")

// shellMeta are the characters that make /bin/sh do more than split words.
const shellMeta = "|&;<>()$`\\*?[]#~{}!\n"

// SplitCommand turns a shell-free command line into argv (lvsctl and the
// importers use it). Single and double quotes group words (nothing inside
// is expanded: a double-quoted $, ` or \ is shell syntax); anything else
// with a meaning to the shell is an error.
func SplitCommand(line string) ([]string, error) {
	var argv []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
				continue
			}
			if quote == '"' && strings.ContainsRune("$`\\", r) {
				return nil, errShellSyntax
			}
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				argv = append(argv, cur.String())
				cur.Reset()
				inWord = false
			}
		case strings.ContainsRune(shellMeta, r):
			return nil, errShellSyntax
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quote")
	}
	if inWord {
		argv = append(argv, cur.String())
	}
	if len(argv) == 0 {
		return nil, errors.New("empty command")
	}
	return argv, nil
}

// joinCommand writes argv back as a command line that SplitCommand (and a
// shell) reads as the same argv.
func joinCommand(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && !strings.ContainsAny(a, shellMeta+" \t'\"") {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'"'"'`) + "'"
	}
	return strings.Join(out, " ")
}

// programArgv is a command line as a hook's or a check's argv, or why it
// cannot be one.
func programArgv(line string) ([]string, error) {
	argv, err := SplitCommand(line)
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(argv[0]) || filepath.Clean(argv[0]) != argv[0] {
		return nil, fmt.Errorf("%q is not an absolute path", argv[0])
	}
	return argv, nil
}

// hookAdvice ends every refusal to import a command as a hook.
const hookAdvice = "hooks run a program (an absolute path under the routers' lvsd --script-dir) with arguments, without a shell, " +
	"and get the event in SHOAL_* environment variables; put the command line in a script there"

// keepalivedHookEvents maps keepalived's notify keys to hook events:
// vrrp_instance/vrrp_sync_group notify_master, notify_backup, notify_fault
// and notify_stop, real_server notify_up and notify_down. keepalived's
// FAULT state (a tracked interface or script failed) is shoal's fence
// lapse: the router gave up the VIPs without another taking them from it.
var keepalivedHookEvents = map[string]string{
	"notify_master": config.EventLeader,
	"notify_backup": config.EventFollower,
	"notify_fault":  config.EventFenceLapse,
	"notify_stop":   config.EventShutdown,
	"notify_up":     config.EventServerUp,
	"notify_down":   config.EventServerDown,
}

// KeepalivedHook imports one keepalived notify key as a hook. value is the
// command word as keepalived's first split of the line leaves it (the
// quoted command line without its quotes); for notify_up and notify_down,
// service and realServer (address or address:port) name the real_server
// block it came from. The error says why it cannot be a hook; the caller
// reports it against the key's line.
//
// keepalived does not hand the line to a shell: it splits it into words
// itself (quotes and backslash escapes, as misc_path) and execs them. So
// the words are taken as keepalived takes them, with keepalived's rules
// (kaSplitQuoted), not SplitCommand's, which are the shell's: a | or a $
// here is an argument, as keepalived passes it.
func KeepalivedHook(key, value, service, realServer string) (*shoalv1.Hook, error) {
	event, ok := keepalivedHookEvents[key]
	if !ok {
		if key == "notify" {
			return nil, errors.New("notify: its TYPE NAME STATE arguments have no equivalent; " +
				"use one hook for leader, follower, fence-lapse and shutdown, which reads SHOAL_EVENT")
		}
		return nil, fmt.Errorf("%s: not a notify key shoal imports", key)
	}
	argv, err := kaSplitQuoted(value, true)
	switch {
	case err != nil:
	case len(argv) == 0:
		err = errors.New("empty command")
	case !filepath.IsAbs(argv[0]) || filepath.Clean(argv[0]) != argv[0]:
		err = fmt.Errorf("%q is not an absolute path", argv[0])
	}
	if err != nil {
		return nil, fmt.Errorf("%s %q: %v; %s", key, value, err, hookAdvice)
	}
	h := &shoalv1.Hook{Events: []string{event}, Command: argv}
	if event == config.EventServerUp || event == config.EventServerDown {
		h.Service, h.RealServer = service, realServer
	}
	return h, nil
}

// KeepalivedNotify exports a hook as keepalived notify keys and their
// command lines, one per event keepalived has a key for (notify_up and
// notify_down belong in the real_server blocks the hook's filters name,
// or in every one when it names none). The line is the quoted word
// keepalived splits back into the hook's argv (kaArgv, as misc_path).
// Events without a keepalived key are returned in skipped, for the
// exporter to report.
func KeepalivedNotify(h *shoalv1.Hook) (keys [][2]string, skipped []string) {
	line := kaArgv(h.GetCommand())
	for _, e := range h.GetEvents() {
		key := ""
		for k, ev := range keepalivedHookEvents {
			if ev == e {
				key = k
			}
		}
		if key == "" {
			skipped = append(skipped, e)
			continue
		}
		keys = append(keys, [2]string{key, line})
	}
	return keys, skipped
}

// piranhaHookEvents are lvs.cf's global command keys (Piranha 0.7.8+):
// pulse ran active_cmd when the router became active and inactive_cmd when
// it stopped being active.
var piranhaHookEvents = map[string]string{
	"active_cmd":   config.EventLeader,
	"inactive_cmd": config.EventFollower,
}
