// Package pki is the cluster's public key infrastructure: the cluster CA
// shoal makes at the first bootstrap, the node and client certificates it
// signs, the roles those certificates carry, join tokens, and the TLS
// configurations that lvsd, lvsctl and every other client build from them.
//
// # Certificates
//
// Every certificate names what it may do in a URI SAN, so that nothing
// depends on host names: a node certificate carries shoal://node/<id> and is
// good for TLS servers and clients (the API, Raft, the liveness watch); a
// client certificate carries shoal://role/<viewer|operator|admin> and is good
// for TLS clients only. Keys are ECDSA P-256. The CA's identity is the
// SHA-256 of its public key (Fingerprint), which join tokens pin as kubeadm's
// discovery hashes do.
//
// # Joining
//
// A router without a certificate proves that it holds a join token's secret
// with an HMAC over its certificate request, and the answering node proves
// the same over its answer (JoinRequestMAC, JoinResponseMAC), so that neither
// side trusts the TLS session they run in: a relay in the middle learns
// nothing it can use, since the new node's private key never leaves it. The
// answer's MAC covers the cluster ID too, which the new node then shows on
// every Raft connection.
//
// # Never
//
// This package never logs, and no error it returns carries a secret or a
// private key. It knows nothing of Raft or of the API's methods: the server
// maps methods to roles.
package pki
