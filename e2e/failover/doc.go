// Package failover holds the failover benchmark: how long a client of a VIP
// is without service when the router holding it crashes, when its whole host
// disappears, when leadership is handed over on purpose, and how often the
// VIP moves on its own under CPU and write load. It measures shoal's lvsd and,
// where installed, keepalived's VRRP in the same namespace lab (e2e/netlab).
//
// The benchmark is a test gated by SHOAL_FAILOVER_BENCH=1; see README.md.
package failover
