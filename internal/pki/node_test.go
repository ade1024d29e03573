package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestBundle_SignNode(t *testing.T) {
	b, err := Ensure(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ips := []net.IP{net.ParseIP("10.0.0.7")}
	keyPEM, csr, err := NewNodeKey("node-a", ips)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := b.SignNode(csr, "node-a", ips, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("the issued certificate does not match the node's key: %v", err)
	}
	leaf := pair.Leaf
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: b.CAPool(), KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("node certificate does not verify for usage %v: %v", usage, err)
		}
	}
	for _, host := range []string{"node-a", "10.0.0.7"} {
		if err := leaf.VerifyHostname(host); err != nil {
			t.Errorf("node certificate does not name %s: %v", host, err)
		}
	}
	if d := time.Until(leaf.NotAfter); d > time.Hour || d < 50*time.Minute {
		t.Errorf("certificate holds for %s, want about the ttl of 1h", d)
	}
	if name, ok := NodeName(leaf); !ok || name != "node-a" {
		t.Errorf("NodeName = %q, %v; want node-a, true", name, ok)
	}
	if IsAPIServer(leaf) {
		t.Error("a node certificate passes as the API server's")
	}

	t.Run("the name and addresses are the server's, not the request's", func(t *testing.T) {
		_, csr, err := NewNodeKey("other", []net.IP{net.ParseIP("192.0.2.1")})
		if err != nil {
			t.Fatal(err)
		}
		certPEM, err := b.SignNode(csr, "node-b", nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c := parsePEM(t, certPEM)
		if name, _ := NodeName(c); name != "node-b" || !slices.Equal(c.DNSNames, []string{"node-b"}) || len(c.IPAddresses) != 0 {
			t.Errorf("got name %q, DNS %v, IPs %v; want node-b, [node-b], none", name, c.DNSNames, c.IPAddresses)
		}
	})
}

func TestBundle_SignNode_BadRequest(t *testing.T) {
	b, err := Ensure(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, good, err := NewNodeKey("node-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	tampered := slices.Clone(good)
	tampered[len(tampered)-1] ^= 0xff // inside the signature
	for _, tc := range []struct {
		name string
		csr  []byte
		node string
		ttl  time.Duration
	}{
		{"garbage is refused", []byte("not a request"), "node-a", time.Hour},
		{"a request whose signature is wrong is refused", tampered, "node-a", time.Hour},
		{"no node name is refused", good, "", time.Hour},
		{"a ttl of zero is refused", good, "node-a", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.SignNode(tc.csr, tc.node, nil, tc.ttl)
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("err = %v, want invalid argument", err)
			}
		})
	}
}

func TestNodeName_OtherCertificates(t *testing.T) {
	b, err := Ensure(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	api := b.APIClientCert().Leaf
	for name, c := range map[string]*x509.Certificate{"server": b.ServerCert.Leaf, "API client": api, "CA": b.caCert, "nil": nil} {
		if n, ok := NodeName(c); ok {
			t.Errorf("NodeName(%s certificate) = %q, true; want false", name, n)
		}
	}
	if !IsAPIServer(api) {
		t.Error("IsAPIServer(API client certificate) = false")
	}
	if IsAPIServer(b.ServerCert.Leaf) {
		t.Error("IsAPIServer(server certificate) = true")
	}
	if _, err := api.Verify(x509.VerifyOptions{Roots: b.CAPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("API client certificate does not verify as a client: %v", err)
	}
	if c := parsePEM(t, b.CAPEM()); !c.Equal(b.caCert) {
		t.Error("CAPEM is not the CA")
	}
	again, err := Ensure(filepath.Dir(b.CAPath), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !again.APIClientCert().Leaf.Equal(api) {
		t.Error("API client certificate reissued on reload")
	}
}

// TestMutualTLS_NodeAndAPIServer is the handshake of the API server
// calling a node's server: each side verifies the other against the CA
// and recognises it.
func TestMutualTLS_NodeAndAPIServer(t *testing.T) {
	b, err := Ensure(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, csr, err := NewNodeKey("node-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := b.SignNode(csr, "node-a", []net.IP{net.ParseIP("127.0.0.1")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	nodeCert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{nodeCert}, ClientCAs: b.CAPool(), ClientAuth: tls.RequireAndVerifyClientCert,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan *x509.Certificate, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- nil
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			peer <- nil
			return
		}
		peer <- tc.ConnectionState().VerifiedChains[0][0]
	}()
	api := b.APIClientCert()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
		Certificates: []tls.Certificate{api}, RootCAs: b.CAPool(), ServerName: "node-a",
	})
	if err != nil {
		t.Fatalf("API server's handshake with the node: %v", err)
	}
	defer conn.Close()
	if name, ok := NodeName(conn.ConnectionState().VerifiedChains[0][0]); !ok || name != "node-a" {
		t.Errorf("the API server sees node %q, %v; want node-a", name, ok)
	}
	if c := <-peer; !IsAPIServer(c) {
		t.Errorf("the node does not see the API server: %v", c)
	}
}

func parsePEM(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
