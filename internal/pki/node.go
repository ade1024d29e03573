package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/containerd/errdefs"
)

// Organizations that say what a certificate of this CA is for. The CA
// signs nothing else with them, so a verified chain plus the organization
// is the identity.
const (
	// NodesOrg marks the certificate of a node, named by its CN.
	NodesOrg = "berth:nodes"
	// APIServersOrg marks the API server's client certificate.
	APIServersOrg = "berth:apiservers"

	apiServerName = "berth-apiserver"
)

// DefaultNodeCertTTL is how long a node's certificate holds; the node
// joins again with a new token to get another.
const DefaultNodeCertTTL = 365 * 24 * time.Hour

// SignNode issues the certificate of node for the key of csrDER (a DER
// certificate request the node signed). Only the key is taken from the
// request: the name and the addresses are what the server decided, so a
// node cannot ask for someone else's. The certificate serves both the
// node's calls to the API (client) and its own server for logs and exec
// (server, for the node name and ips). A request that does not parse or
// whose signature is wrong is errdefs.ErrInvalidArgument.
func (b *Bundle) SignNode(csrDER []byte, node string, ips []net.IP, ttl time.Duration) ([]byte, error) {
	if node == "" {
		return nil, fmt.Errorf("sign node certificate: no node name: %w", errdefs.ErrInvalidArgument)
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("sign node certificate: ttl %s is not positive: %w", ttl, errdefs.ErrInvalidArgument)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("sign node certificate: parse request: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("sign node certificate: request of node %s: %v: %w", node, err, errdefs.ErrInvalidArgument)
	}
	now := time.Now()
	notAfter := now.Add(ttl)
	if notAfter.After(b.caCert.NotAfter) {
		notAfter = b.caCert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: node, Organization: []string{NodesOrg}},
		NotBefore:    now.Add(-5 * time.Minute), // some slack for the node's clock
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{node},
		IPAddresses:  slices.Clone(ips),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, b.caCert, csr.PublicKey, b.caKey)
	if err != nil {
		// A key type x509 cannot certify is the request's fault.
		return nil, fmt.Errorf("sign node certificate for %s: %v: %w", node, err, errdefs.ErrInvalidArgument)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// NodeName is the node a certificate SignNode issued names; ok is false
// for any other certificate. c must already be verified against the CA
// (a TLS handshake's verified chain): the fields alone prove nothing.
func NodeName(c *x509.Certificate) (string, bool) {
	if c == nil || c.Subject.CommonName == "" || !slices.Equal(c.Subject.Organization, []string{NodesOrg}) {
		return "", false
	}
	return c.Subject.CommonName, true
}

// IsAPIServer reports whether c is the API server's client certificate;
// like NodeName, only for a certificate already verified against the CA.
func IsAPIServer(c *x509.Certificate) bool {
	return c != nil && c.Subject.CommonName == apiServerName &&
		slices.Equal(c.Subject.Organization, []string{APIServersOrg})
}

// NewNodeKey makes an agent's private key (PEM) and the certificate
// request for it (DER) that the agent sends when it joins.
func NewNodeKey(node string, ips []net.IP) (keyPEM, csrDER []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %w", err)
	}
	csrDER, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: node, Organization: []string{NodesOrg}},
		DNSNames:    []string{node},
		IPAddresses: ips,
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: create certificate request: %w", err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), csrDER, nil
}
