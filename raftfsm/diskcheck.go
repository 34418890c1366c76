package raftfsm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"
)

// A data directory damaged on disk must stop a node with an error that
// says which file and what is wrong, before raft reads it: bbolt panics,
// or takes a fault, on a page it cannot make sense of, and raft panics on
// a log entry it cannot read, both in raft's own goroutines where nothing
// can recover. checkDataDir therefore reads everything raft will read, in
// the caller's goroutine, with faults turned into panics and recovered.

const (
	raftDBFile   = "raft.db"
	snapshotsDir = "snapshots"
	// snapshotRetain is how many snapshots raft's file store keeps.
	snapshotRetain = 2
	// boltOpenTimeout bounds the wait for raft.db's lock: another process
	// that holds it is another lvsd on the same data dir, or a tool.
	boltOpenTimeout = time.Second
)

// DataDirError is a data directory raft cannot safely start from.
type DataDirError struct {
	// File is the file or directory at fault; Problem says what is wrong.
	File, Problem string
	// Lost says that state this node had acknowledged is gone, so it must
	// come from the other members or a backup; false for a fault that
	// leaves the data intact (a lock held by another process).
	Lost bool
}

func (e *DataDirError) Error() string { return e.File + ": " + e.Problem }

// IsDiskFull reports whether err is a write that found no space (ENOSPC)
// or no quota (EDQUOT) left.
func IsDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// guard runs f with memory faults turned into panics, and any panic into
// an error: bbolt reads its file through a memory map, so a page past the
// end of a truncated file is a SIGBUS, not an error.
func guard(f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return f()
}

// logSpan is what raft.db holds of the log: the first and last index, 0
// for none.
type logSpan struct{ first, last uint64 }

// checkDataDir checks raft.db and the snapshots under dir and returns the
// first problem that would make raft fail, panic or start from less than
// this node had; a snapshot that raft would skip at no loss is logged.
func checkDataDir(dir string, log *slog.Logger) error {
	db := filepath.Join(dir, raftDBFile)
	st, err := os.Stat(db)
	empty := errors.Is(err, os.ErrNotExist) || err == nil && st.Size() == 0
	if err != nil && !empty {
		return &DataDirError{File: db, Problem: err.Error()}
	}
	snaps, err := readSnapshots(filepath.Join(dir, snapshotsDir))
	if err != nil {
		return err
	}
	if empty {
		// bbolt makes a new, empty store of a missing or empty file: a
		// node that lost its log would start over, with term 0 and no
		// vote, as if it had never acknowledged anything.
		if len(snaps) > 0 || fileExists(filepath.Join(dir, ClusterIDFile)) {
			what := "is missing"
			if st != nil {
				what = "is empty (0 bytes)"
			}
			return &DataDirError{File: db, Lost: true, Problem: what + ", but the data dir has been used (it holds " +
				strings.Join(usedBy(dir, snaps), " and ") + "): raft's log, term and vote are gone"}
		}
		return nil
	}
	span, err := checkBoltFile(db, st.Size(), log)
	if err != nil {
		return err
	}
	return checkSnapshots(dir, snaps, span, log)
}

