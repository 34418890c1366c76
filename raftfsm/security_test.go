package raftfsm

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"google.golang.org/protobuf/proto"
)

// joinToken is a well-formed token that expires expires seconds past the
// tests' epoch (see at).
func joinToken(id string, expires int64) *shoalv1.StoredJoinToken {
	return &shoalv1.StoredJoinToken{Info: &shoalv1.JoinToken{Id: id, Expires: at(expires)}, Key: bytes.Repeat([]byte{7}, 32)}
}

// createTokenCmd creates t as proposed at now; now < 0 proposes it without
// an audit, so without a time.
func createTokenCmd(t *shoalv1.StoredJoinToken, now int64) *shoalv1.Command {
	cmd := &shoalv1.Command{Op: &shoalv1.Command_CreateJoinToken{CreateJoinToken: t}}
	if now >= 0 {
		cmd.Audit = auditOf("alice", "admin", "CreateJoinToken", now)
	}
	return cmd
}

func tokenIDs(st *shoalv1.State) []string {
	var ids []string
	for _, t := range st.GetJoinTokens() {
		ids = append(ids, t.GetInfo().GetId())
	}
	return ids
}

func TestJoinTokens(t *testing.T) {
	full := func(expired int) []*shoalv1.StoredJoinToken {
		var out []*shoalv1.StoredJoinToken
		for i := range maxJoinTokens {
			exp := int64(1000)
			if i < expired {
				exp = 5
			}
			out = append(out, joinToken(fmt.Sprintf("t%02d", i), exp))
		}
		return out
	}
	shortKey := joinToken("new", 100)
	shortKey.Key = shortKey.Key[:16]
	noExpiry := joinToken("new", 100)
	noExpiry.Info.Expires = nil
	tests := []struct {
		name string
		have []*shoalv1.StoredJoinToken
		cmd  *shoalv1.Command
		kind ErrorKind // 0: success
		text string
		want []string // token ids after
	}{
		{name: "create", cmd: createTokenCmd(joinToken("new", 100), 10), want: []string{"new"}},
		{name: "duplicate id", have: []*shoalv1.StoredJoinToken{joinToken("new", 100)}, cmd: createTokenCmd(joinToken("new", 200), 10),
			kind: KindAlreadyExists, text: "new already exists"},
		{name: "short key", cmd: createTokenCmd(shortKey, 10), kind: KindInvalid, text: "key: want 32 bytes, got 16"},
		{name: "no expiry", cmd: createTokenCmd(noExpiry, 10), kind: KindInvalid, text: "info.expires"},
		{name: "empty id", cmd: createTokenCmd(joinToken("", 100), 10), kind: KindInvalid, text: "info.id"},
		{name: "id with a dot", cmd: createTokenCmd(joinToken("a.b", 100), 10), kind: KindInvalid, text: "info.id"},
		{name: "expired tokens are dropped", have: []*shoalv1.StoredJoinToken{joinToken("old", 5), joinToken("live", 100), joinToken("now", 10)},
			cmd: createTokenCmd(joinToken("new", 100), 10), want: []string{"live", "new"}},
		{name: "nothing is dropped without a time", have: []*shoalv1.StoredJoinToken{joinToken("old", 5)},
			cmd: createTokenCmd(joinToken("new", 100), -1), want: []string{"old", "new"}},
		{name: "too many live tokens", have: full(0), cmd: createTokenCmd(joinToken("new", 2000), 10),
			kind: KindFailedPrecondition, text: fmt.Sprintf("%d join tokens are live", maxJoinTokens)},
		{name: "expired tokens do not count", have: full(1), cmd: createTokenCmd(joinToken("new", 2000), 10),
			want: append(tokenIDs(&shoalv1.State{JoinTokens: full(1)[1:]}), "new")},
		{name: "delete", have: []*shoalv1.StoredJoinToken{joinToken("a", 100), joinToken("b", 100), joinToken("c", 100)},
			cmd: &shoalv1.Command{Op: &shoalv1.Command_DeleteJoinToken{DeleteJoinToken: &shoalv1.DeleteJoinTokenRequest{Id: "b"}}}, want: []string{"a", "c"}},
		{name: "delete unknown", have: []*shoalv1.StoredJoinToken{joinToken("a", 100)},
			cmd: &shoalv1.Command{Op: &shoalv1.Command_DeleteJoinToken{DeleteJoinToken: &shoalv1.DeleteJoinTokenRequest{Id: "b"}}}, kind: KindNotFound, text: `"b" not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := baseState(t)
			st.JoinTokens = tt.have
			before := proto.Clone(st)
			res, err := Apply(st, tt.cmd)
			if !proto.Equal(st, before) {
				t.Error("Apply changed the state it was given")
			}
			if tt.kind != 0 {
				wantKind(t, err, tt.kind, tt.text)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tokenIDs(res.State); !slices.Equal(got, tt.want) {
				t.Errorf("tokens %v, want %v", got, tt.want)
			}
			if res.State.GetConfig() != st.GetConfig() || len(res.State.GetHistory()) != len(st.GetHistory()) || len(res.Changes) != 0 {
				t.Error("a token command changed the configuration or its history")
			}
			if nt := tt.cmd.GetCreateJoinToken(); nt != nil {
				stored := res.State.GetJoinTokens()[len(res.State.GetJoinTokens())-1]
				if stored == nt || !proto.Equal(stored, nt) {
					t.Errorf("stored token %v: want a copy of %v", stored, nt)
				}
			}
		})
	}
}

func TestInstallCA(t *testing.T) {
	install := func(cert, key string) *shoalv1.Command {
		return &shoalv1.Command{Op: &shoalv1.Command_InstallCa{InstallCa: &shoalv1.ClusterCA{Certificate: []byte(cert), Key: []byte(key)}}}
	}
	steps := []struct {
		name string
		cmd  *shoalv1.Command
		kind ErrorKind // 0: success
		same bool      // the state is returned as it was
	}{
		{name: "no key", cmd: install("cert", ""), kind: KindInvalid},
		{name: "no certificate", cmd: install("", "key"), kind: KindInvalid},
		{name: "first", cmd: install("cert", "key")},
		{name: "same again", cmd: install("cert", "key"), same: true},
		{name: "another key", cmd: install("cert", "key2"), kind: KindFailedPrecondition},
		{name: "another certificate", cmd: install("cert2", "key"), kind: KindFailedPrecondition},
	}
	st := baseState(t)
	for _, tt := range steps {
		res, err := Apply(st, tt.cmd)
		if tt.kind != 0 {
			wantKind(t, err, tt.kind)
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if (res.State == st) != tt.same {
			t.Errorf("%s: same state %v, want %v", tt.name, res.State == st, tt.same)
		}
		if !proto.Equal(res.State.GetCa(), tt.cmd.GetInstallCa()) || res.State.GetCa() == tt.cmd.GetInstallCa() {
			t.Errorf("%s: CA %v, want a copy of %v", tt.name, res.State.GetCa(), tt.cmd.GetInstallCa())
		}
		if res.State.GetConfig().GetSerial() != 1 {
			t.Errorf("%s: serial %d, want 1", tt.name, res.State.GetConfig().GetSerial())
		}
		st = res.State
	}
}
