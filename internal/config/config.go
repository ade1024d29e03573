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

// Node configures the node agent, the in-process one of `berth server`
// as well as `berth agent`: how it runs groups on this machine.
type Node struct {
	// NodeName names the node in the cluster; default the host name.
	NodeName string
	// Zone is the node's availability zone ("1", "2", ...): groups that
	// ask for zones are placed only on nodes of those zones.
	Zone string
	// CPU and MemoryGB, when above 0, are what groups may request of
	// the node instead of the whole machine.
	CPU      float64
	MemoryGB float64

	ContainerdAddress  string
	InsecureRegistries []string
	// CgroupParent is the cgroup every container of the node is under;
	// nodes sharing a machine need their own.
	CgroupParent string
	// Bridge is the CNI bridge the node's public groups attach to.
	Bridge string
	// CNIPluginDirs hold the CNI plugin binaries.
	CNIPluginDirs []string
	// AllowHostPorts are the host ports ("tcp:8443", "udp:53") that groups
	// may connect to; every other connection from a group to the host is
	// dropped.
	AllowHostPorts []string
	// PidsLimit bounds the processes of each container (cgroup pids.max).
	PidsLimit int64
	// Isolation is how the node runs groups: "runc" (containers on the
	// host kernel) or "sandboxed" (one gVisor sandbox per group).
	// RunscPlatform is runsc's platform, "systrap" or "ptrace". RunscPath
	// and RunscShim name runsc and Berth's gVisor shim; empty: the
	// defaults of internal/agent/runtime.
	Isolation     string
	RunscPlatform string
	RunscPath     string
	RunscShim     string
	// UserNSRemap puts runc containers in a user namespace: "auto" (when
	// the kernel allows it), "off", or an explicit "HOSTID:SIZE" range
	// (internal/agent/runtime/userns.go).
	UserNSRemap string
}

// Server configures `berth server`: API, store, controllers and, unless
// LocalAgent is off, an in-process node agent.
type Server struct {
	Node
	DataDir       string
	Listen        string
	EtcdEndpoints []string
	// EtcdCAFile, EtcdCertFile and EtcdKeyFile are the client TLS of an
	// external etcd cluster: the CA that signed its members' certificates
	// and Berth's client certificate and key (both or neither).
	EtcdCAFile   string
	EtcdCertFile string
	EtcdKeyFile  string
	// ServerName names this server among the servers: its etcd member and
	// its candidacy in the leader election (default: the host name).
	ServerName string
	// ClusterInit starts a new cluster of embedded etcd members with this
	// server as its first member, reachable by the others over peer TLS.
	ClusterInit bool
	// JoinURL is the API URL of a server of an existing cluster that this
	// server joins with JoinToken (made by `berth cluster token create`),
	// adding its own embedded member; CAFile is that cluster's CA. Only the
	// first start needs them: the data dir keeps the membership.
	JoinURL   string
	JoinToken string
	CAFile    string
	// AdvertiseAddress is where the other servers reach this one's etcd
	// peer port (default: the --listen host). EtcdPeerPort is that port;
	// 0 picks a free one on the first start and keeps it.
	AdvertiseAddress string
	EtcdPeerPort     int
	// RestoreSnapshot, when set, names an etcd snapshot (`berth cluster
	// snapshot save`) restored into a new, empty data dir before the first
	// start: the new cluster has every object of the snapshot.
	RestoreSnapshot string
	// Subnet is the cluster's public subnet: every node's bridge has it,
	// and public groups get their addresses from it.
	Subnet   string
	LogLevel string
	// LocalAgent runs a node agent in the server process, registered as
	// node NodeName like any other.
	LocalAgent bool
	// SchedulerPolicy breaks ties between nodes: "spread" or "binpack".
	SchedulerPolicy string
	// DNSListen is the HOST:PORT of the built-in DNS server (UDP and
	// TCP); empty disables it. DNSZone is the zone of the groups' FQDNs,
	// <label>.<region>.<zone>. DNSForward are the upstream resolvers of
	// other names: nil means the host's, "none" none.
	DNSListen  string
	DNSZone    string
	DNSForward []string
	// TenantID is the installation's tenant, which the hashed DNS names
	// depend on; empty: the one made on the first start and kept in the
	// store.
	TenantID string
	// TokensFile, when set, names a JSON file of principals (bearer token,
	// name, subscriptions) besides the admin; see internal/auth.
	TokensFile string
	// EncryptionKeyFile, when set, names the AES-256 key that seals the
	// secrets of groups in the store (internal/sealing).
	EncryptionKeyFile string
	// PprofListen, when set, is a HOST:PORT serving net/http/pprof, for
	// profiling (make bench); off by default because it has no auth.
	PprofListen string
}

