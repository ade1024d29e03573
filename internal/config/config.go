// Package config holds the configuration of each role of the berth binary,
// with defaults and validation run before anything starts.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
)

// userNSRemapSyntax is the form of --userns-remap; the runtime checks the
// range itself when it starts.
var userNSRemapSyntax = regexp.MustCompile(`^(auto|off|[0-9]{1,10}:[0-9]{1,10})$`)

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
	// DNSListen is the HOST:PORT of the built-in DNS server (UDP and
	// TCP); empty disables it. DNSZone is the zone of the groups' FQDNs,
	// <label>.<region>.<zone>. DNSForward are the upstream resolvers of
	// other names: nil means the host's, "none" none. (issue 5)
	DNSListen  string
	DNSZone    string
	DNSForward []string
	// TenantID is the installation's tenant, which the hashed DNS names
	// depend on; empty: the one made on the first start and kept in the
	// store. (issue 5)
	TenantID string
	// AllowHostPorts are the host ports ("tcp:8443", "udp:53") that groups
	// may connect to; every other connection from a group to the host is
	// dropped.
	AllowHostPorts []string
	// PidsLimit bounds the processes of each container (cgroup pids.max).
	PidsLimit int64
	// TokensFile, when set, names a JSON file of principals (bearer token,
	// name, subscriptions) besides the admin; see internal/auth.
	TokensFile string
	// EncryptionKeyFile, when set, names the AES-256 key that seals the
	// secrets of groups in the store (internal/sealing; issue 7).
	EncryptionKeyFile string
	// PprofListen, when set, is a HOST:PORT serving net/http/pprof, for
	// profiling (make bench); off by default because it has no auth.
	PprofListen string
	// Isolation is how the node runs groups: "runc" (containers on the
	// host kernel) or "sandboxed" (one gVisor sandbox per group; issue 7).
	// RunscPlatform is runsc's platform, "systrap" or "ptrace". RunscPath
	// and RunscShim name runsc and Berth's gVisor shim; empty: the
	// defaults of internal/agent/runtime.
	Isolation     string
	RunscPlatform string
	RunscPath     string
	RunscShim     string
	// UserNSRemap puts runc containers in a user namespace: "auto" (when
	// the kernel allows it), "off", or an explicit "HOSTID:SIZE" range
	// (internal/agent/runtime/userns.go; issue 7).
	UserNSRemap string
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
		PidsLimit:         4096,
		Isolation:         "sandboxed",
		UserNSRemap:       "auto",
		RunscPlatform:     "systrap",
		DNSListen:         "127.0.0.1:53",
		DNSZone:           "berth.internal",
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
	if c.PprofListen != "" {
		if _, _, err := net.SplitHostPort(c.PprofListen); err != nil {
			errs = append(errs, fmt.Errorf("--pprof-listen %q: want HOST:PORT: %w", c.PprofListen, err))
		}
	}
	errs = append(errs, c.validateDNS()...)
	if c.PidsLimit < 1 {
		errs = append(errs, fmt.Errorf("--pids-limit %d: want 1 or more", c.PidsLimit))
	}
	switch c.Isolation {
	case "runc", "sandboxed":
	default:
		errs = append(errs, fmt.Errorf("--isolation %q: want runc or sandboxed", c.Isolation))
	}
	if !userNSRemapSyntax.MatchString(c.UserNSRemap) {
		errs = append(errs, fmt.Errorf("--userns-remap %q: want auto, off or HOSTID:SIZE", c.UserNSRemap))
	}
	switch c.RunscPlatform {
	case "systrap", "ptrace":
	default:
		errs = append(errs, fmt.Errorf("--runsc-platform %q: want systrap or ptrace (kvm is not available on Berth's hosts)", c.RunscPlatform))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}

var (
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	tenantID = regexp.MustCompile(`^[A-Za-z0-9][-A-Za-z0-9]{0,63}$`)
)

// validateDNS checks the DNS settings (issue 5). The zone leaves room for
// the longest name below it: a 63-character label, a 16-character hash
// and a region.
func (c *Server) validateDNS() []error {
	var errs []error
	if c.DNSListen != "" {
		if _, _, err := net.SplitHostPort(c.DNSListen); err != nil {
			errs = append(errs, fmt.Errorf("--dns-listen %q: want HOST:PORT, or empty to disable: %w", c.DNSListen, err))
		}
	}
	zone := strings.ToLower(strings.TrimSuffix(c.DNSZone, "."))
	ok := zone != "" && len(zone) <= 150
	for l := range strings.SplitSeq(zone, ".") {
		ok = ok && dnsLabel.MatchString(l)
	}
	if !ok {
		errs = append(errs, fmt.Errorf("--dns-zone %q: want a domain name of at most 150 characters, e.g. berth.internal", c.DNSZone))
	}
	for _, f := range c.DNSForward {
		if f == "none" && len(c.DNSForward) == 1 {
			continue
		}
		if _, err := netip.ParseAddrPort(f); err != nil {
			if _, err := netip.ParseAddr(strings.Trim(f, "[]")); err != nil {
				errs = append(errs, fmt.Errorf("--dns-forward %q: want IP or IP:PORT, or none alone", f))
			}
		}
	}
	if c.TenantID != "" && !tenantID.MatchString(c.TenantID) {
		errs = append(errs, fmt.Errorf("--tenant-id %q: want 1 to 64 letters, digits and hyphens", c.TenantID))
	}
	return errs
}
