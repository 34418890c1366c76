package migrate

import (
	"fmt"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// This file reads keepalived.conf's syntax the way keepalived's lib/parser.c
// does: decomment() strips comments, read_line() splits a line at every
// brace outside double quotes, alloc_strvec_r() splits what is left into
// words, and include lines are followed before anything else.

// kaNode is one statement of keepalived.conf with its block, if any.
type kaNode struct {
	file string
	line int
	args []string
	// raw is the statement's text after decomment, as keepalived hands it
	// to the keywords that re-split their line with their own quoting
	// (misc_path, notify_*, quorum_up/down).
	raw  string
	kids []*kaNode
}

func (n *kaNode) key() string { return strings.Join(n.args, " ") }

type kaTok struct {
	s     string
	line  int
	eol   bool
	brace byte   // '{' or '}'
	raw   string // on a segment's first word: the segment's text
}

// kaDecomment is keepalived's decomment(): '#' or '!' outside double quotes
// ends the line, "\#" and "\!" outside quotes stand for the character, and
// any other backslash keeps itself and the next character.
func kaDecomment(line string) (string, bool) {
	var b strings.Builder
	quote := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '"':
			quote = !quote
		case c == '\\' && i+1 < len(line):
			if !quote && (line[i+1] == '#' || line[i+1] == '!') {
				i++
				c = line[i]
			} else {
				b.WriteByte(c)
				i++
				c = line[i]
			}
		case !quote && (c == '#' || c == '!'):
			return b.String(), quote
		}
		b.WriteByte(c)
	}
	return b.String(), quote
}

// kaSegments is read_line()'s split of a line at each '{' or '}' that is
// not between double quotes: "a { b }" is "a", "{", "b", "}".
func kaSegments(line string) []string {
	var out []string
	for {
		line = strings.Trim(line, " \t")
		if line == "" {
			return out
		}
		if line[0] == '{' || line[0] == '}' {
			out = append(out, line[:1])
			line = line[1:]
			continue
		}
		p, quote := -1, false
		for i := 0; i < len(line) && p < 0; i++ {
			switch line[i] {
			case '"':
				quote = !quote
			case '{', '}':
				if !quote {
					p = i
				}
			}
		}
		if p < 0 {
			return append(out, line)
		}
		out = append(out, strings.Trim(line[:p], " \t"))
		line = line[p:]
	}
}

// kaWords is alloc_strvec_r(): words split at white space, a word that
// starts with a double quote runs to the next double quote (kept whole,
// without the quotes), and a double quote inside a word ends it.
func kaWords(seg string) ([]string, error) {
	var out []string
	for i := 0; ; {
		for i < len(seg) && kaSpace(seg[i]) {
			i++
		}
		if i >= len(seg) {
			return out, nil
		}
		if seg[i] == '"' {
			end := strings.IndexByte(seg[i+1:], '"')
			if end < 0 {
				return out, fmt.Errorf("unmatched quote")
			}
			out = append(out, seg[i+1:i+1+end])
			i += end + 2
			continue
		}
		j := i
		for j < len(seg) && !kaSpace(seg[j]) && seg[j] != '"' {
			j++
		}
		out = append(out, seg[i:j])
		i = j
	}
}

func kaSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'
}

// kaSplitQuoted is alloc_strvec_quoted_escaped_common(), with which
// misc_path and the notify scripts split their command line: words at
// white space, '...' and "..." group, and with escapes a backslash escapes
// as in the shell and C (\n \t \xHH \NNN \cC, \C for any other C).
// Without escapes a backslash keeps itself and the next character.
func kaSplitQuoted(src string, escapes bool) ([]string, error) {
	var out []string
	i := 0
	for {
		for i < len(src) && kaSpace(src[i]) {
			i++
		}
		if i >= len(src) {
			return out, nil
		}
		var w strings.Builder
		var quote byte
	word:
		for i < len(src) {
			c := src[i]
			switch {
			case c == '\\':
				i++
				if i >= len(src) {
					return nil, fmt.Errorf("a backslash ends %q", src)
				}
				if !escapes {
					w.WriteByte('\\')
					w.WriteByte(src[i])
					i++
					continue
				}
				w.WriteByte(kaEscape(src, &i))
			case quote != 0 && c == quote:
				quote = 0
				i++
			case quote != 0:
				w.WriteByte(c)
				i++
			case c == '"' || c == '\'':
				quote = c
				i++
			case kaSpace(c):
				break word
			default:
				w.WriteByte(c)
				i++
			}
		}
		if quote != 0 {
			return nil, fmt.Errorf("%q is missing its closing %c", src, quote)
		}
		out = append(out, w.String())
	}
}

