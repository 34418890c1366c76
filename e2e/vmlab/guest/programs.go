package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// subcommand runs one of the small programs the lab starts inside namespaces.
// Their output is line-oriented so the lab can read it as it comes.
func subcommand(name string, args []string) error {
	switch name {
	case "httpd":
		// httpd NAME ADDR: answer every request with NAME.
		if len(args) != 2 {
			return fmt.Errorf("usage: httpd NAME ADDR")
		}
		srv := &http.Server{
			Addr: args[1],
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, args[0]+"\n")
			}),
			ReadHeaderTimeout: 10 * time.Second,
		}
		return srv.ListenAndServe()
	case "get":
		// get URL COUNT INTERVAL TIMEOUT: COUNT requests (0 = until killed),
		// each on a new connection so that IPVS schedules every one; prints
		// "OK startms endms name" or "ERR startms endms why" per request.
		if len(args) != 4 {
			return fmt.Errorf("usage: get URL COUNT INTERVAL TIMEOUT")
		}
		count, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		interval, err := time.ParseDuration(args[2])
		if err != nil {
			return err
		}
		timeout, err := time.ParseDuration(args[3])
		if err != nil {
			return err
		}
		client := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
		out := bufio.NewWriter(os.Stdout)
		for i := 0; count == 0 || i < count; i++ {
			start := time.Now()
			name, err := fetch(client, args[0])
			end := time.Now()
			if err != nil {
				fmt.Fprintf(out, "ERR %d %d %s\n", start.UnixMilli(), end.UnixMilli(), oneLine(err.Error()))
			} else {
				fmt.Fprintf(out, "OK %d %d %s\n", start.UnixMilli(), end.UnixMilli(), name)
			}
			out.Flush()
			if rest := interval - time.Since(start); rest > 0 {
				time.Sleep(rest) // pacing the load, not synchronisation
			}
		}
		return nil
	case "echod":
		// echod NAME: TCP and UDP echo on :7, answers prefixed with NAME.
		if len(args) != 1 {
			return fmt.Errorf("usage: echod NAME")
		}
		return echod(args[0])
	case "once":
		// once HOST:PORT N: see flows.go.
		if len(args) != 2 {
			return fmt.Errorf("usage: once HOST:PORT N")
		}
		n, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		return once(args[0], n)
	case "conns", "udpflows":
		// conns|udpflows ADDR COUNT INTERVAL [STAGGER]: see flows.go.
		if len(args) != 3 && (len(args) != 4 || name != "conns") {
			return fmt.Errorf("usage: %s HOST:PORT COUNT INTERVAL [STAGGER]", name)
		}
		count, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		interval, err := time.ParseDuration(args[2])
		if err != nil {
			return err
		}
		if name == "conns" {
			stagger := time.Duration(0)
			if len(args) == 4 {
				if stagger, err = time.ParseDuration(args[3]); err != nil {
					return err
				}
			}
			return conns(args[0], count, interval, stagger)
		}
		return udpflows(args[0], count, interval)
	case "hold":
		// hold ADDR [rst]: one TCP connection; one request on it now and one
		// more per line read on stdin. Prints "OK name" or "ERR why" per
		// request. With rst the connection ends with a reset, which IPVS
		// forgets within its CLOSE timeout (10s) instead of TIME_WAIT's 2m.
		if len(args) != 1 && (len(args) != 2 || args[1] != "rst") {
			return fmt.Errorf("usage: hold HOST:PORT [rst]")
		}
		conn, err := net.DialTimeout("tcp", args[0], 5*time.Second)
		if err != nil {
			fmt.Printf("ERR dial: %v\n", err)
			return nil
		}
		if len(args) == 2 {
			conn.(*net.TCPConn).SetLinger(0)
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		in := bufio.NewScanner(os.Stdin)
		for {
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			name, err := requestOn(conn, br, args[0])
			if err != nil {
				fmt.Printf("ERR %s\n", oneLine(err.Error()))
			} else {
				fmt.Printf("OK %s\n", name)
			}
			if !in.Scan() {
				return nil
			}
		}
	}
	return fmt.Errorf("unknown subcommand")
}

func fetch(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return strings.TrimSpace(string(b)), nil
}

func requestOn(conn net.Conn, br *bufio.Reader, host string) (string, error) {
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// getResult is one request of a `get` run, as the lab reads it back.
type getResult struct {
	at   time.Time // when the request started
	end  time.Time // when it was answered or failed
	ok   bool
	name string // server name, or the error
}

func parseGet(line string) (getResult, bool) {
	f := strings.SplitN(line, " ", 4)
	if len(f) != 4 {
		return getResult{}, false
	}
	start, err1 := strconv.ParseInt(f[1], 10, 64)
	end, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return getResult{}, false
	}
	return getResult{at: time.UnixMilli(start), end: time.UnixMilli(end), ok: f[0] == "OK", name: f[3]}, true
}

// get runs COUNT requests from the machine and returns their results.
func (m *machine) get(ctx context.Context, url string, count int) ([]getResult, error) {
	cmd := execCommand(ctx, "/init", "get", url, strconv.Itoa(count), "0s", "5s")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := m.start(cmd); err != nil {
		return nil, fmt.Errorf("start client in %s: %w", m.name, err)
	}
	var res []getResult
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if r, ok := parseGet(sc.Text()); ok {
			res = append(res, r)
		}
	}
	if err := cmd.Wait(); err != nil {
		return res, fmt.Errorf("client in %s: %w", m.name, err)
	}
	return res, nil
}

// tally counts answers per server and lists the failures.
func tally(res []getResult) (map[string]int, []string) {
	counts := map[string]int{}
	var errs []string
	for _, r := range res {
		if r.ok {
			counts[r.name]++
		} else {
			errs = append(errs, r.name)
		}
	}
	return counts, errs
}
