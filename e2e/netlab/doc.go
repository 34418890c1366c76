// Package netlab builds a small laboratory of Linux network namespaces for
// end-to-end tests and benchmarks: a "switch" namespace holding a bridge, N
// router namespaces and one client namespace, each plugged into the bridge
// with a veth pair, with fixed addresses and MACs so that neighbour tables can
// be asserted on.
//
// It also holds the few tools such a lab needs: running a process inside a
// namespace (in its own process group, so that a SIGKILL is a real crash),
// opening sockets from inside a namespace without a helper process, a tiny
// HTTP responder that answers with its router's name, and a prober that opens
// a new TCP connection every few milliseconds and records who answered.
//
// A Lab never touches the root network namespace: veths are created with both
// ends inside lab namespaces, and namespace names carry a per-lab random
// prefix so that parallel runs do not collide. Close removes everything the
// lab created, even after a failed test.
//
// Everything here needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); use
// SkipUnlessRoot in tests.
package netlab