// kaEscape decodes the escape whose letter is at src[*i] and moves past it.
func kaEscape(src string, i *int) byte {
	c := src[*i]
	hex := func(b byte) (byte, bool) {
		switch {
		case b >= '0' && b <= '9':
			return b - '0', true
		case b >= 'a' && b <= 'f':
			return b - 'a' + 10, true
		case b >= 'A' && b <= 'F':
			return b - 'A' + 10, true
		}
		return 0, false
	}
	switch {
	case c == 'x' && *i+1 < len(src):
		if _, ok := hex(src[*i+1]); ok {
			*i++
			var v byte
			for n := 0; n < 2 && *i < len(src); n++ {
				d, ok := hex(src[*i])
				if !ok {
					break
				}
				v = v<<4 | d
				*i++
			}
			return v
		}
	case c == 'c' && *i+1 < len(src):
		*i += 2
		return src[*i-1] & 0x1f
	case c >= '0' && c <= '7':
		var v byte
		for n := 0; n < 3 && *i < len(src) && src[*i] >= '0' && src[*i] <= '7'; n++ {
			v = v<<3 + (src[*i] - '0')
			*i++
		}
		return v
	}
	*i++
	if e, ok := map[byte]byte{'a': '\a', 'b': '\b', 'E': 0x1b, 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t', 'v': '\v'}[c]; ok {
		return e
	}
	return c
}

func (im *importer) kaLex(file, text string) []kaTok {
	var toks []kaTok
	for i, line := range strings.Split(strings.TrimPrefix(text, "\ufeff"), "\n") {
		n := i + 1
		if !utf8.ValidString(line) {
			if !im.opt.Lenient {
				im.errs = append(im.errs, LineError{File: file, Line: n, Msg: "line is not valid UTF-8"})
				continue
			}
			line = strings.ToValidUTF8(line, "\uFFFD")
		}
		line, open := kaDecomment(strings.TrimRight(line, "\r"))
		if open {
			im.errs = append(im.errs, LineError{File: file, Line: n, Msg: "unterminated quote"})
			toks = append(toks, kaTok{line: n, eol: true})
			continue
		}
		segs := kaSegments(line)
		if kaIsInclude(line) {
			// An include line is read whole: its braces are glob's.
			segs = []string{strings.Trim(line, " \t")}
		}
		for _, seg := range segs {
			if seg == "{" || seg == "}" {
				toks = append(toks, kaTok{line: n, brace: seg[0]})
				continue
			}
			words, err := kaWords(seg)
			if err != nil {
				im.errs = append(im.errs, LineError{File: file, Line: n, Msg: err.Error()})
			}
			for j, w := range words {
				t := kaTok{s: w, line: n}
				if j == 0 {
					t.raw = seg
				}
				toks = append(toks, t)
			}
			// A segment is a statement of its own, as read_line makes it.
			toks = append(toks, kaTok{line: n, eol: true})
		}
		toks = append(toks, kaTok{line: n, eol: true})
	}
	return toks
}

// kaParse turns tokens into statements. A block's "{" may close the
// statement's line or open the next one.
func (im *importer) kaParse(file string, toks []kaTok, depth int) []*kaNode {
	pos := 0
	var parse func(level int) []*kaNode
	parse = func(level int) []*kaNode {
		var out []*kaNode
		var cur *kaNode
		for pos < len(toks) {
			t := toks[pos]
			pos++
			switch {
			case t.eol:
				if cur != nil {
					out = append(out, im.kaInclude(file, cur, depth)...)
				}
				cur = nil
			case t.brace == '{':
				if cur == nil {
					// "{" alone on a line opens the block of the previous statement.
					if len(out) == 0 || out[len(out)-1].kids != nil {
						im.errs = append(im.errs, LineError{File: file, Line: t.line, Msg: "{ without a statement"})
						_ = parse(level + 1)
						continue
					}
					cur = out[len(out)-1]
					out = out[:len(out)-1]
				}
				cur.kids = parse(level + 1)
				if cur.kids == nil {
					cur.kids = []*kaNode{}
				}
				out = append(out, cur)
				cur = nil
			case t.brace == '}':
				if cur != nil {
					out = append(out, im.kaInclude(file, cur, depth)...)
				}
				if level == 0 {
					im.errs = append(im.errs, LineError{File: file, Line: t.line, Msg: "} without an open block"})
					cur = nil
					continue
				}
				return out
			default:
				if cur == nil {
					cur = &kaNode{file: file, line: t.line, raw: t.raw}
				}
				cur.args = append(cur.args, t.s)
			}
		}
		if cur != nil {
			out = append(out, im.kaInclude(file, cur, depth)...)
		}
		if level > 0 {
			line := 0
			if len(toks) > 0 {
				line = toks[len(toks)-1].line
			}
			im.errs = append(im.errs, LineError{File: file, Line: line, Msg: "block is never closed: missing }"})
		}
		return out
	}
	return parse(0)
}

