// Package config holds the configuration of each role of the berth binary,
// with defaults and validation run before anything starts.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Server configures `berth server`: API, store and in-process agent.
type Server struct {
	DataDir            string
	Listen             string
	ContainerdAddress  string
	InsecureRegistries []string
	EtcdEndpoints      []string
	// Bridge and Subnet are the CNI bridge the node's groups attach to.
	Bridge string
	Subnet string
	// CNIPluginDirs hold the CNI plugin binaries.
	CNIPluginDirs []string
	LogLevel      string
}

// DefaultServer returns the defaults of `berth server`.
func DefaultServer() Server {
	return Server{
		DataDir:           "/var/lib/berth",
		Listen:            "127.0.0.1:8443",
		ContainerdAddress: "/run/containerd/containerd.sock",
		Bridge:            "berth0",
		Subnet:            "10.88.0.0/16",
		CNIPluginDirs:     []string{"/usr/lib/cni", "/opt/cni/bin"},
		LogLevel:          "info",
	}
}

// Validate reports every problem of the configuration at once.
func (c *Server) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir must not be empty"))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: want HOST:PORT: %w", c.Listen, err))
	}
	if c.ContainerdAddress == "" {
		errs = append(errs, errors.New("--containerd-address must not be empty"))
	}
	for _, r := range c.InsecureRegistries {
		if r == "" || strings.Contains(r, "/") {
			errs = append(errs, fmt.Errorf("--insecure-registry %q: want HOST or HOST:PORT", r))
		}
	}
	for _, e := range c.EtcdEndpoints {
		if !strings.HasPrefix(e, "http://") && !strings.HasPrefix(e, "https://") {
			errs = append(errs, fmt.Errorf("--etcd-endpoints %q: want http(s)://HOST:PORT", e))
		}
	}
	if l := len(c.Bridge); l == 0 || l > 15 {
		errs = append(errs, fmt.Errorf("--bridge-name %q: want 1 to 15 characters", c.Bridge))
	}
	if p, err := netip.ParsePrefix(c.Subnet); err != nil || !p.Addr().Is4() || p.Bits() > 28 {
		errs = append(errs, fmt.Errorf("--subnet %q: want an IPv4 CIDR of /28 or larger", c.Subnet))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}
