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
)