func usedBy(dir string, snaps []snapshotFile) []string {
	var what []string
	if len(snaps) > 0 {
		what = append(what, fmt.Sprintf("%d snapshot(s) in %s", len(snaps), filepath.Join(dir, snapshotsDir)))
	}
	if fileExists(filepath.Join(dir, ClusterIDFile)) {
		what = append(what, ClusterIDFile)
	}
	return what
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// checkBoltFile reads every page of raft.db that raft will read, decodes
// every log entry, and runs bbolt's own consistency check.
func checkBoltFile(path string, size int64, log *slog.Logger) (span logSpan, err error) {
	damaged := func(format string, args ...any) (logSpan, error) {
		return logSpan{}, &DataDirError{File: path, Lost: true, Problem: "damaged: " + fmt.Sprintf(format, args...)}
	}
	// Read-only first: it does not load the free list, so a file cut
	// short is found by its size before bbolt touches a page past its end.
	var db *bbolt.DB
	err = guard(func() error {
		var err error
		db, err = bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: boltOpenTimeout})
		return err
	})
	switch {
	case errors.Is(err, bbolt.ErrTimeout):
		return logSpan{}, &DataDirError{File: path, Problem: "in use by another process (an lvsd running on this data dir? stop lvsd first)"}
	case err != nil:
		return damaged("%v", err)
	}
	var want int64
	err = guard(func() error {
		return db.View(func(tx *bbolt.Tx) error {
			want = tx.Size()
			return nil
		})
	})
	db.Close()
	if err != nil {
		return damaged("%v", err)
	}
	if size < want {
		return damaged("truncated: %d bytes, but its last transaction needs %d", size, want)
	}

	start := time.Now()
	err = guard(func() error {
		// Read-write, as raft will open it: that loads the free list here.
		db, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: boltOpenTimeout})
		return err
	})
	switch {
	case errors.Is(err, bbolt.ErrTimeout):
		return logSpan{}, &DataDirError{File: path, Problem: "in use by another process (an lvsd running on this data dir? stop lvsd first)"}
	case IsDiskFull(err):
		return logSpan{}, &DataDirError{File: path, Problem: err.Error()}
	case err != nil:
		return damaged("%v", err)
	}
	defer db.Close()
	var entries uint64
	err = guard(func() error {
		return db.View(func(tx *bbolt.Tx) error {
			return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
				return b.ForEach(func(k, v []byte) error {
					if string(name) != "logs" {
						return nil
					}
					if len(k) != 8 {
						return fmt.Errorf("log entry key of %d bytes", len(k))
					}
					idx := binary.BigEndian.Uint64(k)
					var l raft.Log
					if err := codec.NewDecoder(bytes.NewReader(v), &codec.MsgpackHandle{}).Decode(&l); err != nil {
						return fmt.Errorf("log entry %d: %w", idx, err)
					}
					if l.Index != idx {
						return fmt.Errorf("log entry %d holds index %d", idx, l.Index)
					}
					if span.first == 0 {
						span.first = idx
					}
					span.last = idx
					entries++
					return nil
				})
			})
		})
	})
	if err != nil {
		return damaged("unreadable: %v", err)
	}
	if entries > 0 && span.last-span.first+1 != entries {
		return damaged("the log from %d to %d misses %d entries", span.first, span.last, span.last-span.first+1-entries)
	}
	var problems, leaks []string
	err = guard(func() error {
		return db.View(func(tx *bbolt.Tx) error {
			for err := range tx.Check() {
				// A page neither used nor free is space lost, no more.
				if strings.Contains(err.Error(), "unreachable unfreed") {
					leaks = append(leaks, err.Error())
				} else if len(problems) < 5 {
					problems = append(problems, err.Error())
				}
			}
			return nil
		})
	})
	if err == nil && len(problems) > 0 {
		err = errors.New(strings.Join(problems, "; "))
	}
	if err != nil {
		return damaged("%v", err)
	}
	if len(leaks) > 0 {
		log.Warn("raft.db has pages neither used nor free: space lost, the data is whole", "file", path, "pages", len(leaks))
	}
	log.Debug("checked raft.db", "file", path, "bytes", size, "entries", entries, "took", time.Since(start))
	return span, nil
}

// snapshotFile is one snapshot directory as raft's file store lays it out:
// <term>-<index>-<msec>/ with meta.json and state.bin.
type snapshotFile struct {
	dir         string
	term, index uint64
	// file and problem say why raft cannot restore it (meta.json or
	// state.bin, and what is wrong); "" for a whole one.
	file, problem string
	// meta is whether raft lists it at all: it skips, unsaid, a snapshot
	// whose meta.json it cannot read.
	meta bool
}

// readSnapshots lists the snapshots in dir (<data-dir>/snapshots), newest
// first, and finds out which of them raft could not restore.
func readSnapshots(dir string) ([]snapshotFile, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &DataDirError{File: dir, Problem: err.Error()}
	}
	var snaps []snapshotFile
	for _, e := range ents {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		s := snapshotFile{dir: filepath.Join(dir, e.Name())}
		parts := strings.Split(e.Name(), "-")
		if len(parts) == 3 {
			s.term, _ = strconv.ParseUint(parts[0], 10, 64)
			s.index, _ = strconv.ParseUint(parts[1], 10, 64)
		}
		s.file, s.problem = checkSnapshot(&s)
		snaps = append(snaps, s)
	}
	slices.SortFunc(snaps, func(a, b snapshotFile) int {
		if a.term != b.term {
			return cmpUint(b.term, a.term)
		}
		if a.index != b.index {
			return cmpUint(b.index, a.index)
		}
		return strings.Compare(b.dir, a.dir)
	})
	return snaps, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// checkSnapshot reads a snapshot as raft's file store will (meta.json,
