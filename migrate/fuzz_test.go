package migrate

import (
	"errors"
	"os"
	"testing"

	"google.golang.org/protobuf/proto"
)

// noFiles keeps fuzzing away from the file system: includes fail.
func noFiles(o Options) Options {
	o.ReadFile = func(string) ([]byte, error) { return nil, errors.New("no files while fuzzing") }
	o.Glob = func(string) ([]string, error) { return nil, nil }
	return o
}

func seed(f *testing.F, paths ...string) {
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

// roundTrip is the property every format must hold: the importer never
// panics, and a file that imports cleanly exports to a file that imports to
// the very same configuration.
func roundTrip(t *testing.T, format Format, data []byte) {
	r, err := Import(data, noFiles(Options{Format: format}))
	if err != nil {
		return
	}
	out, _, err := Export(r.Config, format)
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	again, err := Import(out, noFiles(Options{Format: format}))
	if err != nil {
		t.Fatalf("re-import failed: %v\ninput:\n%q\nexport:\n%s", err, data, out)
	}
	if !proto.Equal(r.Config, again.Config) {
		t.Fatalf("round trip changed the config\ninput:\n%q\nfirst:\n%s\nagain:\n%s\nexport:\n%s",
			data, mustYAML(t, r.Config), mustYAML(t, again.Config), out)
	}
	// Lenient imports must not panic either.
	_, _ = Import(data, noFiles(Options{Format: format, Lenient: true}))
}

func FuzzLVSCF(f *testing.F) {
	seed(f, "testdata/nat.lvs.cf", "testdata/dr.lvs.cf")
	f.Add([]byte("virtual v {\n address = 192.0.2.1\n port = 80\n send = \"a\\\"b\\\\c\\r\\n\"\n}\n"))
	f.Fuzz(func(t *testing.T, data []byte) { roundTrip(t, FormatLVSCF, data) })
}

func FuzzKeepalived(f *testing.F) {
	seed(f, "testdata/nat.keepalived.conf", "testdata/dr.keepalived.conf", "testdata/conf.d/dns.conf")
	f.Fuzz(func(t *testing.T, data []byte) { roundTrip(t, FormatKeepalived, data) })
}

func FuzzIPVSADM(f *testing.F) {
	seed(f, "testdata/rules.ipvsadm")
	f.Fuzz(func(t *testing.T, data []byte) { roundTrip(t, FormatIPVSADM, data) })
}
