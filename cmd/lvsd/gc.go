package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// gcHeadroom is the least the heap may grow past the live heap before
// the next collection. gcPercent (400) gives it on the small heap of a
// small table; on the heap of a large one (80 MB at 100,000 real servers)
// 400 would let the heap, and lvsd's resident memory, grow to five times
// what is live. tuneGC lowers GOGC as the live heap grows: the headroom
// is then the live heap itself (GOGC 100, Go's default) once that is
// more than gcHeadroom.
const gcHeadroom = 16 << 20

// gcPercentFor is the GOGC that gives a live heap of live bytes a
// headroom of max(live, gcHeadroom), between 100 and gcPercent.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return gcPercent
	}
	return int(min(max(100*gcHeadroom/live, 100), gcPercent))
}

// tuneGC sets GOGC from the live heap after every collection until ctx
// ends: a table applied whole grows the heap within a second, and a
// slower look would let it grow to five times the new live heap first.
// Call it only when the environment sets no GOGC.
func tuneGC(ctx context.Context) {
	cycles := make(chan struct{}, 1)
	var arm func()
	arm = func() {
		// A cleanup of an object nothing refers to runs after the next
		// collection; it arms the next one. The pointer keeps the object
		// out of the tiny allocator, whose blocks may never be freed alone.
		runtime.AddCleanup(&gcCycle{}, func(struct{}) {
			select {
			case cycles <- struct{}{}:
			default:
			}
			if ctx.Err() == nil {
				arm()
			}
		}, struct{}{})
	}
	arm()
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	current := gcPercent
	for {
		select {
		case <-ctx.Done():
			return
		case <-cycles:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return // not this Go runtime's metric: keep gcPercent
		}
		// Moves of less than a tenth are noise from one cycle to the next.
		if want := gcPercentFor(sample[0].Value.Uint64()); want*10 < current*9 || want*10 > current*11 {
			debug.SetGCPercent(want)
			current = want
		}
	}
}

// gcCycle is the object whose cleanup tells tuneGC of a collection.
type gcCycle struct {
	_ *byte
	_ [16]byte
}