// Agent configures `berth agent`: a node agent on another machine,
// joined to the servers with a token, then talking mutual TLS only.
type Agent struct {
	Node
	DataDir string
	// Servers are the API URLs of the servers (https://HOST:PORT).
	Servers []string
	// JoinToken is needed only for the first start: the node's
	// certificate is kept in the data dir afterwards.
	JoinToken string
	// CAFile is the servers' CA certificate (DATA_DIR/pki/ca.crt of a
	// server).
	CAFile string
	// AdvertiseAddress is the node's address for the other nodes and the
	// servers (routes to its groups, its node server).
	AdvertiseAddress string
	// Listen is the node server's HOST:PORT (logs, exec, attach); default
	// the advertise address, port 10250.
	Listen   string
	LogLevel string
}

func defaultNode() Node {
	return Node{
		ContainerdAddress: "/run/containerd/containerd.sock",
		Bridge:            "berth0",
		CNIPluginDirs:     []string{"/usr/lib/cni", "/opt/cni/bin"},
		PidsLimit:         4096,
		Isolation:         "sandboxed",
		UserNSRemap:       "auto",
		RunscPlatform:     "systrap",
	}
}

// DefaultServer returns the defaults of `berth server`.
func DefaultServer() Server {
	return Server{
		Node:            defaultNode(),
		DataDir:         "/var/lib/berth",
		Listen:          "127.0.0.1:8443",
		Subnet:          "10.88.0.0/16",
		LogLevel:        "info",
		LocalAgent:      true,
		SchedulerPolicy: "spread",
		DNSListen:       "127.0.0.1:53",
		DNSZone:         "berth.internal",
		EtcdPeerPort:    2380,
	}
}

// DefaultAgent returns the defaults of `berth agent`.
func DefaultAgent() Agent {
	return Agent{Node: defaultNode(), DataDir: "/var/lib/berth-agent", LogLevel: "info"}
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
	for _, e := range c.EtcdEndpoints {
		if !strings.HasPrefix(e, "http://") && !strings.HasPrefix(e, "https://") {
			errs = append(errs, fmt.Errorf("--etcd-endpoints %q: want http(s)://HOST:PORT", e))
		}
	}
	errs = append(errs, c.validateCluster()...)
	if p, err := netip.ParsePrefix(c.Subnet); err != nil || !p.Addr().Is4() || p.Bits() > 28 {
		errs = append(errs, fmt.Errorf("--subnet %q: want an IPv4 CIDR of /28 or larger", c.Subnet))
	}
	if c.PprofListen != "" {
		if _, _, err := net.SplitHostPort(c.PprofListen); err != nil {
			errs = append(errs, fmt.Errorf("--pprof-listen %q: want HOST:PORT: %w", c.PprofListen, err))
		}
	}
	switch c.SchedulerPolicy {
	case "spread", "binpack":
	default:
		errs = append(errs, fmt.Errorf("--scheduler-policy %q: want spread or binpack", c.SchedulerPolicy))
	}
	errs = append(errs, c.validateDNS()...)
	if c.LocalAgent {
		errs = append(errs, c.Node.validate()...)
	}
	errs = append(errs, validateLogLevel(c.LogLevel)...)
	return errors.Join(errs...)
}

// Validate reports every problem of the configuration at once.
func (c *Agent) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir must not be empty"))
	}
	if len(c.Servers) == 0 {
		errs = append(errs, errors.New("--server is required: the URL of a berth server, e.g. https://10.0.0.1:8443"))
	}
	for _, u := range c.Servers {
		if !strings.HasPrefix(u, "https://") {
			errs = append(errs, fmt.Errorf("--server %q: want https://HOST:PORT", u))
		}
	}
	if c.CAFile == "" {
		errs = append(errs, errors.New("--ca-file is required: the servers' CA certificate (a server's DATA_DIR/pki/ca.crt)"))
	}
	if a, err := netip.ParseAddr(c.AdvertiseAddress); err != nil || !a.Is4() {
		errs = append(errs, fmt.Errorf("--advertise-address %q: want the node's IPv4 address", c.AdvertiseAddress))
	}
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			errs = append(errs, fmt.Errorf("--listen %q: want HOST:PORT: %w", c.Listen, err))
		}
	}
	errs = append(errs, c.Node.validate()...)
	errs = append(errs, validateLogLevel(c.LogLevel)...)
	return errors.Join(errs...)
}

