// Package pki creates and reloads what Berth's listeners and clients trust:
// a CA, a server certificate signed by it, the API server's client
// certificate for calling nodes, and the admin bearer token. All of it
// lives in the data dir and is reused across restarts. The CA also signs
// the certificates of joining nodes (node.go).
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File names under the PKI dir.
const (
	CAFile        = "ca.pem"
	caKeyFile     = "ca-key.pem"
	serverFile    = "server.pem"
	serverKeyFile = "server-key.pem"
	apiClientFile = "apiserver-client.pem"
	apiClientKey  = "apiserver-client-key.pem"
	tokenFile     = "admin.token"
)

// Bundle is the loaded material.
type Bundle struct {
	// CAPath is the absolute path of the CA certificate clients trust.
	CAPath string
	// ServerCert is the listener's certificate and key.
	ServerCert tls.Certificate
	// Token is the admin bearer token.
	Token string

	caCert    *x509.Certificate
	caKey     *ecdsa.PrivateKey
	caPEM     []byte
	apiClient tls.Certificate
}

// CAPEM is the CA certificate in PEM, as nodes get it when they join.
func (b *Bundle) CAPEM() []byte { return slices.Clone(b.caPEM) }

// CAPool is a pool holding only the CA: what verifies the server, the
// nodes and the API server's client certificate.
func (b *Bundle) CAPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(b.caCert)
	return p
}

// APIClientCert is the API server's identity when it calls a node's
// server (logs, exec, attach); IsAPIServer recognises it there.
func (b *Bundle) APIClientCert() tls.Certificate { return b.apiClient }

// Ensure loads the PKI under dir, creating what is missing. The server
// certificate is renewed when it does not cover hosts or is about to expire.
func Ensure(dir string, hosts []string) (*Bundle, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	caCert, caKey, err := loadOrCreateCA(abs)
	if err != nil {
		return nil, err
	}
	cert, err := loadOrCreateServer(abs, caCert, caKey, hosts)
	if err != nil {
		return nil, err
	}
	apiClient, err := loadOrCreateAPIClient(abs, caCert, caKey)
	if err != nil {
		return nil, err
	}
	tok, err := loadOrCreateToken(filepath.Join(abs, tokenFile))
	if err != nil {
		return nil, err
	}
	return &Bundle{
		CAPath: filepath.Join(abs, CAFile), ServerCert: cert, Token: tok,
		caCert: caCert, caKey: caKey, apiClient: apiClient,
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw}),
	}, nil
}

func loadOrCreateCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, caKeyFile)
	if pair, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
		if !ok {
			return nil, nil, errors.New("pki: CA key is not ECDSA")
		}
		return pair.Leaf, key, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("pki: load CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Berth CA", Organization: []string{"Berth"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: create CA: %w", err)
	}
	if err := writePair(certPath, keyPath, der, key); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %w", err)
	}
	return cert, key, nil
}

func loadOrCreateServer(dir string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string) (tls.Certificate, error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "berth-server", Organization: []string{"Berth"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range allHosts(hosts) {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	keep := func(c *x509.Certificate) bool { return covers(c, hosts) }
	return loadOrIssue(filepath.Join(dir, serverFile), filepath.Join(dir, serverKeyFile), ca, caKey, tmpl, keep, "server certificate")
}

// loadOrCreateAPIClient returns the API server's client certificate,
// issuing a new one when it is missing, about to expire or not the CA's.
func loadOrCreateAPIClient(dir string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (tls.Certificate, error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: apiServerName, Organization: []string{APIServersOrg}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return loadOrIssue(filepath.Join(dir, apiClientFile), filepath.Join(dir, apiClientKey), ca, caKey, tmpl, IsAPIServer, "API server client certificate")
}

// loadOrIssue returns the pair at certPath and keyPath while keep accepts
// it, the CA signed it and it has more than 30 days left; otherwise it
// issues a new one from tmpl (subject, usages, names), valid for two
// years, and writes it there.
func loadOrIssue(certPath, keyPath string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, tmpl *x509.Certificate, keep func(*x509.Certificate) bool, what string) (tls.Certificate, error) {
	if pair, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && keep(pair.Leaf) &&
		time.Until(pair.Leaf.NotAfter) > 30*24*time.Hour && pair.Leaf.CheckSignatureFrom(ca) == nil {
		return pair, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: %w", err)
	}
	now := time.Now()
	tmpl.SerialNumber = serial()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.AddDate(2, 0, 0)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: create %s: %w", what, err)
	}
	if err := writePair(certPath, keyPath, der, key); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(certPath, keyPath)
}

// allHosts is what every server certificate names: loopback, this host,
// and the hosts the listener was given.
func allHosts(hosts []string) []string {
	all := []string{"localhost", "127.0.0.1", "::1"}
	if hn, err := os.Hostname(); err == nil && hn != "" {
		all = append(all, hn)
	}
	for _, h := range hosts {
		if h != "" && h != "0.0.0.0" && h != "::" && !slices.Contains(all, h) {
			all = append(all, h)
		}
	}
	return all
}

func covers(c *x509.Certificate, hosts []string) bool {
	for _, h := range allHosts(hosts) {
		if c.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func loadOrCreateToken(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if tok := strings.TrimSpace(string(b)); tok != "" {
			return tok, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("pki: read token: %w", err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("pki: %w", err)
	}
	tok := hex.EncodeToString(b)
	if err := WriteFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", err
	}
	return tok, nil
}

func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := WriteFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return WriteFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// WriteFileAtomic writes data to path through a temporary file and a
// rename, so readers never see a half-written file.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
