package server

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/shoal-lb/shoal/pki"
	shoalv1 "github.com/shoal-lb/shoal/proto/shoal/v1"
)

// TestLocalConn: a call over the in-process connection is the holder of
// the certificate it carries, checked by the same role table, and refused
// without one; a network client cannot claim a certificate that way.
func TestLocalConn(t *testing.T) {
	c := startSecureCluster(t)
	ctx := ctxT(t)
	_, followers := c.leader(t)
	n := followers[0]
	conn, stop, err := n.srv.LocalConn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(); stop() })
	chain := func(c *tls.Certificate) []*x509.Certificate { return []*x509.Certificate{c.Leaf} }
	viewer := clientTLS(t, c.ca, "vera", pki.RoleViewer, time.Now(), time.Hour)
	operator := clientTLS(t, c.ca, "olga", pki.RoleOperator, time.Now(), time.Hour)

	cs := shoalv1.NewClusterServiceClient(conn)
	me, err := cs.WhoAmI(WithCaller(ctx, chain(viewer)), &shoalv1.WhoAmIRequest{})
	if err != nil || me.GetName() != "vera" || me.GetRole() != "viewer" || !me.GetTls() {
		t.Fatalf("WhoAmI as vera: %v %v", me, err)
	}
	_, err = cs.WhoAmI(ctx, &shoalv1.WhoAmIRequest{})
	wantCode(t, "no certificate", err, codes.Unauthenticated, "needs a client certificate")
	stranger, _ := pki.NewCA(time.Now())
	_, err = cs.WhoAmI(WithCaller(ctx, chain(clientTLS(t, stranger, "eve", pki.RoleAdmin, time.Now(), time.Hour))), &shoalv1.WhoAmIRequest{})
	wantCode(t, "another CA's certificate", err, codes.Unauthenticated)

	admin := shoalv1.NewLoadBalancerServiceClient(c.dial(t, n.apiAddr, c.admin))
	if _, err := admin.CreateVirtualService(ctx, &shoalv1.CreateVirtualServiceRequest{Service: &shoalv1.VirtualService{
		Name: "web", Vip: &shoalv1.Address{Address: "192.0.2.10"}, Port: 80, Protocol: "tcp",
		RealServers: []*shoalv1.RealServer{{Address: "10.0.0.1"}}}}); err != nil {
		t.Fatal(err)
	}
	lb := shoalv1.NewLoadBalancerServiceClient(conn)
	disable := &shoalv1.UpdateRealServerRequest{Service: "web", RealServer: &shoalv1.RealServer{Address: "10.0.0.1", Active: new(false)},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"active"}}}
	_, err = lb.UpdateRealServer(WithCaller(ctx, chain(viewer)), disable)
	wantCode(t, "a viewer's edit", err, codes.PermissionDenied, "needs role operator")
	up, err := lb.UpdateRealServer(WithCaller(ctx, chain(operator)), disable)
	if err != nil {
		t.Fatalf("an operator's edit through follower %s: %v", n.id, err)
	}
	h, err := shoalv1.NewConfigServiceClient(conn).GetHistoryEntry(WithCaller(ctx, chain(viewer)), &shoalv1.GetHistoryEntryRequest{Serial: up.GetSerial()})
	if err != nil || h.GetEntry().GetActor() != "olga" || h.GetEntry().GetRole() != "operator" {
		t.Fatalf("history of the local edit: %v %v, want olga (operator)", h.GetEntry(), err)
	}

	// Over the network the header is only a header: the caller is the
	// certificate of the TLS session.
	forged := metadata.NewOutgoingContext(ctx, metadata.Pairs(localCertKey, string(c.admin.Leaf.Raw)))
	_, err = shoalv1.NewLoadBalancerServiceClient(c.dial(t, n.apiAddr, viewer)).UpdateRealServer(forged, disable)
	wantCode(t, "a viewer claiming the admin's certificate over the network", err, codes.PermissionDenied, "needs role operator")
}
