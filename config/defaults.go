package config

import "time"

// Defaults that Normalize fills into a configuration. They are exported so that
// importers, the CLI and documentation state the same values.
const (
	DefaultProtocol  = "tcp"
	DefaultScheduler = "wlc"
	DefaultForward   = "nat"
	DefaultWeight    = 1

	DefaultCheckKind     = "tcp"
	DefaultCheckInterval = 2 * time.Second
	DefaultCheckTimeout  = time.Second
	DefaultCheckRise     = 1
	DefaultCheckFall     = 3
	DefaultHTTPPath      = "/"

	DefaultGARPCount    = 5
	DefaultGARPInterval = 10 * time.Millisecond
	DefaultGARPRefresh  = 30 * time.Second

	// The kernel's own defaults for the IPVS sync daemon
	// (IP_VS_SYNC_GROUP, IP_VS_SYNC_PORT, and a TTL of 1).
	DefaultSyncGroup = "224.0.0.81"
	DefaultSyncPort  = 8848
	DefaultSyncTTL   = 1
)

// MaxSyncID is the largest IPVS sync id (a byte in every sync message).
const MaxSyncID = 255
