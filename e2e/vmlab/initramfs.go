package vmlab

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// Initramfs is an in-memory list of files packed as a gzipped newc cpio
// archive, the format the kernel unpacks into its root filesystem. Writing it
// here rather than calling cpio(1) keeps the host requirements to qemu and apt.
type Initramfs struct {
	entries map[string]entry
}

type entry struct {
	mode uint32 // type and permission bits as cpio stores them
	data []byte // file contents or symlink target
	src  string // host file to read at write time instead of data
}

const (
	cpioDir  = 0o040000
	cpioFile = 0o100000
	cpioLink = 0o120000
)

// NewInitramfs returns an empty archive.
func NewInitramfs() *Initramfs { return &Initramfs{entries: map[string]entry{}} }

// File adds a file with the given contents and permission bits, creating its
// parent directories.
func (r *Initramfs) File(name string, data []byte, perm os.FileMode) {
	r.parents(name)
	r.entries[clean(name)] = entry{mode: cpioFile | uint32(perm.Perm()), data: data}
}

// HostFile adds the host file src as name; it is read when the archive is
// written, so large binaries are not held twice.
func (r *Initramfs) HostFile(name, src string, perm os.FileMode) {
	r.parents(name)
	r.entries[clean(name)] = entry{mode: cpioFile | uint32(perm.Perm()), src: src}
}

// Symlink adds name pointing at target.
func (r *Initramfs) Symlink(name, target string) {
	r.parents(name)
	r.entries[clean(name)] = entry{mode: cpioLink | 0o777, data: []byte(target)}
}

// Dir adds an empty directory.
func (r *Initramfs) Dir(name string) {
	r.parents(name)
	r.entries[clean(name)] = entry{mode: cpioDir | 0o755}
}

// parents adds the directories above name: the kernel's unpacker does not
// create missing parents itself.
func (r *Initramfs) parents(name string) {
	for d := path.Dir(clean(name)); d != "." && d != "/" && d != ""; d = path.Dir(d) {
		if _, ok := r.entries[d]; !ok {
			r.entries[d] = entry{mode: cpioDir | 0o755}
		}
	}
}

func clean(name string) string { return strings.TrimPrefix(path.Clean("/"+name), "/") }

// WriteTo writes the gzipped archive. Entries are sorted so that every
// directory precedes its contents.
func (r *Initramfs) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	zw, err := gzip.NewWriterLevel(cw, gzip.BestSpeed)
	if err != nil {
		return 0, err
	}
	names := make([]string, 0, len(r.entries))
	for n := range r.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	ino := uint32(1)
	for _, n := range names {
		e := r.entries[n]
		data := e.data
		if e.src != "" {
			if data, err = os.ReadFile(e.src); err != nil {
				return cw.n, fmt.Errorf("initramfs %s: %w", n, err)
			}
		}
		nlink := uint32(1)
		if e.mode&0o170000 == cpioDir {
			nlink = 2
		}
		if err := writeCPIO(zw, ino, e.mode, nlink, n, data); err != nil {
			return cw.n, err
		}
		ino++
	}
	if err := writeCPIO(zw, 0, 0, 1, "TRAILER!!!", nil); err != nil {
		return cw.n, err
	}
	if err := zw.Close(); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

// writeCPIO writes one newc record: a 110-byte ASCII header, the name with its
// NUL, then the data, each padded to four bytes.
func writeCPIO(w io.Writer, ino, mode, nlink uint32, name string, data []byte) error {
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	buf := make([]byte, 0, len(hdr)+len(name)+8)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = pad4(buf)
	if _, err := w.Write(buf); err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	if n := len(data) % 4; n != 0 {
		if _, err := w.Write(make([]byte, 4-n)); err != nil {
			return err
		}
	}
	return nil
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
