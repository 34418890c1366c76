package raftfsm

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// issued is a client certificate record with serial that expires expires
// seconds past the tests' epoch (see at).
func issued(serial string, expires int64) *shoalv1.IssuedCertificate {
	return &shoalv1.IssuedCertificate{
		Info:     &shoalv1.CertificateInfo{Name: "cert-" + serial, Role: "viewer", SerialNumber: serial, NotAfter: at(expires)},
		IssuedBy: "alice", Issued: at(0),
	}
}

// recordCmd records c as proposed at now; now < 0 proposes it without an
// audit, so without a time.
func recordCmd(c *shoalv1.IssuedCertificate, now int64) *shoalv1.Command {
	cmd := &shoalv1.Command{Op: &shoalv1.Command_RecordCertificate{RecordCertificate: c}}
	if now >= 0 {
		cmd.Audit = auditOf("alice", "admin", "IssueCertificate", now)
	}
	return cmd
}

// revokeCmd revokes serial as bob, an admin, at now; now < 0 proposes it
// without an audit.
func revokeCmd(serial string, now int64) *shoalv1.Command {
	cmd := &shoalv1.Command{Op: &shoalv1.Command_RevokeCertificate{RevokeCertificate: &shoalv1.RevokeCertificateRequest{SerialNumber: serial}}}
	if now >= 0 {
		cmd.Audit = auditOf("bob", "admin", "RevokeCertificate", now)
	}
	return cmd
}

func serials(st *shoalv1.State) []string {
	var out []string
	for _, c := range st.GetCertificates() {
		out = append(out, c.GetInfo().GetSerialNumber())
	}
	return out
}

// fullCertificates is maxCertificates live records, the first expired of
// them expiring at 5 and the rest at 1000.
func fullCertificates(expired int) []*shoalv1.IssuedCertificate {
	out := make([]*shoalv1.IssuedCertificate, 0, maxCertificates)
	for i := range maxCertificates {
		exp := int64(1000)
		if i < expired {
			exp = 5
		}
		out = append(out, issued(fmt.Sprintf("%05x", i), exp))
	}
	return out
}

func certificateBy(st *shoalv1.State, serial string) *shoalv1.IssuedCertificate {
	for _, c := range st.GetCertificates() {
		if c.GetInfo().GetSerialNumber() == serial {
			return c
		}
	}
	return nil
}

func TestRecordCertificate(t *testing.T) {
	noSerial := issued("", 100)
	noExpiry := issued("0b", 100)
	noExpiry.Info.NotAfter = nil
	full := fullCertificates(0)
	tests := []struct {
		name string
		have []*shoalv1.IssuedCertificate
		cmd  *shoalv1.Command
		kind ErrorKind // 0: success
		text string
		want []string // serials after
	}{
		{name: "record", cmd: recordCmd(issued("0b", 100), 10), want: []string{"0b"}},
		{name: "sorted by serial", have: []*shoalv1.IssuedCertificate{issued("0a", 100), issued("0c", 100)},
			cmd: recordCmd(issued("0b", 100), 10), want: []string{"0a", "0b", "0c"}},
		{name: "first", have: []*shoalv1.IssuedCertificate{issued("0b", 100)}, cmd: recordCmd(issued("01", 100), 10), want: []string{"01", "0b"}},
		{name: "last", have: []*shoalv1.IssuedCertificate{issued("0b", 100)}, cmd: recordCmd(issued("ff", 100), 10), want: []string{"0b", "ff"}},
		{name: "duplicate", have: []*shoalv1.IssuedCertificate{issued("0a", 100), issued("0b", 100)}, cmd: recordCmd(issued("0b", 200), 10),
			kind: KindAlreadyExists, text: "0b is recorded already"},
		{name: "duplicate of a revoked one", have: []*shoalv1.IssuedCertificate{revokedCopy(issued("0b", 100))}, cmd: recordCmd(issued("0b", 200), 10),
			kind: KindAlreadyExists, text: "0b"},
		{name: "no serial", cmd: recordCmd(noSerial, 10), kind: KindInvalid, text: "serial_number and not_after are required"},
		{name: "no expiry", cmd: recordCmd(noExpiry, 10), kind: KindInvalid, text: "serial_number and not_after are required"},
		{name: "no info", cmd: recordCmd(&shoalv1.IssuedCertificate{IssuedBy: "alice"}, 10), kind: KindInvalid, text: "info"},
		{name: "expired ones are dropped", have: []*shoalv1.IssuedCertificate{issued("01", 5), issued("02", 100), issued("03", 10), issued("0c", 9)},
			cmd: recordCmd(issued("0b", 100), 10), want: []string{"02", "0b"}},
		{name: "an expired duplicate is no duplicate", have: []*shoalv1.IssuedCertificate{issued("0b", 5)},
			cmd: recordCmd(issued("0b", 100), 10), want: []string{"0b"}},
		{name: "nothing is dropped without a time", have: []*shoalv1.IssuedCertificate{issued("01", 5)},
			cmd: recordCmd(issued("0b", 100), -1), want: []string{"01", "0b"}},
		{name: "too many live certificates", have: full, cmd: recordCmd(issued("fffff", 2000), 10),
			kind: KindFailedPrecondition, text: fmt.Sprintf("%d certificates are live", maxCertificates)},
		{name: "expired ones do not count", have: fullCertificates(1), cmd: recordCmd(issued("fffff", 2000), 10),
			want: append(serials(&shoalv1.State{Certificates: full[1:]}), "fffff")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := baseState(t)
			st.Certificates = tt.have
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
			if got := serials(res.State); !slices.Equal(got, tt.want) {
				t.Errorf("certificates %v, want %v", short(got), short(tt.want))
			}
			if res.State.GetConfig() != st.GetConfig() || len(res.State.GetHistory()) != len(st.GetHistory()) || len(res.Changes) != 0 {
				t.Error("recording a certificate changed the configuration or its history")
			}
			rec := tt.cmd.GetRecordCertificate()
			stored := certificateBy(res.State, rec.GetInfo().GetSerialNumber())
			if stored == rec || !proto.Equal(stored, rec) {
				t.Errorf("stored record %v: want a copy of %v", stored, rec)
			}
		})
	}
}

