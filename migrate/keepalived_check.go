package migrate

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// kaCheckers are the checker blocks of a real_server.
var kaCheckers = map[string]bool{
	"TCP_CHECK": true, "HTTP_GET": true, "SSL_GET": true, "MISC_CHECK": true, "SMTP_CHECK": true,
	"DNS_CHECK": true, "UDP_CHECK": true, "PING_CHECK": true, "FILE_CHECK": true, "BFD_CHECK": true,
}

// kaUnsupportedCheckers are the checkers shoal cannot run, with why. Their
// real server is not checked by them: a TCP connect in their place would
// pass or fail for other reasons than keepalived's (a DNS server over UDP).
var kaUnsupportedCheckers = map[string]string{
	"DNS_CHECK":  "shoal has no DNS check (keepalived sends a DNS query over UDP)",
	"UDP_CHECK":  "shoal has no UDP check",
	"PING_CHECK": "shoal has no ICMP echo check",
	"FILE_CHECK": "shoal does not track files",
	"BFD_CHECK":  "shoal does not run BFD",
}

// kaCheckNotes are checker keys shoal has no place for, with why.
var kaCheckNotes = map[string]string{
	"connect_ip":       "not imported: shoal checks the real server's own address",
	"bindto":           "not imported: checks use the node's default source address",
	"bind_port":        "not imported: checks use an ephemeral source port",
	"bind_if":          "not imported: checks follow the node's routing",
	"fwmark":           "not imported: check packets are not marked",
	"log_all_failures": "not imported: lvsd logs every change of a real server's state",
	"misc_dynamic":     "not imported: shoal does not set weights from a script's exit code",
	"user":             "not imported: exec checks run as lvsd's user",
	"http_protocol":    "not imported: shoal's HTTP check speaks HTTP/1.1",
	"fast_recovery":    "not imported: shoal checks one URL, so there is nothing to hurry",
	"tls_compliant":    "not imported: shoal's TLS client always closes with close_notify",
	"helo_name":        "not imported: shoal's SMTP approximation does not send HELO",
	"host":             "not imported: shoal checks the real server itself, not other hosts",
	"digest":           "not imported: shoal does not compare page digests (the page is not checked)",
	"regex_min_offset": "not imported: the regex is searched in the whole body",
	"regex_max_offset": "not imported: the regex is searched in the whole body",
	"regex_stack":      "not imported: Go's RE2 needs no stack sizes",
}

// kaChecks reads a real server's checkers: one health check each, nil for
// one shoal cannot run (reported).
func (im *importer) kaChecks(nodes []*kaNode, inh kaInherit) []*shoalv1.HealthCheck {
	out := make([]*shoalv1.HealthCheck, len(nodes))
	for i, n := range nodes {
		out[i] = im.kaCheck(n, inh)
	}
	return out
}

