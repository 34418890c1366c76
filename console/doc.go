// Package console is lvsd's web console (lvsd --web-addr): the cluster at a
// glance, the services with their health and traffic, guarded edits, imports
// and the audited history with rollback.
//
// It holds no authority of its own. Every read and every change is a call
// of the gRPC API made in process (server.LocalConn) on behalf of the user,
// carrying the certificate the user proved they hold — a TLS client
// certificate, or a console token (pki.ParseConsoleToken) exchanged for a
// session cookie — so the API's validation, role table, revocation and
// audit history apply to the console exactly as to lvsctl. It must never
// call raft, the FSM or the dataplane directly, and never decide on its
// own what a role may do: hiding a button is a courtesy, the API's refusal
// is the rule.
//
// The one state it keeps is its own: sessions, and the last minutes of
// IPVS counters for the sparklines, in memory on this node.
package console
