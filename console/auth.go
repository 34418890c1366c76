package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
	"github.com/shoal-lb/shoal/server"
)

// sessionCookie holds a session id, never the token: once a token is
// exchanged, it appears in no URL, header or page again.
const sessionCookie = "shoal_session"

// session is a logged-in browser: the console token's certificate, which
// every call made for it carries, so that the API decides each time
// (expiry, revocation, role) rather than the session.
type session struct {
	chain   []*x509.Certificate
	expires time.Time
	csrf    string
}

// user is the caller of one request, as the API names it.
type user struct {
	Name string
	Role pki.Role
	// CSRF is the token every form of this user's pages carries.
	CSRF    string
	chain   []*x509.Certificate
	session string
}

// Can says whether the API would let the user make changes that need
// role; the pages use it to leave out controls, the API to refuse them.
func (u *user) Can(role string) bool { return u.Role.Covers(pki.Role(role)) }

// HasSession says whether the user logged in with a token (and can log out).
func (u *user) HasSession() bool { return u.session != "" }

// ctx is ctx for an API call on the user's behalf.
func (u *user) ctx(ctx context.Context) context.Context { return server.WithCaller(ctx, u.chain) }

// asNode is ctx for a call on the node's own behalf (the counter samples).
func (c *Console) asNode(ctx context.Context) context.Context {
	if c.o.Store == nil || !c.o.Store.Ready() {
		return ctx
	}
	return server.WithCaller(ctx, []*x509.Certificate{c.o.Store.Leaf()})
}

var errLogin = errors.New("log in with a client certificate or a console token")

// who is the caller of r: a session, else a TLS client certificate, else,
// without TLS, the API's anonymous admin. The API names them (WhoAmI), so
// a revoked or expired certificate ends here.
func (c *Console) who(r *http.Request) (*user, error) {
	var u *user
	if ck, err := r.Cookie(sessionCookie); err == nil {
		c.mu.Lock()
		s := c.sessions[ck.Value]
		if s != nil && !time.Now().Before(s.expires) {
			delete(c.sessions, ck.Value)
			s = nil
		}
		c.mu.Unlock()
		if s != nil {
			u = &user{chain: s.chain, CSRF: s.csrf, session: ck.Value}
		}
	}
	if u == nil && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		u = &user{chain: r.TLS.PeerCertificates, CSRF: c.mac("cert", r.TLS.PeerCertificates[0].Raw)}
	}
	if u == nil && c.o.Store == nil {
		u = &user{CSRF: c.mac("anonymous", nil)}
	}
	if u == nil {
		return nil, errLogin
	}
	me, err := c.cluster.WhoAmI(u.ctx(r.Context()), &shoalv1.WhoAmIRequest{})
	if err != nil {
		if u.session != "" && status.Code(err) == codes.Unauthenticated {
			c.mu.Lock()
			delete(c.sessions, u.session)
			c.mu.Unlock()
		}
		return nil, err
	}
	u.Name, u.Role = me.GetName(), pki.Role(me.GetRole())
	return u, nil
}

func (c *Console) mac(kind string, b []byte) string {
	h := hmac.New(sha256.New, c.secret)
	h.Write([]byte(kind))
	h.Write(b)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// sameOrigin refuses a POST that a browser says came from another site;
// the CSRF token is the real check, this is the second lock.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, err := c.who(r); err == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	c.renderLogin(w, http.StatusOK, "")
}

func (c *Console) renderLogin(w http.ResponseWriter, code int, msg string) {
	c.render(w, code, "login.html", view{Title: "Log in", Node: c.o.Node, D: msg})
}

// login exchanges a console token for a session cookie.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		c.metrics.refused.WithLabelValues("csrf").Inc()
		http.Error(w, "cross-site request refused", http.StatusForbidden)
		return
	}
	if c.o.Store == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	cert, err := pki.ParseConsoleToken(r.PostFormValue("token"))
	if err != nil {
		c.log.Info("console login refused", "remote", r.RemoteAddr, "err", err)
		c.metrics.logins.WithLabelValues("bad-token").Inc()
		c.renderLogin(w, http.StatusUnauthorized, err.Error())
		return
	}
	chain := []*x509.Certificate{cert}
	me, err := c.cluster.WhoAmI(server.WithCaller(r.Context(), chain), &shoalv1.WhoAmIRequest{})
	if err != nil {
		c.log.Info("console login refused", "name", cert.Subject.CommonName, "remote", r.RemoteAddr, "err", status.Convert(err).Message())
		c.metrics.logins.WithLabelValues("refused").Inc()
		c.renderLogin(w, http.StatusUnauthorized, status.Convert(err).Message())
		return
	}
	id := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		http.Error(w, "draw a session id", http.StatusInternalServerError)
		return
	}
	sid := hex.EncodeToString(id)
	s := &session{chain: chain, expires: cert.NotAfter, csrf: c.mac("session", id)}
	c.mu.Lock()
	now := time.Now()
	for k, old := range c.sessions {
		if !now.Before(old.expires) {
			delete(c.sessions, k)
		}
	}
	c.sessions[sid] = s
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: sid, Path: "/", Expires: s.expires,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	c.metrics.logins.WithLabelValues("ok").Inc()
	c.log.Info("console login", "name", me.GetName(), "role", me.GetRole(), "serial", cert.SerialNumber.Text(16),
		"expires", s.expires, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	c.mu.Lock()
	s := c.sessions[ck.Value]
	ok := s != nil && sameOrigin(r) && subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.csrf)) == 1
	if ok {
		delete(c.sessions, ck.Value)
	}
	c.mu.Unlock()
	if !ok {
		c.metrics.refused.WithLabelValues("csrf").Inc()
		http.Error(w, "logout refused: the form's CSRF token does not match the session", http.StatusForbidden)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// authed runs h for a known caller; others go to the login page (401 for
// what is not a page).
func (c *Console) authed(h func(http.ResponseWriter, *http.Request, *user)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, err := c.who(r)
		if err != nil {
			if r.Method == http.MethodGet && r.Header.Get("Accept") != "text/event-stream" {
				msg := ""
				if !errors.Is(err, errLogin) {
					msg = status.Convert(err).Message()
				}
				c.renderLogin(w, http.StatusUnauthorized, msg)
				return
			}
			http.Error(w, status.Convert(err).Message(), http.StatusUnauthorized)
			return
		}
		h(w, r, u)
	}
}

// action is authed for a form POST: same origin and the user's CSRF
// token, or nothing happens. What the user may change is the API's to
// say, not this wrapper's.
func (c *Console) action(h func(http.ResponseWriter, *http.Request, *user)) http.HandlerFunc {
	return c.authed(func(w http.ResponseWriter, r *http.Request, u *user) {
		r.Body = http.MaxBytesReader(w, r.Body, 4<<20)
		if !sameOrigin(r) || subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(u.CSRF)) != 1 {
			c.metrics.refused.WithLabelValues("csrf").Inc()
			c.log.Warn("console request refused: CSRF", "user", u.Name, "path", r.URL.Path, "remote", r.RemoteAddr)
			c.fail(w, u, status.Error(codes.PermissionDenied, "the form's CSRF token does not match your session; reload the page and try again"))
			return
		}
		h(w, r, u)
	})
}
