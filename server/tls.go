package server

import (
	"context"
	"time"

	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// How often a node looks after its TLS material: often while the cluster
// CA it made is not yet in the replicated state (or, on a node that joined,
// not yet replicated to it), then once a minute, which is plenty for
// certificates that live 90 days and renew after 60.
const (
	tlsSettling = 2 * time.Second
	tlsInterval = time.Minute
)

// tlsLoop keeps this node's TLS material in order: it proposes the CA this
// node made at a first bootstrap to the replicated state, renews the node
// certificate when it is due, writes root's admin credentials, and reloads
// an operator's certificate files when they change.
func (s *Server) tlsLoop(ctx context.Context) {
	if s.o.TLS == nil {
		return
	}
	for {
		wait := tlsInterval
		if !s.tlsOnce(ctx) {
			wait = tlsSettling
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// tlsOnce reports whether everything is settled.
func (s *Server) tlsOnce(ctx context.Context) bool {
	t := s.o.TLS
	if t.Files != nil {
		if ok, err := t.Files.Reload(); err != nil {
			s.log.Warn("reload TLS files; keeping the certificate loaded before", "err", err)
		} else if ok {
			s.log.Info("TLS files reloaded", "not_after", t.Store.Leaf().NotAfter)
		}
		return true
	}
	if t.Dir == nil {
		return true
	}
	settled := true
	if s.node.FSM().State().GetCa() == nil {
		settled = false
		if local, err := t.Dir.LocalCA(); err != nil {
			s.log.Warn("read this node's CA", "err", err)
		} else if local != nil {
			s.installCA(ctx, local)
		}
	}
	ca, err := s.signingCA()
	if err != nil {
		return false
	}
	now := time.Now()
	if renewed, err := t.Dir.Renew(ca, now); err != nil {
		s.log.Error("renew node certificate", "err", err)
	} else if renewed {
		s.log.Info("node certificate renewed", "not_after", t.Store.Leaf().NotAfter)
	}
	if serial := t.Dir.AdminSerial(); serial != "" && s.revoked(serial) != nil {
		// Revoked because the file was copied off, say: root gets new ones.
		s.log.Warn("root's admin certificate was revoked; writing a new one", "serial", serial)
		if err := t.Dir.RemoveAdmin(); err != nil {
			s.log.Error("remove revoked admin credentials", "err", err)
		}
	}
	if err := t.Dir.EnsureAdmin(ca, now); err != nil {
		s.log.Error("write admin credentials", "err", err)
	}
	return settled
}

// installCA proposes the CA this node made; the FSM keeps the first.
func (s *Server) installCA(ctx context.Context, ca *pki.CA) {
	der, err := ca.MarshalKey()
	if err != nil {
		s.log.Error("encode CA key", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cmd := &shoalv1.Command{
		Op:    &shoalv1.Command_InstallCa{InstallCa: &shoalv1.ClusterCA{Certificate: ca.Cert.Raw, Key: der}},
		Audit: &shoalv1.Audit{Actor: s.o.ID, Role: "node", Method: "InstallCA"},
	}
	if _, err := s.commit(ctx, cmd, judged{}); err != nil {
		s.log.Debug("propose the cluster CA", "err", err)
		return
	}
	s.log.Info("cluster CA stored in the replicated state")
}
