package config

import shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"

// Normalize fills defaults, canonicalises addresses and sorts services by name
// and real servers by address:port, in place.
func Normalize(c *shoalv1.Config) {
	// TODO
}

// RealServerPort is the port traffic is sent to: the real server's own port,
// or the service's port when it is 0.
func RealServerPort(s *shoalv1.VirtualService, rs *shoalv1.RealServer) uint32 {
	if rs.GetPort() != 0 {
		return rs.GetPort()
	}
	return s.GetPort()
}
