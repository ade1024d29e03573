package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
)

// The servers of one cluster share the CA and the admin token: any of
// them signs joining nodes and accepts the others' certificates. A server
// that joins gets both from the cluster (Seed) before Ensure makes its own
// server and client certificates.

const (
	peerFile    = "etcd-peer.pem"
	peerKeyFile = "etcd-peer-key.pem"
)

// CAKeyPEM is the CA's private key in PEM, for a server joining the
// cluster: the only thing that may ever receive it.
func (b *Bundle) CAKeyPEM() ([]byte, error) {
	kb, err := x509.MarshalECPrivateKey(b.caKey)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}

// Seed puts a cluster's CA (certificate and key in PEM) and admin token
// into dir before its first Ensure. A dir that already has another CA is
// errdefs.ErrFailedPrecondition: it belongs to another cluster.
func Seed(dir string, caPEM, caKeyPEM []byte, token string) error {
	if _, err := tls.X509KeyPair(caPEM, caKeyPEM); err != nil {
		return fmt.Errorf("pki: the cluster's CA does not match its key: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return fmt.Errorf("pki: the cluster's admin token is empty: %w", errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	have, err := os.ReadFile(filepath.Join(dir, CAFile))
	switch {
	case err == nil && !bytes.Equal(bytes.TrimSpace(have), bytes.TrimSpace(caPEM)):
		return fmt.Errorf("pki: %s holds the CA of another cluster: %w", dir, errdefs.ErrFailedPrecondition)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("pki: %w", err)
	}
	// The key first: a CA certificate without its key would make Ensure
	// fail rather than quietly start a CA of its own.
	if err := WriteFileAtomic(filepath.Join(dir, caKeyFile), caKeyPEM, 0o600); err != nil {
		return err
	}
	if err := WriteFileAtomic(filepath.Join(dir, CAFile), caPEM, 0o644); err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, tokenFile), []byte(token+"\n"), 0o600)
}

// PeerCert is where the server's etcd peer certificate and key are.
type PeerCert struct {
	CertFile, KeyFile, CAFile string
}

// EnsurePeer returns the etcd peer certificate of this server, issuing it
// when it is missing, does not name host or is about to expire. It serves
// both ends of a peer connection, and its CN is cn, which the members
// require (a node's certificate, from the same CA, has another).
func (b *Bundle) EnsurePeer(dir, host, cn string) (PeerCert, error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: []string{"Berth"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	keep := func(c *x509.Certificate) bool {
		return c.Subject.CommonName == cn && c.VerifyHostname(host) == nil &&
			slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	abs, err := filepath.Abs(dir)
	if err == nil {
		err = os.MkdirAll(abs, 0o700)
	}
	if err != nil {
		return PeerCert{}, fmt.Errorf("pki: %w", err)
	}
	pc := PeerCert{CertFile: filepath.Join(abs, peerFile), KeyFile: filepath.Join(abs, peerKeyFile), CAFile: b.CAPath}
	if _, err := loadOrIssue(pc.CertFile, pc.KeyFile, b.caCert, b.caKey, tmpl, keep, "etcd peer certificate"); err != nil {
		return PeerCert{}, err
	}
	return pc, nil
}