// kaIncludeKinds are keepalived's include keywords; the strict ones
// (includem, includew, includeb, includea) fail when nothing matches, the
// others skip quietly, and so does the import, with a note.
var kaIncludeKinds = map[string]bool{"include": false, "includer": false, "includem": true, "includew": true, "includeb": true, "includea": true}

// kaIsInclude is keepalived's is_include(): the line starts with an
// include keyword and white space.
func kaIsInclude(line string) bool {
	l := strings.TrimLeft(line, " \t")
	i := strings.IndexAny(l, " \t")
	if i < 0 {
		return false
	}
	_, ok := kaIncludeKinds[l[:i]]
	return ok
}

// kaInclude replaces an include statement by the statements of the files it
// names, as keepalived does; anything else is returned as is.
func (im *importer) kaInclude(file string, n *kaNode, depth int) []*kaNode {
	strict, ok := kaIncludeKinds[n.args[0]]
	if !ok || n.kids != nil {
		return []*kaNode{n}
	}
	// keepalived takes the rest of the line as the pattern, spaces and all.
	pattern := strings.TrimLeft(strings.TrimPrefix(n.raw, n.args[0]), " \t")
	if pattern == "" || len(n.args) < 2 {
		im.errs = append(im.errs, LineError{File: file, Line: n.line, Msg: n.args[0] + " wants a file pattern"})
		return nil
	}
	if depth >= kaMaxIncludeDepth {
		im.errs = append(im.errs, LineError{File: file, Line: n.line, Msg: "includes nested too deep (a loop?)"})
		return nil
	}
	var names []string
	for _, p := range kaBraces(pattern) {
		if !filepath.IsAbs(p) && file != "" {
			p = filepath.Join(filepath.Dir(file), p)
		}
		m, err := im.opt.Glob(p)
		if err != nil {
			im.errs = append(im.errs, LineError{File: file, Line: n.line, Msg: fmt.Sprintf("%s %s: %v", n.args[0], pattern, err)})
			return nil
		}
		names = append(names, m...)
	}
	if len(names) == 0 {
		if strict {
			im.errs = append(im.errs, LineError{File: file, Line: n.line, Msg: fmt.Sprintf("%s %s: no file matches", n.args[0], pattern)})
		} else {
			im.kaNote(n, n.args[0], "%s matches no file: nothing included (keepalived skips it too)", pattern)
		}
		return nil
	}
	var out []*kaNode
	for _, name := range names {
		data, err := im.opt.ReadFile(name)
		if err != nil {
			im.errs = append(im.errs, LineError{File: file, Line: n.line, Msg: fmt.Sprintf("%s: %v", n.args[0], err)})
			continue
		}
		out = append(out, im.kaParse(name, im.kaLex(name, string(data)), depth+1)...)
	}
	return out
}

// kaBraces expands csh-style braces, which keepalived's glob() does:
// "conf.d/{a,b}.conf" is conf.d/a.conf and conf.d/b.conf.
func kaBraces(p string) []string {
	open := strings.IndexByte(p, '{')
	if open < 0 {
		return []string{p}
	}
	depth, close := 0, -1
	var commas []int
	for i := open; i < len(p) && close < 0; i++ {
		switch p[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				close = i
			}
		case ',':
			if depth == 1 {
				commas = append(commas, i)
			}
		}
	}
	if close < 0 {
		return []string{p}
	}
	var out []string
	from := open + 1
	for _, c := range append(commas, close) {
		for _, alt := range kaBraces(p[from:c]) {
			for _, rest := range kaBraces(p[close+1:]) {
				out = append(out, p[:open]+alt+rest)
			}
		}
		from = c + 1
	}
	return out
}
