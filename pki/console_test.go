package pki_test

import (
	"strings"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/pki"
)

func TestConsoleToken(t *testing.T) {
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name string) (string, string) {
		key, err := pki.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		der, err := pki.NewCSR(key, name, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := pki.ParseCSR(der)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.SignClient(csr, name, pki.RoleOperator, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := pki.EncodeConsoleToken(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return tok, cert.SerialNumber.String()
	}
	tok, serial := issue("web-olga")
	cert, err := pki.ParseConsoleToken(" " + tok + "\n")
	if err != nil || cert.SerialNumber.String() != serial || cert.Subject.CommonName != "web-olga" {
		t.Fatalf("parse: %v %v", cert, err)
	}
	other, _ := issue("web-eve")
	p, o := strings.Split(tok, "."), strings.Split(other, ".")
	for name, bad := range map[string]string{
		"empty":                 "",
		"a join token":          "shoal1.abcd.secret",
		"cut":                   tok[:len(tok)-10],
		"another token's key":   p[0] + "." + p[1] + "." + o[2],
		"not base64":            p[0] + "." + p[1] + ".!!!",
		"certificate is a key":  p[0] + "." + p[2] + "." + p[2],
		"no key, only the cert": p[0] + "." + p[1],
	} {
		if _, err := pki.ParseConsoleToken(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