func (im *importer) kaCheck(n *kaNode, inh kaInherit) *shoalv1.HealthCheck {
	kind := n.args[0]
	if why := kaUnsupportedCheckers[kind]; why != "" {
		im.kaNote(n, kind, "cannot be expressed: %s", why)
		return nil
	}
	hc := &shoalv1.HealthCheck{}
	retry := uint64(kaDefaultRetry)
	switch kind {
	case "TCP_CHECK":
		hc.Kind = "tcp"
	case "HTTP_GET":
		hc.Kind = "http"
	case "SSL_GET":
		// keepalived's SSL_GET does not verify the server's certificate.
		hc.Kind = "https"
		hc.TlsSkipVerify = true
	case "SMTP_CHECK":
		hc.Kind = "send-expect"
		hc.Expect = "220"
		im.kaNote(n, kind, "approximated: shoal reads the server's 220 greeting; keepalived also sends HELO and wants 250")
	case "MISC_CHECK":
		hc.Kind = "exec"
		retry = 0
	}
	var urls []*kaNode
	var sni *bool
	sniName := ""
	var miscTimeout time.Duration
	http := kind == "HTTP_GET" || kind == "SSL_GET"
	for _, k := range n.kids {
		kw := k.args[0]
		if im.kaCommon(k, &inh, kind) {
			continue
		}
		switch {
		case kw == "connect_port" && kind != "MISC_CHECK":
			// read_unsigned_strvec: a number, not a service name.
			if p, ok := im.kaUint(k, 1, 65535); ok {
				hc.Port = uint32(p) // made relative to the service in kaVirtual
			}
		case kw == "virtualhost" && http:
			if len(k.args) < 2 {
				im.kaStrict(k, "virtualhost wants a name")
				continue
			}
			inh.host = k.args[1]
		case kw == "url" && http:
			urls = append(urls, k)
		case kw == "enable_sni" && kind == "SSL_GET":
			if b, ok := im.kaBool(k); ok {
				sni = &b
			}
		case kw == "sni_name" && kind == "SSL_GET":
			if len(k.args) > 1 {
				sniName = k.args[1]
			}
			t := true
			sni = &t
		case (kw == "enable_sni" || kw == "sni_name") && kind == "HTTP_GET":
			im.kaNote(k, kw, "not imported: HTTP_GET speaks no TLS, so there is no SNI to send (keepalived accepts and ignores it too)")
		case kw == "misc_path" && kind == "MISC_CHECK":
			hc.Command = im.kaMiscPath(k)
		case kw == "misc_timeout" && kind == "MISC_CHECK":
			if t, ok := im.kaUint(k, 0, 1<<31); ok {
				miscTimeout = time.Duration(t) * time.Second
			}
		default:
			if why, ok := kaCheckNotes[kw]; ok {
				im.kaNote(k, kw, "%s", why)
				continue
			}
			im.kaStrict(k, "unknown keyword %q in %s", kw, kind)
		}
	}
	if inh.retry != nil {
		retry = *inh.retry
	}
	hc.InitiallyUp = !inh.alpha
	hc.Interval = durationpb.New(inh.delayLoop)
	hc.Timeout = durationpb.New(inh.timeout)
	hc.Fall = uint32(min(retry, 1<<31)) + 1
	if http {
		hc.HttpHost = inh.host
		if !im.kaURLs(hc, urls, n) {
			return nil
		}
		if sni != nil && *sni {
			name := sniName
			if name == "" {
				name = hc.HttpHost
			}
			if name == "" {
				im.kaNote(n, "enable_sni", "no SNI name: keepalived sends none without sni_name or a virtualhost, and neither does shoal")
			}
			hc.TlsServerName = name
		}
	}
	if kind == "MISC_CHECK" {
		if len(hc.Command) == 0 {
			// keepalived skips such a checker; so does the import.
			im.kaNote(n, kind, "not imported: no misc_path (keepalived skips this checker too)")
			return nil
		}
		// keepalived's misc_timeout defaults to the virtual server's
		// delay_loop, whatever the checker's own.
		hc.Timeout = durationpb.New(inh.vsDelayLoop)
		if miscTimeout > 0 {
			hc.Timeout = durationpb.New(miscTimeout)
		}
	}
	return hc
}

// kaMiscPath reads misc_path as keepalived runs it: its line is split with
// quotes kept (alloc_strvec_quoted), the second word is split again with
// quotes and escapes (set_script_params_array), and the words are the
// program and its arguments, run with execve, no shell. Words after the
// second one are ignored by keepalived.
func (im *importer) kaMiscPath(k *kaNode) []string {
	words, err := kaSplitQuoted(k.raw, false)
	if err != nil || len(words) < 2 {
		im.kaStrict(k, "misc_path wants a command")
		return nil
	}
	argv, err := kaSplitQuoted(words[1], true)
	if err != nil || len(argv) == 0 || argv[0] == "" {
		im.kaStrict(k, "misc_path: cannot read the command %q", words[1])
		return nil
	}
	if len(words) > 2 {
		im.kaNote(k, "misc_path", "%s not imported: keepalived runs only the first word (quote the whole command line to pass arguments)", strings.Join(words[2:], " "))
	}
	for _, a := range argv {
		if strings.Contains(a, "%h") || strings.Contains(a, "%p") {
			im.kaStrict(k, "misc_path %q cannot be expressed: shoal replaces %%h and %%p in an exec check's arguments, keepalived passes them as written", a)
			return nil
		}
	}
	return argv
}

