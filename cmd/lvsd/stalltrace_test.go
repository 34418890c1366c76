package main

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A stall writes one runtime trace, later than the event, and a second
// stall within stallTraceEvery writes none; the oldest files go first.
func TestStallTracer(t *testing.T) {
	dir := t.TempDir()
	s, err := startStallTracer(dir, "r1", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.keep = 2
	start := time.Now()
	s.stalled("fence-lapse")
	s.stalled("leader-silent")
	files := waitTraces(t, dir, 1)
	if d := time.Since(start); d < stallTraceAfter {
		t.Errorf("trace written %v after the stall, want at least %v of what followed", d, stallTraceAfter)
	}
	if !strings.HasPrefix(filepath.Base(files[0]), "r1-") || !strings.HasSuffix(files[0], "-fence-lapse.trace") {
		t.Errorf("file %s: want r1-<time>-fence-lapse.trace", files[0])
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("go 1.")) {
		t.Errorf("file %s does not start like a Go execution trace: %q", files[0], b[:min(len(b), 16)])
	}

	for range 2 {
		s.mu.Lock()
		s.next = time.Time{} // past the rate limit
		s.mu.Unlock()
		time.Sleep(2 * time.Millisecond) // distinct names, which carry milliseconds
		s.stalled("leader-silent")
		// The rate limit, bypassed here, is what keeps two files from
		// being written at once; the flight recorder refuses a second
		// concurrent WriteTo.
		s.wg.Wait()
	}
	s.stop()
	if got, _ := filepath.Glob(filepath.Join(dir, "*.trace")); len(got) != 2 || got[0] == files[0] {
		t.Errorf("after 3 traces with keep 2: %v, want the 2 newest", got)
	}
	s.stalled("fence-lapse") // after stop: ignored, and must not panic
}

func waitTraces(t *testing.T, dir string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := filepath.Glob(filepath.Join(dir, "*.trace"))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) >= n {
			// A second one would have come with the first.
			time.Sleep(2 * stallTraceAfter)
			got, _ = filepath.Glob(filepath.Join(dir, "*.trace"))
			if len(got) != n {
				t.Fatalf("traces %v, want %d", got, n)
			}
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("no trace in %s after 5s", dir)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
