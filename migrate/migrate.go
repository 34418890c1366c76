package migrate

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/shoal-lb/shoal/config"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// Format names a file format migrate reads or writes.
type Format string

const (
	// FormatLVSCF is Piranha 0.8.x's /etc/sysconfig/ha/lvs.cf.
	FormatLVSCF Format = "lvs.cf"
	// FormatKeepalived is keepalived.conf (virtual_server and vrrp_instance).
	FormatKeepalived Format = "keepalived"
	// FormatIPVSADM is the rule format of ipvsadm-save -n.
	FormatIPVSADM Format = "ipvsadm"
)

// Formats lists every format, for flag help and errors.
var Formats = []Format{FormatLVSCF, FormatKeepalived, FormatIPVSADM}

// ParseFormat accepts a format name and its usual spellings.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "lvs.cf", "lvscf", "lvs", "piranha":
		return FormatLVSCF, nil
	case "keepalived", "keepalived.conf":
		return FormatKeepalived, nil
	case "ipvsadm", "ipvsadm-save":
		return FormatIPVSADM, nil
	}
	return "", fmt.Errorf("unknown format %q: use lvs.cf, keepalived or ipvsadm", s)
}

// Detect guesses the format of a file from its first meaningful words: lvs.cf
// is "key = value" with virtual blocks, keepalived.conf is "keyword value" with
// virtual_server or vrrp_instance blocks, ipvsadm-save lines start with -A/-a.
func Detect(data []byte) (Format, error) {
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		f := strings.Fields(line)
		switch {
		case f[0] == "-A" || f[0] == "-a" || f[0] == "-C":
			return FormatIPVSADM, nil
		case f[0] == "virtual_server" || f[0] == "vrrp_instance" || f[0] == "global_defs" ||
			kaIsInclude(line) || f[0] == "virtual_server_group" || f[0] == "vrrp_sync_group" ||
			f[0] == "vrrp_script" || f[0] == "real_server":
			return FormatKeepalived, nil
		case strings.Contains(line, "="):
			return FormatLVSCF, nil
		case f[0] == "virtual" || f[0] == "server":
			return FormatLVSCF, nil
		}
	}
	return "", errors.New("cannot tell the format of the file: give --format lvs.cf, keepalived or ipvsadm")
}

// Options tune an import.
type Options struct {
	// Format of the input; empty detects it.
	Format Format
	// Lenient turns unknown keys and malformed lines into warnings: the line
	// is skipped and reported in Result.Warnings instead of failing.
	Lenient bool
	// Filename names the input in messages and anchors keepalived's relative
	// include patterns.
	Filename string
	// ReadFile and Glob resolve keepalived's include; nil means the real file
	// system.
	ReadFile func(name string) ([]byte, error)
	Glob     func(pattern string) ([]string, error)
}

// Note is one line of an import or export report: a setting that was not
// carried over, or was approximated, and why.
type Note struct {
	File string
	Line int
	// Key is the key or block the note is about, e.g. "primary".
	Key  string
	Text string
}

