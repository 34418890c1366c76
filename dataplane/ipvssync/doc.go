// Package ipvssync drives the kernel's IPVS connection synchronisation: the
// sync daemons (IPVS_CMD_NEW_DAEMON, IPVS_CMD_DEL_DAEMON and
// IPVS_CMD_GET_DAEMON over generic netlink, which github.com/moby/ipvs does
// not speak), the net.ipv4.vs sysctls that tune what they send, and the
// connection table they replicate (/proc/net/ip_vs_conn).
//
// A master daemon sends the connections its kernel schedules, by UDP
// multicast on one interface; a backup daemon receives them and adds them to
// its own connection table, so that a router that takes the VIPs over
// forwards the connections the old one had to the same real servers. One
// kernel may run both at once (Linux 2.6.39 and later). The kernel queues
// the entries and sends a message when it is full or, for a partly filled
// one, about 2 s later (IPVS_SYNC_FLUSH_TIME, looked at every second): that
// is the lag of a new connection to the backups.
//
// The package holds the kernel's calls and formats only; what runs when is
// package dataplane's business. It uses vishvananda/netlink's nl package for
// the netlink messages, as moby/ipvs does, and issues no raw syscalls.
package ipvssync