// kaURLs reads the url blocks of HTTP_GET/SSL_GET. shoal checks one URL: the
// first valid one; the others are reported. It returns false when there is
// no URL, as keepalived then ignores the checker.
func (im *importer) kaURLs(hc *shoalv1.HealthCheck, urls []*kaNode, n *kaNode) bool {
	done := false
	for _, u := range urls {
		if done {
			im.kaNote(u, "url", "not imported: shoal checks one URL per real server (the first one is used)")
			continue
		}
		done = im.kaURL(hc, u)
	}
	if !done {
		im.kaNote(n, n.args[0], "not imported: no url with a path (keepalived ignores this checker too)")
	}
	return done
}

func (im *importer) kaURL(hc *shoalv1.HealthCheck, u *kaNode) bool {
	var codes []*kaNode
	regex, noMatch := "", false
	var regexNode *kaNode
	var flags string
	path := ""
	for _, k := range u.kids {
		arg := ""
		if len(k.args) > 1 {
			arg = k.args[1]
		}
		switch k.args[0] {
		case "path":
			path = arg
		case "status_code":
			codes = append(codes, k)
		case "virtualhost":
			hc.HttpHost = arg
		case "regex":
			words, err := kaSplitQuoted(k.raw, true)
			if err != nil || len(words) != 2 {
				im.kaStrict(k, "regex wants one pattern (quote it if it has spaces)")
				continue
			}
			regex, regexNode = words[1], k
		case "regex_no_match":
			noMatch = true
		case "regex_options":
			for _, o := range k.args[1:] {
				f, ok := map[string]string{"caseless": "i", "multiline": "m", "dotall": "s", "ungreedy": "U"}[o]
				if !ok {
					im.kaNote(k, "regex_options", "%s not imported: Go's RE2 has no such option", o)
					continue
				}
				flags += f
			}
		default:
			if why, ok := kaCheckNotes[k.args[0]]; ok {
				im.kaNote(k, k.args[0], "%s", why)
				continue
			}
			im.kaStrict(k, "unknown keyword %q in url", k.args[0])
		}
	}
	if path == "" {
		im.kaNote(u, "url", "not imported: no path (keepalived ignores this url too)")
		return false
	}
	hc.HttpPath = path
	hc.HttpStatus = im.kaStatus(u, codes)
	switch {
	case regexNode == nil:
	case noMatch:
		im.kaNote(regexNode, "regex", "not imported: regex_no_match (the page must not match) cannot be expressed; the page is not checked")
	default:
		if flags != "" {
			regex = "(?" + flags + ")" + regex
		}
		if _, err := regexp.Compile(regex); err != nil {
			im.kaStrict(regexNode, "regex cannot be expressed in Go's RE2 syntax: %v", err)
			break
		}
		hc.Expect, hc.Regex = regex, true
	}
	return true
}

// kaStatus turns status_code lists and ranges into shoal's http_status:
// one code, or 0 for 200-399. keepalived's default is 200-299.
func (im *importer) kaStatus(u *kaNode, codes []*kaNode) uint32 {
	var set [600]bool
	any := false
	for _, k := range codes {
		for _, w := range k.args[1:] {
			lo, hi, isRange := strings.Cut(w, "-")
			a, err1 := strconv.ParseUint(lo, 10, 16)
			b, err2 := a, error(nil)
			if isRange {
				b, err2 = strconv.ParseUint(hi, 10, 16)
			}
			if err1 != nil || err2 != nil || a < 100 || b > 599 || a > b {
				im.kaStrict(k, "status_code: %q is not a code or range within 100-599", w)
				continue
			}
			for c := a; c <= b; c++ {
				set[c] = true
			}
			any = true
		}
	}
	if !any {
		for c := 200; c <= 299; c++ {
			set[c] = true
		}
	}
	var got []int
	for c, ok := range set {
		if ok {
			got = append(got, c)
		}
	}
	if len(got) == 1 {
		return uint32(got[0])
	}
	if len(got) == 200 && got[0] == 200 && got[199] == 399 {
		return 0
	}
	at, what := u, "keepalived's default 200-299"
	if len(codes) > 0 {
		at, what = codes[0], "status codes "+kaRanges(got)
	}
	im.kaNote(at, "status_code", "%s cannot be expressed: shoal accepts one code or 200-399; imported as 200-399", what)
	return 0
}

// kaRanges writes a sorted list of codes as keepalived's ranges.
func kaRanges(codes []int) string {
	var parts []string
	for i := 0; i < len(codes); {
		j := i
		for j+1 < len(codes) && codes[j+1] == codes[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, strconv.Itoa(codes[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", codes[i], codes[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, " ")
}