func (n Note) String() string {
	var b strings.Builder
	if n.File != "" {
		b.WriteString(n.File)
		b.WriteByte(':')
	}
	if n.Line > 0 {
		fmt.Fprintf(&b, "%d:", n.Line)
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if n.Key != "" {
		b.WriteString(n.Key)
		b.WriteString(": ")
	}
	b.WriteString(n.Text)
	return b.String()
}

// LineError is one problem of an input file.
type LineError struct {
	File string
	Line int
	Msg  string
}

func (e LineError) Error() string {
	return Note{File: e.File, Line: e.Line, Text: e.Msg}.String()
}

// Errors lists every problem found in an input file, in line order.
type Errors []LineError

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Result is an imported configuration and the report that goes with it.
type Result struct {
	Format Format
	// Config is normalised and valid. Its Global holds only what the file
	// describes; see GlobalSet and Merge.
	Config *shoalv1.Config
	// GlobalSet names the fields of Config.Global (proto names) the file
	// set; Merge takes those from the file and the rest from the cluster.
	GlobalSet []string
	// Notes are the settings not imported, or approximated, and why.
	Notes []Note
	// Warnings are problems skipped because of Options.Lenient.
	Warnings []Note
}

// Merge builds the configuration to apply to a cluster whose configuration is
// current: the file's services replace the cluster's whole service list (as
// lvs.cf was a Piranha router's whole configuration), the global settings the
// file sets replace the cluster's, and the global settings the file does not
// describe (GARP tuning, and anything the file leaves out) are kept.
func (r *Result) Merge(current *shoalv1.Config) *shoalv1.Config {
	out := &shoalv1.Config{Serial: current.GetSerial()}
	g := proto.Clone(current.GetGlobal()).(*shoalv1.Global)
	if g == nil {
		g = &shoalv1.Global{}
	}
	src := r.Config.GetGlobal().ProtoReflect()
	dst := g.ProtoReflect()
	fields := dst.Descriptor().Fields()
	for _, name := range r.GlobalSet {
		fd := fields.ByName(protoreflect.Name(name))
		if fd == nil {
			continue
		}
		if src.Has(fd) {
			dst.Set(fd, src.Get(fd))
		} else {
			dst.Clear(fd)
		}
	}
	out.Global = g
	for _, s := range r.Config.GetServices() {
		out.Services = append(out.Services, proto.Clone(s).(*shoalv1.VirtualService))
	}
	return out
}

// ImportFile reads and imports a file; keepalived includes are resolved
// relative to its directory.
func ImportFile(path string, o Options) (*Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if o.Filename == "" {
		o.Filename = path
	}
	return Import(data, o)
}

// Import converts a file to a normalised, valid shoal configuration. The
// error is an Errors value naming every bad line, or a config.Errors
// translated to lines where the field can be traced back.
func Import(data []byte, o Options) (*Result, error) {
	f := o.Format
	if f == "" {
		var err error
		if f, err = Detect(data); err != nil {
			return nil, err
		}
	}
	if o.ReadFile == nil {
		o.ReadFile = os.ReadFile
	}
	if o.Glob == nil {
		o.Glob = filepath.Glob
	}
	im := &importer{opt: o, file: o.Filename, lines: map[string]linePos{}, res: &Result{Format: f}}
	var c *shoalv1.Config
	switch f {
	case FormatLVSCF:
		c = im.lvscf(data)
	case FormatKeepalived:
		c = im.keepalived(data)
	case FormatIPVSADM:
		c = im.ipvsadm(data)
	default:
		return nil, fmt.Errorf("import: unknown format %q", f)
	}
	if len(im.errs) > 0 {
		return nil, im.errs.sorted()
	}
	config.Normalize(c)
	// The file is judged as the API judges a write: Validate, and Admit's
	// refusal of addresses that cannot work (a loopback VIP, a multicast
	// real server), all reported at once.
	for _, err := range []error{config.Validate(c), config.Admit(nil, c)} {
		if err == nil {
			continue
		}
		var fe config.Errors
		if !errors.As(err, &fe) {
			return nil, fmt.Errorf("import: %w", err)
		}
		for _, e := range fe {
			at := im.lineOf(e.Field)
			im.errs = append(im.errs, LineError{File: at.file, Line: at.line, Msg: e.Error()})
		}
	}
	if len(im.errs) > 0 {
		return nil, im.errs.sorted()
	}
	im.res.Config = c
	sort.Strings(im.res.GlobalSet)
	sort.SliceStable(im.res.Notes, func(i, j int) bool {
		a, b := im.res.Notes[i], im.res.Notes[j]
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Line < b.Line
	})
	// A block read more than once (a virtual_server of a group) says the
	// same thing each time: once is enough.
	seen := map[Note]bool{}
	notes := im.res.Notes[:0]
	for _, n := range im.res.Notes {
		if !seen[n] {
			seen[n] = true
			notes = append(notes, n)
		}
	}
	im.res.Notes = notes
	return im.res, nil
}

// importer carries what every format's parser shares: the report, the
// errors, and where each model field came from so that a validation error
// can name the line.
type importer struct {
	opt   Options
	file  string
	errs  Errors
	lines map[string]linePos // field path (as config.FieldError spells it) → where it was set
	res   *Result
	// kaHooks are the keepalived notify scripts read so far, merged into
	// global.hooks once the whole file is read.
	kaHooks []kaHookAt
}

func (im *importer) errorf(line int, format string, a ...any) {
	im.errs = append(im.errs, LineError{File: im.file, Line: line, Msg: fmt.Sprintf(format, a...)})
}

// strictf is a problem that --lenient turns into a warning.
func (im *importer) strictf(line int, format string, a ...any) {
	if im.opt.Lenient {
		im.res.Warnings = append(im.res.Warnings, Note{File: im.file, Line: line, Text: fmt.Sprintf(format, a...) + " (skipped: --lenient)"})
		return
	}
	im.errorf(line, format, a...)
}

func (im *importer) note(line int, key, format string, a ...any) {
	im.res.Notes = append(im.res.Notes, Note{File: im.file, Line: line, Key: key, Text: fmt.Sprintf(format, a...)})
}

func (im *importer) setGlobal(name string) {
	for _, n := range im.res.GlobalSet {
		if n == name {
			return
		}
	}
	im.res.GlobalSet = append(im.res.GlobalSet, name)
}

type linePos struct {
	file string
	line int
}

func (im *importer) mark(path string, line int) { im.markAt(path, im.file, line) }

func (im *importer) markAt(path, file string, line int) {
	if _, ok := im.lines[path]; !ok {
		im.lines[path] = linePos{file, line}
	}
}

// lineOf finds the line of a field path, walking up to its parents:
// services[web].real_servers[10.0.0.1:80].weight, then
// services[web].real_servers[10.0.0.1:80], then services[web].
func (im *importer) lineOf(path string) linePos {
	for path != "" {
		if l, ok := im.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i <= 0 {
			break
		}
		path = path[:i]
	}
	return linePos{file: im.file}
}

func (es Errors) sorted() Errors {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].File != es[j].File {
			return es[i].File < es[j].File
		}
		return es[i].Line < es[j].Line
	})
	return es
}

func servicePath(name string) string { return "services[" + name + "]" }

func realServerPath(s *shoalv1.VirtualService, rs *shoalv1.RealServer) string {
	return servicePath(s.GetName()) + ".real_servers[" + hostPort(rs.GetAddress(), config.RealServerPort(s, rs)) + "]"
}

// Export writes c in format f and returns a Note for everything the format
// cannot express.
func Export(c *shoalv1.Config, f Format) ([]byte, []Note, error) {
	c = proto.Clone(c).(*shoalv1.Config)
	config.Normalize(c)
	ex := &exporter{}
	switch f {
	case FormatLVSCF:
		ex.lvscf(c)
	case FormatKeepalived:
		ex.keepalived(c)
	case FormatIPVSADM:
		ex.ipvsadm(c)
	default:
		return nil, nil, fmt.Errorf("export: unknown format %q", f)
	}
	return ex.buf.Bytes(), ex.notes, nil
}

type exporter struct {
	buf   bytes.Buffer
	notes []Note
}

func (ex *exporter) printf(format string, a ...any) { fmt.Fprintf(&ex.buf, format, a...) }

func (ex *exporter) note(key, format string, a ...any) {
	ex.notes = append(ex.notes, Note{Key: key, Text: fmt.Sprintf(format, a...)})
}
