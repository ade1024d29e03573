package pki

import (
	"crypto/tls"
	"crypto/x509"
	"testing"

	"github.com/containerd/errdefs"
)

// TestSeed_JoinedServerSharesTheCluster: a server seeded with the first
// server's CA and token signs with the same CA and knows the same admin.
func TestSeed_JoinedServerSharesTheCluster(t *testing.T) {
	first, err := Ensure(t.TempDir(), []string{"10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	key, err := first.CAKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := Seed(dir, first.CAPEM(), key, first.Token); err != nil {
		t.Fatalf("Seed: %v", err)
	}
	second, err := Ensure(dir, []string{"10.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	if second.Token != first.Token {
		t.Errorf("joined server's admin token = %q, want the cluster's", second.Token)
	}
	if _, err := second.ServerCert.Leaf.Verify(x509.VerifyOptions{Roots: first.CAPool(), DNSName: "10.0.0.2"}); err != nil {
		t.Errorf("joined server's certificate is not from the cluster's CA: %v", err)
	}
	// Seeding again with the same CA is harmless; another cluster's is not.
	if err := Seed(dir, first.CAPEM(), key, first.Token); err != nil {
		t.Errorf("Seed again: %v", err)
	}
	other, err := Ensure(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := other.CAKeyPEM()
	if err := Seed(dir, other.CAPEM(), otherKey, other.Token); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Seed with another cluster's CA = %v, want failed precondition", err)
	}
	if err := Seed(t.TempDir(), first.CAPEM(), otherKey, first.Token); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Seed with a key that is not the CA's = %v, want invalid argument", err)
	}
}

// TestEnsurePeer: the peer certificate serves and dials for its host, has
// the CN members require, and is kept while it still fits.
func TestEnsurePeer(t *testing.T) {
	dir := t.TempDir()
	b, err := Ensure(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := b.EnsurePeer(dir, "10.0.0.7", "berth:etcd-peer")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(pc.CertFile, pc.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: b.CAPool(), DNSName: "10.0.0.7", KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("peer certificate does not verify for usage %v: %v", usage, err)
		}
	}
	if pair.Leaf.Subject.CommonName != "berth:etcd-peer" {
		t.Errorf("CN = %q", pair.Leaf.Subject.CommonName)
	}
	again, _ := b.EnsurePeer(dir, "10.0.0.7", "berth:etcd-peer")
	pair2, _ := tls.LoadX509KeyPair(again.CertFile, again.KeyFile)
	if !pair2.Leaf.Equal(pair.Leaf) {
		t.Error("peer certificate reissued although it still fits")
	}
	moved, _ := b.EnsurePeer(dir, "10.0.0.8", "berth:etcd-peer")
	pair3, _ := tls.LoadX509KeyPair(moved.CertFile, moved.KeyFile)
	if pair3.Leaf.VerifyHostname("10.0.0.8") != nil {
		t.Error("peer certificate not reissued for a new host")
	}
}
