// Package bgp announces the VIPs of bgp-mode services to upstream routers,
// so that an ECMP router spreads flows over every healthy router of the
// cluster (active-active), instead of one leader carrying them all.
//
// An Announcer receives the committed configuration (SetConfig) and this
// router's eligibility (SetBlocked: why it must not announce, or nothing),
// and converges a Speaker — a BGP implementation; GoBGP is the real one — to
// announce each bgp-mode VIP's /32 or /128 exactly while eligible. It holds
// every bgp-mode VIP on lo whether it announces or not, as a direct-routing
// real server does: IPVS only sees packets addressed to a local address, and
// flows that still arrive after a withdrawal (routers take a moment to
// converge) are then still served.
//
// Invariants:
//
//   - It never imports raft or the API: "in contact with a majority",
//     "dataplane healthy" and "drained" arrive as a blocking reason.
//   - Release withdraws every prefix and waits for the speaker to send the
//     withdrawals before it returns, so a stopping lvsd leaves its peers
//     before it exits instead of being found dead after a hold time.
//   - Nothing in a Status or a log line is secret: BGP here has no password.
package bgp