// short keeps a failure about maxCertificates serials readable.
func short(s []string) []string {
	if len(s) > 6 {
		return append(slices.Clip(s[:3]), "…", s[len(s)-2], s[len(s)-1])
	}
	return s
}

func revokedCopy(c *shoalv1.IssuedCertificate) *shoalv1.IssuedCertificate {
	c = proto.Clone(c).(*shoalv1.IssuedCertificate)
	c.RevokedBy, c.Revoked = "carol", at(1)
	return c
}

func TestRevokeCertificate(t *testing.T) {
	maxLife := int64(pki.MaxClientLifetime / time.Second)
	tests := []struct {
		name string
		have []*shoalv1.IssuedCertificate
		cmd  *shoalv1.Command
		kind ErrorKind // 0: success
		text string
		same bool     // the state is returned as it was
		want []string // serials after
		// revoked is the serial that must end up revoked by bob at 10 (or,
		// for a second revocation, by whoever revoked it first).
		revoked string
		// recorded: the revoked certificate was not known, and is kept
		// until the longest a client certificate can live has passed.
		recorded bool
	}{
		{name: "known", have: []*shoalv1.IssuedCertificate{issued("0a", 100), issued("0b", 100), issued("0c", 100)},
			cmd: revokeCmd("0b", 10), want: []string{"0a", "0b", "0c"}, revoked: "0b"},
		{name: "upper case and spaces", have: []*shoalv1.IssuedCertificate{issued("ab", 100)},
			cmd: revokeCmd(" AB\n", 10), want: []string{"ab"}, revoked: "ab"},
		{name: "unknown", have: []*shoalv1.IssuedCertificate{issued("0a", 100), issued("0c", 100)},
			cmd: revokeCmd("0b", 10), want: []string{"0a", "0b", "0c"}, revoked: "0b", recorded: true},
		{name: "unknown into an empty list", cmd: revokeCmd("DEADBEEF", 10), want: []string{"deadbeef"}, revoked: "deadbeef", recorded: true},
		{name: "expired one is gone, so unknown", have: []*shoalv1.IssuedCertificate{issued("0b", 5)},
			cmd: revokeCmd("0b", 10), want: []string{"0b"}, revoked: "0b", recorded: true},
		{name: "expired ones are dropped", have: []*shoalv1.IssuedCertificate{issued("01", 5), issued("0b", 100), issued("0c", 10)},
			cmd: revokeCmd("0b", 10), want: []string{"0b"}, revoked: "0b"},
		{name: "twice", have: []*shoalv1.IssuedCertificate{issued("0a", 100), revokedCopy(issued("0b", 100))},
			cmd: revokeCmd("0b", 10), same: true, want: []string{"0a", "0b"}},
		{name: "twice with expired ones about", have: []*shoalv1.IssuedCertificate{issued("01", 5), revokedCopy(issued("0b", 100))},
			cmd: revokeCmd("0b", 10), same: true, want: []string{"01", "0b"}},
		{name: "empty serial", cmd: revokeCmd("", 10), kind: KindInvalid, text: "serial_number"},
		{name: "blank serial", cmd: revokeCmd("  ", 10), kind: KindInvalid, text: "serial_number"},
		{name: "not hex", cmd: revokeCmd("0b-1", 10), kind: KindInvalid, text: `"0b-1" is not a hex serial number`},
		{name: "0x prefix", cmd: revokeCmd("0x0b", 10), kind: KindInvalid, text: "not a hex serial number"},
		{name: "unknown when full", have: fullCertificates(0), cmd: revokeCmd("fffff", 10),
			kind: KindFailedPrecondition, text: fmt.Sprintf("%d certificates are live", maxCertificates)},
		{name: "known when full", have: fullCertificates(0), cmd: revokeCmd("00007", 10),
			want: serials(&shoalv1.State{Certificates: fullCertificates(0)}), revoked: "00007"},
		{name: "unknown when full of expired ones", have: fullCertificates(maxCertificates), cmd: revokeCmd("fffff", 10),
			want: []string{"fffff"}, revoked: "fffff", recorded: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := baseState(t)
			st.Certificates = tt.have
			before := proto.Clone(st).(*shoalv1.State)
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
			if (res.State == st) != tt.same {
				t.Errorf("same state %v, want %v", res.State == st, tt.same)
			}
			if got := serials(res.State); !slices.Equal(got, tt.want) {
				t.Errorf("certificates %v, want %v", short(got), short(tt.want))
			}
			if res.State.GetConfig() != st.GetConfig() || len(res.State.GetHistory()) != len(st.GetHistory()) || len(res.Changes) != 0 {
				t.Error("revoking a certificate changed the configuration or its history")
			}
			// Every other record is the one before, untouched.
			was := map[string]*shoalv1.IssuedCertificate{}
			for _, c := range before.GetCertificates() {
				was[c.GetInfo().GetSerialNumber()] = c
			}
			for _, c := range res.State.GetCertificates() {
				serial := c.GetInfo().GetSerialNumber()
				if serial == tt.revoked {
					continue
				}
				if old := was[serial]; !proto.Equal(c, old) {
					t.Errorf("record %s changed: %v, was %v", serial, c, old)
				}
			}
			if tt.revoked == "" {
				return
			}
			got := certificateBy(res.State, tt.revoked)
			if got.GetRevokedBy() != "bob" || !proto.Equal(got.GetRevoked(), at(10)) {
				t.Errorf("%s revoked by %q at %v, want bob at %v", tt.revoked, got.GetRevokedBy(), got.GetRevoked(), at(10))
			}
			if tt.recorded {
				want := &shoalv1.IssuedCertificate{Info: &shoalv1.CertificateInfo{SerialNumber: tt.revoked, NotAfter: at(10 + maxLife)},
					RevokedBy: "bob", Revoked: at(10)}
				if !proto.Equal(got, want) {
					t.Errorf("recorded %v, want %v", got, want)
				}
				return
			}
			old := certificateBy(before, tt.revoked)
			if !proto.Equal(got.GetInfo(), old.GetInfo()) || got.GetIssuedBy() != old.GetIssuedBy() || !proto.Equal(got.GetIssued(), old.GetIssued()) {
				t.Errorf("revoking %s changed what was recorded of it: %v, was %v", tt.revoked, got, old)
			}
			if in := certificateBy(st, tt.revoked); in == got || in.GetRevoked() != nil || in.GetRevokedBy() != "" {
				t.Errorf("the input state's record of %s was revoked in place: %v", tt.revoked, in)
			}
		})
	}
}

