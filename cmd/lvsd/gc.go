package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// gcHeadroom is the least the heap may grow past the live heap before
// the next collection, and gcMaxHeadroom the most. gcPercent (400) gives
// the least on the small heap of a small table; on the heap of a large
// one 400 would let the heap, and lvsd's resident memory, grow to five
// times what is live. tuneGC lowers GOGC as the live heap grows: the
// headroom is the live heap itself (GOGC 100, Go's default) from
// gcHeadroom, and at most gcMaxHeadroom: with the ipvs dataplane at
// 100,000 real servers the live heap is 60-95 MB, and Go's default
// doubled it into a director's resident memory (about 190 MB, against
// 171-176 with the cap, for 1.4 times the collections). GOGC never goes
// below gcMinPercent, so a far larger heap is not collected over and
// over.
const (
	gcHeadroom    = 16 << 20
	gcMaxHeadroom = 64 << 20
	gcMinPercent  = 50
)

// gcPercentFor is the GOGC that gives a live heap of live bytes a
// headroom of live, within gcHeadroom and gcMaxHeadroom, GOGC within
// gcMinPercent and gcPercent.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return gcPercent
	}
	headroom := min(max(live, gcHeadroom), gcMaxHeadroom)
	return int(min(max(100*headroom/live, gcMinPercent), gcPercent))
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
