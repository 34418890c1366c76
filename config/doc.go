// Package config holds the pure rules of shoal's configuration model
// (shoalv1.Config): the defaults Normalize fills in, the constraints Validate
// checks, and the Diff between two configurations.
//
// The same functions serve the API (early, friendly errors and dry runs) and the
// Raft state machine (the last word), so a configuration is judged the same way
// on every node. Admit holds the rules added since configurations were first
// committed (addresses that cannot work): the API and the importers apply
// them to what a change adds, the state machine does not, so that a log
// written before them replays to the same state. The package must never do I/O, read the clock, or depend on
// anything but the generated model: it is called from inside the FSM.
package config
