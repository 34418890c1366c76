//go:build race

package dataplane

// raceEnabled says the race detector is on: its instrumentation moves
// values to the heap, so a count of allocations does not hold under it.
const raceEnabled = true
