package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Role is what a certificate may do. Client roles are ordered: an admin may
// do what an operator may, an operator what a viewer may. A node is not a
// client: it may do what routers do to each other.
type Role string

const (
	RoleViewer   Role = "viewer"
	RoleOperator Role = "operator"
	RoleAdmin    Role = "admin"
	RoleNode     Role = "node"
)

func (r Role) rank() int {
	switch r {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Client reports whether r is a role for people and programs: viewer,
// operator or admin.
func (r Role) Client() bool { return r.rank() > 0 }

// Covers reports whether a holder of r may do what needs the client role
// need.
func (r Role) Covers(need Role) bool { return need.Client() && r.rank() >= need.rank() }

// ParseRole reads a client role.
func ParseRole(s string) (Role, error) {
	r := Role(strings.ToLower(strings.TrimSpace(s)))
	if !r.Client() {
		return "", fmt.Errorf("role %q: want viewer, operator or admin", s)
	}
	return r, nil
}

// Identity is what a verified certificate says of its holder.
type Identity struct {
	// Name is a node's ID or a client's name.
	Name string
	Role Role
	Cert *x509.Certificate
}

const uriScheme = "shoal"

func nodeURI(id string) *url.URL { return &url.URL{Scheme: uriScheme, Host: "node", Path: "/" + id} }
func roleURI(r Role) *url.URL {
	return &url.URL{Scheme: uriScheme, Host: "role", Path: "/" + string(r)}
}

// IdentityOf reads the shoal URI of a certificate: a node's ID or a
// client's role. A certificate with none, or with both, is no identity. It
// does not verify the certificate: Verify does.
func IdentityOf(c *x509.Certificate) (Identity, error) {
	var id Identity
	for _, u := range c.URIs {
		if u.Scheme != uriScheme {
			continue
		}
		v := strings.TrimPrefix(u.Path, "/")
		switch {
		case id.Role != "":
			return Identity{}, &AuthError{Reason: ReasonNoRole, msg: fmt.Sprintf("certificate %q names more than one shoal role", c.Subject.CommonName)}
		case u.Host == "node" && checkName("node id", v) == nil:
			id = Identity{Name: v, Role: RoleNode, Cert: c}
		case u.Host == "role" && Role(v).Client():
			id = Identity{Name: c.Subject.CommonName, Role: Role(v), Cert: c}
		}
	}
	if id.Role == "" {
		return Identity{}, &AuthError{Reason: ReasonNoRole, msg: fmt.Sprintf(
			"certificate %q carries no shoal role (a URI SAN shoal://role/viewer|operator|admin or shoal://node/ID)", c.Subject.CommonName)}
	}
	return id, nil
}

// Reasons an AuthError gives, for metrics and for callers that branch.
const (
	ReasonNoCertificate = "no-certificate"
	ReasonExpired       = "expired"
	ReasonUnknownCA     = "unknown-ca"
	ReasonBadUsage      = "bad-usage"
	ReasonNoRole        = "no-role"
	ReasonInvalid       = "invalid"
)

// AuthError is a certificate that does not prove an identity.
type AuthError struct {
	Reason string
	msg    string
}

func (e *AuthError) Error() string { return e.msg }

// Verify checks a peer's certificate chain (leaf first, DER) against roots
// at now, for usage (x509.ExtKeyUsageClientAuth for a client,
// ExtKeyUsageServerAuth for a server), and returns what the leaf says of
// its holder. Host names are not checked: the cluster CA signs only
// shoal's own certificates, and the URI SAN says what each may do.
func Verify(raw [][]byte, roots *x509.CertPool, usage x509.ExtKeyUsage, now time.Time) (Identity, error) {
	if len(raw) == 0 {
		return Identity{}, &AuthError{Reason: ReasonNoCertificate, msg: "no certificate presented"}
	}
	if roots == nil {
		return Identity{}, &AuthError{Reason: ReasonUnknownCA, msg: "no CA to verify certificates with yet"}
	}
	leaf, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return Identity{}, &AuthError{Reason: ReasonInvalid, msg: "unreadable certificate: " + err.Error()}
	}
	inter := x509.NewCertPool()
	for _, r := range raw[1:] {
		if c, err := x509.ParseCertificate(r); err == nil {
			inter.AddCert(c)
		}
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
	if err != nil {
		name := leaf.Subject.CommonName
		var inv x509.CertificateInvalidError
		var unk x509.UnknownAuthorityError
		switch {
		case errors.As(err, &inv) && inv.Reason == x509.Expired:
			if now.Before(leaf.NotBefore) {
				return Identity{}, &AuthError{Reason: ReasonExpired, msg: fmt.Sprintf("certificate %q is not valid before %s (check the clocks)", name, leaf.NotBefore.UTC().Format(time.RFC3339))}
			}
			return Identity{}, &AuthError{Reason: ReasonExpired, msg: fmt.Sprintf("certificate %q expired at %s", name, leaf.NotAfter.UTC().Format(time.RFC3339))}
		case errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage:
			return Identity{}, &AuthError{Reason: ReasonBadUsage, msg: fmt.Sprintf("certificate %q is not made for this use (%s)", name, usageName(usage))}
		case errors.As(err, &unk):
			return Identity{}, &AuthError{Reason: ReasonUnknownCA, msg: fmt.Sprintf("certificate %q is not signed by this cluster's CA", name)}
		}
		return Identity{}, &AuthError{Reason: ReasonInvalid, msg: fmt.Sprintf("certificate %q: %v", name, err)}
	}
	return IdentityOf(leaf)
}

func usageName(u x509.ExtKeyUsage) string {
	if u == x509.ExtKeyUsageServerAuth {
		return "a TLS server"
	}
	return "a TLS client"
}

// checkName accepts the names certificates carry: node IDs and client
// names, 1-64 characters of letters, digits and . _ - @.
func checkName(what, s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("%s %q: want 1 to 64 characters", what, s)
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-@", r)
		if !ok {
			return fmt.Errorf("%s %q: only letters, digits and . _ - @", what, s)
		}
	}
	return nil
}

// CheckName is checkName for callers that validate a name before asking
// for a certificate, so their error names the field.
func CheckName(s string) error { return checkName("name", s) }
