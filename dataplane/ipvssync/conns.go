package ipvssync

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// ConnTablePath is the connection table of the reading thread's network
// namespace (/proc/net follows the process, /proc/thread-self/net the
// thread, which is what a thread switched into a namespace needs).
const ConnTablePath = "/proc/thread-self/net/ip_vs_conn"

// Conn is one entry of the kernel's IPVS connection table.
type Conn struct {
	// Key names the connection the same way on every router: protocol,
	// client, virtual address and real server, as /proc/net/ip_vs_conn
	// prints them ("TCP 0A000164 9C40 0A00010A 0050 0A00020B 0050").
	Key string
	// Protocol is TCP, UDP or SCTP; a persistence template has its
	// service's protocol (IP for a firewall-mark service) and client port 0.
	Protocol string
	// State is the kernel's name: ESTABLISHED, SYN_RECV, UDP, NONE, ...
	State string
}

// Established says whether the connection is one the master sends as soon
// as it is established, and every backup should therefore hold: a TCP or
// SCTP connection in state ESTABLISHED. New UDP flows are sent only after
// sync_threshold packets, which the table does not show.
func (c Conn) Established() bool {
	return (c.Protocol == "TCP" || c.Protocol == "SCTP") && c.State == "ESTABLISHED"
}

// ReadConns reads a connection table in the format of /proc/net/ip_vs_conn.
// Reading the real one costs time in proportion to the connections (about
// 100 bytes of text each): fine for a planned transfer, not for every
// status call.
func ReadConns(r io.Reader) ([]Conn, error) {
	var out []Conn
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			first = false
			if strings.HasPrefix(line, "Pro ") {
				continue
			}
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 9 {
			return out, fmt.Errorf("connection table: cannot read %q", line)
		}
		out = append(out, Conn{Key: strings.Join(f[:7], " "), Protocol: f[0], State: f[7]})
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("connection table: %w", err)
	}
	return out, nil
}

// ConnTable is the kernel's connection table, read from Path
// (ConnTablePath when empty).
type ConnTable struct {
	Path string
}

// Conns reads the table; with the default path, that of the calling
// thread's namespace.
func (t ConnTable) Conns() ([]Conn, error) {
	path := t.Path
	if path == "" {
		path = ConnTablePath
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("connection table: %w", err)
	}
	defer f.Close()
	return ReadConns(f)
}
