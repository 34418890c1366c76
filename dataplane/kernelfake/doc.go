// Package kernelfake holds in-memory fakes of the kernel interfaces of package
// dataplane (IPVS, Addresses, Announcer, Links, and for connection sync
// SyncDaemons, Sysctls and Conns), for unit tests here and in other packages
// (in-process clusters). The fakes enforce the kernel's rules that matter to
// a reconciler — an entry added twice is EEXIST, a missing one ESRCH/ENOENT,
// an IPv6 service needs a netmask of 1..128, the kernel-set hashed flag must
// not be sent back, an address outlives its lifetime by nothing (on a clock
// the test advances), a second sync daemon of a state is EEXIST and a started
// one reports the kernel's defaults — and record every change in order.
//
// It imports nothing of shoal but the kernel types of dataplane/ipvssync, so
// dataplane's own tests can use it.
package kernelfake
