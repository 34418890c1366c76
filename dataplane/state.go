package dataplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
)

// stateFile is what shoal remembers across restarts about what it created.
type stateFile struct {
	// IPVSServices are the keys (serviceKey) of IPVS services shoal created
	// or took over: the only ones it may delete.
	IPVSServices []string `json:"ipvs_services"`
	// Addresses are the addresses it holds, as "addr/prefix dev": a node that
	// died while leading drops them when it comes back.
	Addresses []string `json:"addresses"`
	// SyncDaemons are the IPVS sync daemons shoal started ("master",
	// "backup"): the ones it stops when connection sync is turned off.
	SyncDaemons []string `json:"sync_daemons,omitempty"`
}

func loadState(path string) (*stateFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &stateFile{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read dataplane state: %w", err)
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("read dataplane state %s: %w", path, err)
	}
	return &st, nil
}

func (st *stateFile) addrRefs() []addrRef {
	var out []addrRef
	for _, s := range st.Addresses {
		var p, dev string
		if _, err := fmt.Sscan(s, &p, &dev); err != nil {
			continue
		}
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			continue
		}
		out = append(out, addrRef{dev: dev, prefix: pfx})
	}
	return out
}

// saveState writes the state file; the caller holds recMu or addrMu, and the
// file is written whole (rename) so a crash leaves the old or the new one. It
// is not fsynced: addresses do not outlive a reboot, and IPVS neither.
func (d *Dataplane) saveState() error {
	if d.o.StateFile == "" {
		return nil
	}
	d.stateMu.Lock()
	defer d.stateMu.Unlock()
	var st stateFile
	d.mu.Lock()
	for k := range d.ownedSnapshot {
		st.IPVSServices = append(st.IPVSServices, k)
	}
	for _, h := range d.held {
		st.Addresses = append(st.Addresses, h.addrRef.String())
	}
	for _, a := range d.staleSnapshot {
		st.Addresses = append(st.Addresses, a.String())
	}
	for s := range d.syncOwnedSnapshot {
		st.SyncDaemons = append(st.SyncDaemons, s.String())
	}
	d.mu.Unlock()
	sort.Strings(st.SyncDaemons)
	sort.Strings(st.IPVSServices)
	sort.Strings(st.Addresses)
	b, err := json.MarshalIndent(&st, "", "  ")
	if err != nil {
		return err
	}
	tmp := d.o.StateFile + ".tmp"
	if err := os.MkdirAll(filepath.Dir(d.o.StateFile), 0o755); err != nil {
		return fmt.Errorf("write dataplane state: %w", err)
	}
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write dataplane state: %w", err)
	}
	if err := os.Rename(tmp, d.o.StateFile); err != nil {
		return fmt.Errorf("write dataplane state: %w", err)
	}
	return nil
}
