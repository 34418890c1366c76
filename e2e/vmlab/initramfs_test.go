package vmlab

import (
	"bytes"
	"compress/gzip"
	"io"
	"strconv"
	"testing"
)

// TestInitramfsNewc reads the archive back as the kernel would: newc
// headers, names and data padded to four bytes, parents before children.
func TestInitramfsNewc(t *testing.T) {
	r := NewInitramfs()
	r.File("lib/modules/ip_vs.ko", []byte("module!"), 0o644)
	r.File("init", []byte("#!"), 0o755)
	r.Symlink("bin/sh", "busybox")
	r.Dir("proc")
	var buf bytes.Buffer
	if _, err := r.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		mode uint64
		data string
	}
	got := map[string]rec{}
	var order []string
	for off := 0; ; {
		if string(raw[off:off+6]) != "070701" {
			t.Fatalf("bad magic at %d: %q", off, raw[off:off+6])
		}
		field := func(i int) uint64 {
			v, err := strconv.ParseUint(string(raw[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		mode, size, namesize := field(1), int(field(6)), int(field(11))
		name := string(raw[off+110 : off+110+namesize-1])
		off = align4(off + 110 + namesize)
		data := string(raw[off : off+size])
		off = align4(off + size)
		if name == "TRAILER!!!" {
			break
		}
		got[name] = rec{mode, data}
		order = append(order, name)
	}
	for _, tc := range []struct {
		name string
		want rec
	}{
		{"lib", rec{0o040755, ""}},
		{"lib/modules", rec{0o040755, ""}},
		{"lib/modules/ip_vs.ko", rec{0o100644, "module!"}},
		{"init", rec{0o100755, "#!"}},
		{"bin/sh", rec{0o120777, "busybox"}},
		{"proc", rec{0o040755, ""}},
	} {
		if g, ok := got[tc.name]; !ok || g != tc.want {
			t.Errorf("%s: got %+v (present %v), want %+v", tc.name, g, ok, tc.want)
		}
	}
	seen := map[string]bool{}
	for _, n := range order {
		for d := n; ; {
			i := bytes.LastIndexByte([]byte(d), '/')
			if i < 0 {
				break
			}
			d = d[:i]
			if !seen[d] {
				t.Errorf("%s comes before its directory %s", n, d)
			}
		}
		seen[n] = true
	}
}

func align4(n int) int { return (n + 3) &^ 3 }

func TestVersionLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"linux-image-6.1.0-9-cloud-amd64", "linux-image-6.1.0-50-cloud-amd64", true},
		{"linux-image-6.1.0-50-cloud-amd64", "linux-image-6.1.0-9-cloud-amd64", false},
		{"linux-image-6.1.0-56-cloud-amd64", "linux-image-6.12.117+deb12-cloud-amd64", true},
		{"linux-image-6.12.100+deb12-cloud-amd64", "linux-image-6.12.99+deb12-cloud-amd64", false},
	} {
		if got := versionLess(tc.a, tc.b); got != tc.want {
			t.Errorf("versionLess(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