// then state.bin against the size and CRC it records) and says which file
// is wrong, and how.
func checkSnapshot(s *snapshotFile) (file, problem string) {
	b, err := os.ReadFile(filepath.Join(s.dir, "meta.json"))
	if err != nil {
		return "meta.json", errText(err)
	}
	var meta struct {
		raft.SnapshotMeta
		CRC []byte
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return "meta.json", "unreadable: " + err.Error()
	}
	s.meta = true
	s.term, s.index = meta.Term, meta.Index
	f, err := os.Open(filepath.Join(s.dir, "state.bin"))
	if err != nil {
		return "state.bin", errText(err)
	}
	defer f.Close()
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	n, err := io.Copy(h, f)
	switch {
	case err != nil:
		return "state.bin", err.Error()
	case n != meta.Size:
		return "state.bin", fmt.Sprintf("%d bytes, meta.json says %d", n, meta.Size)
	case !bytes.Equal(h.Sum(nil), meta.CRC):
		return "state.bin", "its checksum does not match meta.json's"
	}
	return "", ""
}

func errText(err error) string {
	if errors.Is(err, os.ErrNotExist) {
		return "missing"
	}
	return err.Error()
}

// checkSnapshots makes sure that raft can rebuild everything this node
// had: from the newest snapshot it can restore, plus the log after it.
// A damaged snapshot is no loss while an older one and the log, or the
// log alone, still hold everything it did: it is moved aside, to
// <dir>/snapshots.damaged, since raft fails to start when it can restore
// none of the snapshots it lists, although the log would do.
func checkSnapshots(dir string, snaps []snapshotFile, span logSpan, log *slog.Logger) error {
	var whole *snapshotFile
	var broken []snapshotFile
	listed := 0 // raft tries only the newest snapshotRetain it can list
	for i := range snaps {
		if snaps[i].problem == "" && listed < snapshotRetain {
			whole = &snaps[i]
			break
		}
		if snaps[i].meta {
			listed++
		}
		broken = append(broken, snaps[i])
	}
	base := uint64(0) // the index raft restores to
	if whole != nil {
		base = whole.index
	}
	// Everything this node had: the newest snapshot's index (even a
	// broken one's, by its name) or the log's end.
	had := span.last
	for _, s := range snaps {
		had = max(had, s.index)
	}
	// What raft can rebuild: the snapshot, then the log if it follows on.
	reach := base
	if span.first != 0 && span.first <= base+1 {
		reach = max(reach, span.last)
	}
	if reach < had || span.first > base+1 {
		if len(broken) > 0 {
			b := broken[0]
			return &DataDirError{File: filepath.Join(b.dir, b.file), Lost: true,
				Problem: fmt.Sprintf("%s; the snapshot held the state up to index %d, and the log (%s) and older snapshots do not reach it",
					b.problem, b.index, spanText(span))}
		}
		return &DataDirError{File: filepath.Join(dir, raftDBFile), Lost: true,
			Problem: fmt.Sprintf("the log (%s) does not follow on from the newest snapshot (index %d): entries are missing", spanText(span), base)}
	}
	aside := filepath.Join(dir, snapshotsDir+".damaged")
	for _, b := range broken {
		to := filepath.Join(aside, filepath.Base(b.dir))
		err := os.MkdirAll(aside, 0o700)
		if err == nil {
			err = os.Rename(b.dir, to)
		}
		if err != nil {
			return &DataDirError{File: b.dir, Problem: fmt.Sprintf("%s: %s; moving it aside to %s: %v", b.file, b.problem, aside, err)}
		}
		log.Warn("moved a damaged snapshot aside: the log and the snapshots left hold everything it had",
			"snapshot", b.dir, "file", b.file, "problem", b.problem, "to", to, "restores_to", base, "log", spanText(span))
	}
	return nil
}

func spanText(s logSpan) string {
	if s.first == 0 {
		return "empty"
	}
	return fmt.Sprintf("entries %d to %d", s.first, s.last)
}

// HasState reports whether dataDir holds raft state: a snapshot, a term or
// a log entry. It does not check the files (Open does).
func HasState(dataDir string) (bool, error) {
	snaps, err := readSnapshots(filepath.Join(dataDir, snapshotsDir))
	if err != nil || len(snaps) > 0 {
		return len(snaps) > 0, err
	}
	path := filepath.Join(dataDir, raftDBFile)
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) || err == nil && st.Size() == 0 {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	found := false
	err = guard(func() error {
		db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: boltOpenTimeout})
		if err != nil {
			return err
		}
		defer db.Close()
		return db.View(func(tx *bbolt.Tx) error {
			if b := tx.Bucket([]byte("conf")); b != nil && len(b.Get([]byte("CurrentTerm"))) > 0 {
				found = true
			}
			if b := tx.Bucket([]byte("logs")); b != nil {
				if k, _ := b.Cursor().First(); k != nil {
					found = true
				}
			}
			return nil
		})
	})
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return found, nil
}
