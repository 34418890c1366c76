package dataplane

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"

	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
)

// ErrNoIPVS is returned by NewKernelIPVS (and New in mode ipvs) when the
// kernel has no IPVS generic-netlink family, even after modprobe ip_vs.
var ErrNoIPVS = errors.New("kernel has no IPVS (modprobe ip_vs, or run with --dataplane vip or none)")

// KernelIPVS is the real IPVS in the current network namespace: changes
// through a moby/ipvs handle, listings (ipvs_dump.go) and batches of
// additions (ipvs_batch.go) on a socket of its own. A socket's replies are
// matched by sequence number only, so calls are serialised.
type KernelIPVS struct {
	mu    sync.Mutex
	h     *ipvs.Handle
	batch *batchSocket // Add's
}

var (
	_ IPVS      = (*KernelIPVS)(nil)
	_ IPVSAdder = (*KernelIPVS)(nil)
)

// NewKernelIPVS opens IPVS in the current network namespace. It fails at once,
// with ErrNoIPVS, on a kernel without IPVS: moby/ipvs itself would return a
// handle that fails every call later.
func NewKernelIPVS() (*KernelIPVS, error) {
	if !hasIPVS() {
		// moby/ipvs runs modprobe too, but logs its failure through logrus
		// and carries on; do it here so the answer is ours.
		out, err := exec.Command("modprobe", "ip_vs").CombinedOutput()
		if !hasIPVS() {
			if msg := strings.TrimSpace(string(out)); msg != "" {
				return nil, fmt.Errorf("%w: modprobe ip_vs: %s", ErrNoIPVS, msg)
			}
			if err != nil {
				return nil, fmt.Errorf("%w: modprobe ip_vs: %v", ErrNoIPVS, err)
			}
			return nil, ErrNoIPVS
		}
	}
	h, err := ipvs.New("")
	if err != nil {
		return nil, fmt.Errorf("open IPVS netlink socket: %w", err)
	}
	b, err := openBatchSocket()
	if err != nil {
		h.Close()
		return nil, err
	}
	return &KernelIPVS{h: h, batch: b}, nil
}

func hasIPVS() bool {
	_, err := netlink.GenlFamilyGet("IPVS")
	return err == nil
}

// Close releases the netlink socket.
func (k *KernelIPVS) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.h.Close()
	k.batch.close()
	return nil
}

func (k *KernelIPVS) NewService(s *ipvs.Service) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.NewService(s)
}

func (k *KernelIPVS) UpdateService(s *ipvs.Service) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.UpdateService(s)
}

func (k *KernelIPVS) DelService(s *ipvs.Service) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.DelService(s)
}

func (k *KernelIPVS) NewDestination(s *ipvs.Service, d *ipvs.Destination) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.NewDestination(s, d)
}

func (k *KernelIPVS) UpdateDestination(s *ipvs.Service, d *ipvs.Destination) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.UpdateDestination(s, d)
}

func (k *KernelIPVS) DelDestination(s *ipvs.Service, d *ipvs.Destination) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.DelDestination(s, d)
}

func (k *KernelIPVS) GetConfig() (*ipvs.Config, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.GetConfig()
}

func (k *KernelIPVS) SetConfig(c *ipvs.Config) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.SetConfig(c)
}