// validateCluster checks how the server finds its store: one embedded
// member (the default), a new or joined cluster of embedded members, or
// an external etcd cluster.
func (c *Server) validateCluster() []error {
	var errs []error
	external := len(c.EtcdEndpoints) > 0
	if (c.EtcdCertFile == "") != (c.EtcdKeyFile == "") {
		errs = append(errs, errors.New("--etcd-certfile and --etcd-keyfile go together"))
	}
	if !external && (c.EtcdCAFile != "" || c.EtcdCertFile != "" || c.EtcdKeyFile != "") {
		errs = append(errs, errors.New("--etcd-cafile, --etcd-certfile and --etcd-keyfile need --etcd-endpoints"))
	}
	if c.ServerName != "" && !nodeName.MatchString(c.ServerName) {
		errs = append(errs, fmt.Errorf("--server-name %q: want 1 to 63 lower-case letters, digits, '-' and '.'", c.ServerName))
	}
	joining := c.JoinURL != ""
	switch {
	case c.ClusterInit && joining:
		errs = append(errs, errors.New("--cluster-init and --join exclude each other: the first server starts the cluster, the others join it"))
	case external && (c.ClusterInit || joining):
		errs = append(errs, errors.New("--etcd-endpoints excludes --cluster-init and --join: an external cluster has its own members"))
	case external && c.RestoreSnapshot != "":
		errs = append(errs, errors.New("--restore-snapshot restores an embedded member; restore an external cluster with its own tools (etcdutl snapshot restore)"))
	case joining && c.RestoreSnapshot != "":
		errs = append(errs, errors.New("--restore-snapshot starts a new cluster; it excludes --join"))
	}
	if joining {
		if !strings.HasPrefix(c.JoinURL, "https://") {
			errs = append(errs, fmt.Errorf("--join %q: want the https://HOST:PORT of a server of the cluster", c.JoinURL))
		}
		if c.JoinToken == "" {
			errs = append(errs, errors.New("--join needs --join-token: a token from 'berth cluster token create'"))
		}
		if c.CAFile == "" {
			errs = append(errs, errors.New("--join needs --ca-file: the cluster's CA certificate (a server's DATA_DIR/pki/ca.crt)"))
		}
	}
	if c.AdvertiseAddress != "" {
		if a, err := netip.ParseAddr(c.AdvertiseAddress); err != nil || a.IsUnspecified() {
			errs = append(errs, fmt.Errorf("--advertise-address %q: want the IP address the other servers reach this one on", c.AdvertiseAddress))
		}
	}
	if c.EtcdPeerPort < 0 || c.EtcdPeerPort > 65535 {
		errs = append(errs, fmt.Errorf("--etcd-peer-port %d: want a port, or 0 for a free one", c.EtcdPeerPort))
	}
	return errs
}

var nodeName = regexp.MustCompile(`^[a-z0-9]([-.a-z0-9]{0,61}[a-z0-9])?$`)

func (c *Node) validate() []error {
	var errs []error
	if c.NodeName != "" && !nodeName.MatchString(c.NodeName) {
		errs = append(errs, fmt.Errorf("--node-name %q: want 1 to 63 lower-case letters, digits, '-' and '.'", c.NodeName))
	}
	if c.CPU < 0 || c.MemoryGB < 0 {
		errs = append(errs, fmt.Errorf("--cpu %g, --memory-gb %g: want 0 (the whole machine) or more", c.CPU, c.MemoryGB))
	}
	if c.ContainerdAddress == "" {
		errs = append(errs, errors.New("--containerd-address must not be empty"))
	}
	for _, r := range c.InsecureRegistries {
		if r == "" || strings.Contains(r, "/") {
			errs = append(errs, fmt.Errorf("--insecure-registry %q: want HOST or HOST:PORT", r))
		}
	}
	if l := len(c.Bridge); l == 0 || l > 15 {
		errs = append(errs, fmt.Errorf("--bridge-name %q: want 1 to 15 characters", c.Bridge))
	}
	if c.CgroupParent != "" && !strings.HasPrefix(c.CgroupParent, "/") {
		errs = append(errs, fmt.Errorf("--cgroup-parent %q: want an absolute cgroup path such as /berth", c.CgroupParent))
	}
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
	return errs
}

func validateLogLevel(l string) []error {
	switch l {
	case "debug", "info", "warn", "error":
		return nil
	}
	return []error{fmt.Errorf("--log-level %q: want debug, info, warn or error", l)}
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
