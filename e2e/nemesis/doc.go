// Package nemesis is a Jepsen-style test of shoal: real lvsd processes in
// the network-namespace lab (e2e/netlab), a workload of concurrent API
// clients, a random schedule of faults (crashes, pauses, partitions, slow
// disks, a member removed and added back), and checks of the whole history
// once the faults are healed.
//
// The configuration is modelled as one register of (serial, weight): the
// weight of one real server, which every write sets to a value no other
// write uses, and the serial that grows by one per committed change.
// Porcupine checks that the acknowledged and indeterminate operations are
// linearizable; the configuration history (ListHistory), read as the run
// goes, must hold every acknowledged write; stale reads are checked against
// what had been written by their end; every node must end with the same
// configuration; and a client must never see two routers answer for the VIP,
// apart from the stale address of a daemon that was killed or paused.
//
// TestNemesis needs root (namespaces, nftables); it skips without. The
// package's non-test files hold the model, the history and the checks, so
// that recorded histories (testdata/) can be checked again without a lab.
package nemesis
