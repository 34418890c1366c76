// Package migrate converts between shoal's configuration (shoalv1.Config) and
// the files of the tools shoal replaces: Piranha's lvs.cf, keepalived.conf and
// the rule format of ipvsadm-save -n.
//
// Importing must lose nothing silently. Every key of the source file is either
// mapped onto the model, or reported as a Note saying why it is not imported
// and what replaces it in a Raft cluster (the two-node heartbeat of pulse,
// VRRP, rsh). Unknown keys and malformed lines are errors naming the file and
// line unless Options.Lenient turns them into warnings.
//
// Exporting writes what the format can express and returns a Note for every
// setting it cannot. For any file that imports cleanly, import → export →
// import gives back the same configuration (the fuzz tests check this).
//
// The package is pure apart from keepalived's include, which reads files
// through Options.ReadFile; it never talks to a cluster. cmd/lvsctl merges an
// import with the cluster's configuration (Result.Merge) and applies it.
package migrate
