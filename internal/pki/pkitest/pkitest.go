// Package pkitest makes throwaway CAs and certificates for tests of
// mutual TLS: a server certificate for 127.0.0.1, client certificates by
// common name. Production certificates come from internal/pki.
package pkitest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// CA is a test certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// Pool holds Cert alone: the RootCAs or ClientCAs of a TLS config.
	Pool *x509.CertPool
}

var serial atomic.Int64

// lifetime covers any test run: valid from an hour ago to a day ahead.
func lifetime() (notBefore, notAfter time.Time) {
	return time.Now().Add(-time.Hour), time.Now().Add(24 * time.Hour)
}

// New makes a CA.
func New() (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	nb, na := lifetime()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: "berth test CA"},
		NotBefore: nb, NotAfter: na,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return caOf(der, key)
}

// MustNew is New for tests: it panics on an error, which only a broken
// crypto library causes.
func MustNew() *CA {
	ca, err := New()
	if err != nil {
		panic("pkitest: " + err.Error())
	}
	return ca
}

func caOf(der []byte, key *ecdsa.PrivateKey) (*CA, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Key: key, Pool: pool}, nil
}

// Issue returns a server certificate for 127.0.0.1 named cn, or with
// server false a client certificate named cn.
func (ca *CA) Issue(cn string, server bool) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	nb, na := lifetime()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: nb, NotAfter: na,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// MustIssue is Issue for tests; it panics on an error.
func (ca *CA) MustIssue(cn string, server bool) tls.Certificate {
	c, err := ca.Issue(cn, server)
	if err != nil {
		panic("pkitest: " + err.Error())
	}
	return c
}

// Save writes the CA's certificate and key under dir (ca.pem,
// ca-key.pem), for another process of the test to Load.
func (ca *CA) Save(dir string) error {
	kd, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "ca-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
}

// Load reads a CA that Save wrote under dir.
func Load(dir string) (*CA, error) {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM block", name)
		}
		return blk.Bytes, nil
	}
	der, err := read("ca.pem")
	if err != nil {
		return nil, err
	}
	kd, err := read("ca-key.pem")
	if err != nil {
		return nil, err
	}
	key, err := x509.ParseECPrivateKey(kd)
	if err != nil {
		return nil, err
	}
	return caOf(der, key)
}
