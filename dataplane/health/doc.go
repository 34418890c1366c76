// Package health decides, on every node, whether each real server should
// take traffic: the job Piranha's nanny and keepalived's checkers did.
//
// A Monitor receives the committed configuration (SetConfig), runs the
// configured check of every active real server (tcp connect, send/expect over
// TCP or UDP, http/https, an external program, or none) and keeps a verdict
// per server, keyed by service name and address:port with the port resolved
// as config.RealServerPort does. The dataplane asks Healthy when it builds the
// desired IPVS table and reconciles when OnChange fires; the server reports
// Status and streams Subscribe.
//
// A real server has one check (its service's health_check) or several (its
// own health_checks). Each is scheduled and tracked on its own (a checker);
// the server's verdict combines them as keepalived combines a real server's
// checkers: down while any check is down, up when every check is up, and
// unchecked while one has no result and none is down (combine in state.go).
// A check added to a server that has a verdict starts with that verdict, so
// a server never returns to unchecked.
//
// Verdicts come from a pure state machine (tracker) fed with check results
// and their times: up → down after fall consecutive failures or down_after of
// continuous failure; down → up after rise consecutive successes spanning at
// least reentry. It never reads a clock, so it is tested with made-up times.
//
// Start-up rule. A server the monitor has not judged yet — new in the
// configuration, or any server when lvsd starts — is "unchecked": Healthy
// says no, and its first check runs at once (within 100ms) and decides. A
// pass puts it in whatever rise and reentry say, since it has never failed:
// nanny added a server when its check passed, and keepalived with alpha
// does the same. rise and reentry are what a server that failed must show
// to come back. A fail puts it down, and from then on rise and reentry
// apply. initially_up starts a server up instead (keepalived without alpha,
// which is how the keepalived import maps it); kind none is always up.
// While a server is unchecked the dataplane leaves its IPVS destination as
// the kernel has it (Unchecked), so a restarted lvsd keeps serving through
// the servers the previous one had in, and withdraws none of them for
// reentry; the first check settles each. Verdicts are not persisted: one
// taken before a restart may be stale by any amount, a fresh check is at
// most a timeout away. A configuration change that leaves a server's
// address and check alone keeps its verdict; a changed check keeps it too.
//
// A server whose check is kind none has nothing to run and a verdict that
// cannot change, so the monitor keeps only its address and since in its
// service's list (nocheck.go): no checker, tracker or probe, nothing on the
// schedule, no shoal_health_up series. Healthy says up, Status lists it as
// up with the reason "no health check". A check changed to or from kind
// none is a changed check like any other: the verdict stays (a down server
// comes up, since it has nothing left to fail), and the new check decides
// from then on. At 100,000 such servers this is 6 MB of heap, not 136.
//
// A failed check returns a *Failure: an operator-readable message (the
// reason shown by status, e.g. `connect 10.0.0.1:80: connection refused`,
// `status 500, want 2xx/3xx`) and a typed Cause counted in
// shoal_health_check_failures_total, so "why is this server out" needs no
// log parsing.
//
// Scheduling is one goroutine with a timer on a heap of due checks, not one
// sleeping goroutine per server: first runs are spread over the interval
// (over 100ms for unchecked servers, whose second run is then spread over
// the interval), later runs jittered by ±10%, checks due within 5ms share one wake-up, and
// at most Options.Concurrency checks run at once on workers reused across
// checks. 10,000 TCP checks a second against loopback cost ~0.5 core on the
// 2-core development VM, of which ~0.45 is the kernel's connect+close (on
// loopback both ends of the handshake are charged to the checker); run
// `go test ./dataplane/health -run TestLoad -health.load=10s -v`.
//
// What it must never do: touch IPVS or addresses (that is the dataplane's
// job, driven by Healthy), know about Raft or leadership (checks run on every
// node, each node programs its own view), or reuse a connection between two
// checks (each check tests the server afresh). It follows redirects of no
// HTTP server, and runs an exec check's program only through the router's
// script policy (package script: --script-dir, --script-user, no shell
// unless the router allows it), never directly.
package health
