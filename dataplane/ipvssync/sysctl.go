package ipvssync

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The net.ipv4.vs sysctls shoal sets for connection sync. They are per
// network namespace, like the daemons: lvsd writes those of the namespace
// it runs in.
const (
	// SysctlThreshold is "THRESHOLD PERIOD": a connection is sent when it
	// has seen THRESHOLD packets, then every PERIOD packets.
	SysctlThreshold = "sync_threshold"
	// SysctlRefreshPeriod is in seconds; non-zero sends a connection again
	// after that long (and on state changes) instead of by packet count.
	SysctlRefreshPeriod = "sync_refresh_period"
	// SysctlPersistMode 1 sends only persistence templates of persistent
	// services.
	SysctlPersistMode = "sync_persist_mode"
)

// SysctlDir is where the IPVS sysctls of the calling thread's namespace
// are.
const SysctlDir = "/proc/sys/net/ipv4/vs"

// Sysctls reads and writes the IPVS sysctls under Dir (SysctlDir when
// empty).
type Sysctls struct {
	Dir string
}

func (s Sysctls) path(name string) string {
	dir := s.Dir
	if dir == "" {
		dir = SysctlDir
	}
	return filepath.Join(dir, name)
}

// Sysctl returns a value with its white space folded ("3 50").
func (s Sysctls) Sysctl(name string) (string, error) {
	b, err := os.ReadFile(s.path(name))
	if err != nil {
		return "", fmt.Errorf("read net.ipv4.vs.%s: %w", name, err)
	}
	return strings.Join(strings.Fields(string(b)), " "), nil
}

// SetSysctl writes a value.
func (s Sysctls) SetSysctl(name, value string) error {
	if err := os.WriteFile(s.path(name), []byte(value+"\n"), 0o644); err != nil {
		return fmt.Errorf("set net.ipv4.vs.%s = %s: %w", name, value, err)
	}
	return nil
}
