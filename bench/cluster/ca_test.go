package cluster

import (
	"crypto/x509"
	"strings"
)

// nodeIdentity names the node of a client certificate "node:<name>".
func nodeIdentity(c *x509.Certificate) (string, bool) {
	return strings.CutPrefix(c.Subject.CommonName, "node:")
}
