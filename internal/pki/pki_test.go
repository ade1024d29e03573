package pki

import (
	"crypto/x509"
	"os"
	"testing"
)

func TestEnsure_CreatesThenReuses(t *testing.T) {
	dir := t.TempDir()
	first, err := Ensure(dir, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Token) != 64 {
		t.Errorf("token length = %d, want 64 hex chars", len(first.Token))
	}
	pemBytes, err := os.ReadFile(first.CAPath)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("CA file holds no certificate")
	}
	if _, err := first.ServerCert.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1"}); err != nil {
		t.Errorf("server certificate does not verify for 127.0.0.1: %v", err)
	}

	second, err := Ensure(dir, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if second.Token != first.Token {
		t.Error("token changed on reload")
	}
	if !second.ServerCert.Leaf.Equal(first.ServerCert.Leaf) {
		t.Error("server certificate was reissued although it still covers the hosts")
	}

	third, err := Ensure(dir, []string{"berth.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if third.ServerCert.Leaf.Equal(first.ServerCert.Leaf) {
		t.Error("server certificate not reissued for a new host")
	}
	if _, err := third.ServerCert.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "berth.example.test"}); err != nil {
		t.Errorf("reissued certificate not signed by the same CA for the new host: %v", err)
	}
}
