package docs

import (
	"bufio"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// root is the repository's top directory; go test runs in docs/.
const root = ".."

// TestLinks checks every relative link and anchor of every Markdown file
// in the repository (third_party's and generated directories' aside).
func TestLinks(t *testing.T) {
	files, err := markdownFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 {
		t.Fatalf("found %d Markdown files under %s (%v): the walk is wrong", len(files), root, files)
	}
	for _, f := range files {
		for _, p := range brokenLinks(t, f) {
			t.Error(p)
		}
	}
}

// skipDirs are not the project's own documentation: hidden directories
// (.git, caches), the vendored raft, build outputs.
var skipDirs = map[string]bool{"third_party": true, "bin": true, "dist": true, "testdata": true}

func markdownFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != dir && (strings.HasPrefix(d.Name(), ".") || skipDirs[d.Name()]) {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".md") {
			files = append(files, path)
		}
		return nil
	})
	return files, err
}

// A link: [text](target) or [text](target "title"); an image's ![..](..)
// matches too. A reference definition: [label]: target.
var (
	inlineLink = regexp.MustCompile(`\]\(([^()\s]+)(?:\s+"[^"]*")?\)`)
	refDef     = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s+(\S+)`)
	codeSpan   = regexp.MustCompile("`+[^`]*`+")
)

// brokenLinks lists, as "file:line: ..." messages, the links of file
// whose target file or anchor does not exist.
func brokenLinks(t *testing.T, file string) []string {
	var problems []string
	for _, l := range links(t, file) {
		u, err := url.Parse(l.target)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s:%d: link %q: %v", file, l.line, l.target, err))
			continue
		}
		if u.Scheme != "" || u.Host != "" {
			continue // http(s), mailto: not checked here
		}
		target := file
		if u.Path != "" {
			target = filepath.Join(filepath.Dir(file), filepath.FromSlash(u.Path))
			if strings.HasPrefix(u.Path, "/") {
				target = filepath.Join(root, filepath.FromSlash(u.Path))
			}
			if _, err := os.Stat(target); err != nil {
				problems = append(problems, fmt.Sprintf("%s:%d: link %q: %s does not exist", file, l.line, l.target, target))
				continue
			}
		}
		if u.Fragment == "" || !strings.HasSuffix(target, ".md") {
			continue
		}
		if !anchors(t, target)[u.Fragment] {
			problems = append(problems, fmt.Sprintf("%s:%d: link %q: %s has no heading with the anchor #%s", file, l.line, l.target, target, u.Fragment))
		}
	}
	return problems
}

type link struct {
	line   int
	target string
}

// links returns the links of a Markdown file outside fenced code blocks
// and code spans, where brackets and parentheses are only text.
func links(t *testing.T, file string) []link {
	var out []link
	forLines(t, file, func(n int, text string) {
		text = codeSpan.ReplaceAllString(text, "")
		if m := refDef.FindStringSubmatch(text); m != nil {
			out = append(out, link{n, m[1]})
			return
		}
		for _, m := range inlineLink.FindAllStringSubmatch(text, -1) {
			out = append(out, link{n, m[1]})
		}
	})
	return out
}

var anchorCache = map[string]map[string]bool{}

// anchors returns the anchors GitHub gives the headings of a Markdown
// file, and those of explicit <a name="..."> or id="..." tags.
func anchors(t *testing.T, file string) map[string]bool {
	if a, ok := anchorCache[file]; ok {
		return a
	}
	a := map[string]bool{}
	seen := map[string]int{}
	explicit := regexp.MustCompile(`<a\s+(?:name|id)="([^"]+)"`)
	forLines(t, file, func(_ int, text string) {
		for _, m := range explicit.FindAllStringSubmatch(text, -1) {
			a[m[1]] = true
		}
		heading, ok := strings.CutPrefix(strings.TrimLeft(text, "#"), " ")
		if !ok || !strings.HasPrefix(text, "#") || len(text)-len(strings.TrimLeft(text, "#")) > 6 {
			return
		}
		slug := Slug(heading)
		if n := seen[slug]; n > 0 {
			a[fmt.Sprintf("%s-%d", slug, n)] = true
		} else {
			a[slug] = true
		}
		seen[slug]++
	})
	anchorCache[file] = a
	return a
}

var mdLink = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)

// Slug is GitHub's anchor for a heading: its text as rendered (a link's
// text, no markup), lower case, with every character other than a letter,
// digit, space, hyphen or underscore dropped and spaces made hyphens.
func Slug(heading string) string {
	heading = mdLink.ReplaceAllString(strings.TrimSpace(heading), "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// forLines calls f with each line of file (numbered from 1) that is not
// inside a fenced code block.
func forLines(t *testing.T, file string, f func(n int, text string)) {
	t.Helper()
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	fence := ""
	for n := 1; sc.Scan(); n++ {
		text := sc.Text()
		trimmed := strings.TrimLeft(text, " ")
		if fence == "" && (strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~")) {
			fence = trimmed[:3]
			continue
		}
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			continue
		}
		f(n, text)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func TestSlug(t *testing.T) {
	for _, c := range []struct{ heading, want string }{
		{"Who holds the VIPs, and why two routers never do", "who-holds-the-vips-and-why-two-routers-never-do"},
		{"Routers over mutual TLS", "routers-over-mutual-tls"},
		{"`lvsctl cluster transfer` and sync_id", "lvsctl-cluster-transfer-and-sync_id"},
		{"[e2e/nemesis](../e2e/nemesis/README.md): Runs", "e2enemesis-runs"},
		{"Versions and upgrades ", "versions-and-upgrades"},
	} {
		if got := Slug(c.heading); got != c.want {
			t.Errorf("Slug(%q) = %q, want %q", c.heading, got, c.want)
		}
	}
}

// TestBrokenLinksFound makes sure the checker fails on what it must: a
// missing file, a missing anchor, and not on code or a good link.
func TestBrokenLinksFound(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("other.md", "# Other\n\n## Two words\n\n## Two words\n")
	page := write("page.md", strings.Join([]string{
		"# Page",
		"[ok](other.md#two-words) [ok too](other.md#two-words-1) [self](#page) [web](https://example.com/x.md#nope)",
		"[gone](missing.md)",
		"[no anchor](other.md#three-words)",
		"[no self anchor](#nowhere)",
		"`[in code](missing-in-code.md)`",
		"```",
		"[in a fence](missing-in-fence.md)",
		"```",
		"[ref]: missing-ref.md",
	}, "\n"))
	got := brokenLinks(t, page)
	want := []string{`:3: link "missing.md"`, `:4: link "other.md#three-words"`, `:5: link "#nowhere"`, `:10: link "missing-ref.md"`}
	if len(got) != len(want) {
		t.Fatalf("brokenLinks found %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i, w := range want {
		if !strings.Contains(got[i], w) {
			t.Errorf("problem %d = %q, want one containing %q", i, got[i], w)
		}
	}
}