// TestRevokeWithoutTime: a command without an audit (none the API sends)
// still revokes, without a time, and drops nothing; an unknown serial is
// then kept for good, there being no time to count its life from.
func TestRevokeWithoutTime(t *testing.T) {
	st := baseState(t)
	st.Certificates = []*shoalv1.IssuedCertificate{issued("01", 5), issued("0b", 100)}
	res := applied(t, st, revokeCmd("0b", -1))
	if got := serials(res.State); !slices.Equal(got, []string{"01", "0b"}) {
		t.Errorf("certificates %v, want [01 0b]", got)
	}
	if c := certificateBy(res.State, "0b"); c.GetRevokedBy() != "" || c.GetRevoked() != nil || c == st.Certificates[1] {
		t.Errorf("revoked without an audit: %v", c)
	}
	res = applied(t, res.State, revokeCmd("0c", -1))
	if c := certificateBy(res.State, "0c"); c == nil || c.GetInfo().GetNotAfter() != nil {
		t.Errorf("unknown serial revoked without an audit: %v", c)
	}
}

// TestCertificatesSurvive: other commands keep the certificates, and a
// snapshot carries them to a restored FSM.
func TestCertificatesSurvive(t *testing.T) {
	f := NewFSM()
	logs := logOf(t,
		recordCmd(issued("0b", 100), 1),
		recordCmd(issued("0a", 100), 2),
		revokeCmd("0b", 3),
		revokeCmd("Cafe", 4),
		audited(createCmd(svc("web", "192.0.2.10", 80, "10.0.0.1")), auditOf("alice", "admin", "CreateVirtualService", 5)),
		&shoalv1.Command{Op: &shoalv1.Command_RegisterMember{RegisterMember: &shoalv1.RegisterMember{Id: "n1", ApiAddress: "127.0.0.1:7070"}}},
		createTokenCmd(joinToken("t1", 100), 6),
		&shoalv1.Command{Op: &shoalv1.Command_InstallCa{InstallCa: &shoalv1.ClusterCA{Certificate: []byte("cert"), Key: []byte("key")}}},
		audited(deleteCmd("web"), auditOf("alice", "admin", "DeleteVirtualService", 7)),
	)
	var afterRevokes *shoalv1.State
	for _, l := range logs {
		if err, ok := f.Apply(l).(error); ok {
			t.Fatalf("index %d: %v", l.Index, err)
		}
		if l.Index == 4 {
			afterRevokes = f.State()
		}
	}
	st := f.State()
	if st.GetConfig().GetSerial() != 2 {
		t.Errorf("serial %d, want 2: certificate commands keep the serial", st.GetConfig().GetSerial())
	}
	if !slices.Equal(serials(st), []string{"0a", "0b", "cafe"}) || !slices.Equal(st.GetCertificates(), afterRevokes.GetCertificates()) {
		t.Fatalf("certificates after other commands %v, want the list as the revocations left it %v", serials(st), serials(afterRevokes))
	}
	if c := certificateBy(st, "0b"); c.GetRevokedBy() != "bob" || c.GetInfo().GetName() != "cert-0b" {
		t.Errorf("0b: %v", c)
	}

	b := snapshotBytes(t, f)
	g := NewFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(g.State(), st) || g.AppliedIndex() != uint64(len(logs)) {
		t.Fatalf("restored state at %d:\n%v\nwant at %d:\n%v", g.AppliedIndex(), g.State(), len(logs), st)
	}
	// The restored FSM goes on from there as the original does.
	for i, cmd := range []*shoalv1.Command{revokeCmd("0a", 8), recordCmd(issued("0b", 100), 9), recordCmd(issued("0d", 100), 10)} {
		data, err := proto.Marshal(cmd)
		if err != nil {
			t.Fatal(err)
		}
		l := &raft.Log{Index: uint64(len(logs) + 1 + i), Type: raft.LogCommand, Data: data}
		if ra, rb := f.Apply(l), g.Apply(l); fmt.Sprint(ra) != fmt.Sprint(rb) {
			t.Errorf("index %d: original %v, restored %v", l.Index, ra, rb)
		}
	}
	if !proto.Equal(f.State(), g.State()) || certificateBy(g.State(), "0a").GetRevokedBy() != "bob" {
		t.Errorf("after more commands the restored FSM has %v, the original %v", g.State().GetCertificates(), f.State().GetCertificates())
	}
}
