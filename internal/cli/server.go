package cli

import (
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
)

func newServerCommand() *cobra.Command {
	cfg := config.DefaultServer()
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the API server with an embedded etcd member and an in-process node agent",
		Long: `Run a complete single-node Berth: the ARM-compatible API over HTTPS, an embedded
etcd member (or an external cluster with --etcd-endpoints) and a node agent that
runs container groups on containerd with CNI networking.

On first start it creates a CA, a server certificate and an admin token under
the data dir, and writes DATA_DIR/client.json once the API answers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := newLogger(cfg.LogLevel)
			return daemon.RunServer(cmd.Context(), cfg, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for all state: etcd data, certificates, logs, network namespaces")
	f.StringVar(&cfg.Listen, "listen", cfg.Listen, "HOST:PORT of the HTTPS API")
	f.StringVar(&cfg.ContainerdAddress, "containerd-address", cfg.ContainerdAddress, "containerd socket")
	f.StringArrayVar(&cfg.InsecureRegistries, "insecure-registry", nil, "HOST:PORT of a registry reached over plain HTTP (repeatable)")
	f.StringSliceVar(&cfg.EtcdEndpoints, "etcd-endpoints", nil, "comma-separated URLs of an external etcd cluster (default: embedded member)")
	f.StringVar(&cfg.EtcdCAFile, "etcd-cafile", "", "CA certificate of the external etcd cluster's members")
	f.StringVar(&cfg.EtcdCertFile, "etcd-certfile", "", "client certificate for the external etcd cluster")
	f.StringVar(&cfg.EtcdKeyFile, "etcd-keyfile", "", "key of --etcd-certfile")
	// Several servers.
	f.StringVar(&cfg.ServerName, "server-name", "", "name of this server among the servers: its etcd member and its candidacy for leader (default: the host name)")
	f.BoolVar(&cfg.ClusterInit, "cluster-init", false, "start a new cluster of servers with embedded etcd members, this one first (others join it with --join)")
	f.StringVar(&cfg.JoinURL, "join", "", "https://HOST:PORT of a server of an existing cluster to join, adding this server's embedded etcd member (first start only)")
	f.StringVar(&cfg.JoinToken, "join-token", "", "token from 'berth cluster token create' for --join")
	f.StringVar(&cfg.CAFile, "ca-file", "", "the cluster's CA certificate for --join (a server's DATA_DIR/pki/ca.crt)")
	f.StringVar(&cfg.AdvertiseAddress, "advertise-address", "", "IP address the other servers reach this server's etcd peer port on (default: the --listen host)")
	f.IntVar(&cfg.EtcdPeerPort, "etcd-peer-port", cfg.EtcdPeerPort, "port of the embedded member's peer TLS listener under --cluster-init or --join (0: a free one, kept)")
	f.StringVar(&cfg.RestoreSnapshot, "restore-snapshot", "", "etcd snapshot ('berth cluster snapshot save') to restore into an empty data dir before the first start")
	f.StringVar(&cfg.Bridge, "bridge-name", cfg.Bridge, "name of the Linux bridge the groups attach to")
	f.StringVar(&cfg.Subnet, "subnet", cfg.Subnet, "IPv4 subnet the group IPs come from")
	f.StringSliceVar(&cfg.CNIPluginDirs, "cni-plugin-dir", cfg.CNIPluginDirs, "directories holding the CNI plugins")
	f.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	// The built-in DNS server (issue 5).
	f.StringVar(&cfg.DNSListen, "dns-listen", cfg.DNSListen, `HOST:PORT of the built-in DNS server, UDP and TCP ("" disables it)`)
	f.StringVar(&cfg.DNSZone, "dns-zone", cfg.DNSZone, "DNS zone of the groups' names: <dnsNameLabel>.<region>.<zone>")
	f.StringSliceVar(&cfg.DNSForward, "dns-forward", nil, `upstream resolvers (IP or IP:PORT) for names outside the zone; "none" refuses them (default: the non-loopback name servers of /etc/resolv.conf)`)
	f.StringVar(&cfg.TenantID, "tenant-id", "", "tenant id the hashed DNS names depend on (default: one made on the first start and kept in the store)")
	f.StringArrayVar(&cfg.AllowHostPorts, "allow-host-port", nil, "PROTO:PORT of the host that groups may connect to, e.g. udp:53 (repeatable; every other connection from a group to the host is dropped)")
	f.Int64Var(&cfg.PidsLimit, "pids-limit", cfg.PidsLimit, "most processes one container may run (cgroup pids.max)")
	f.StringVar(&cfg.TokensFile, "tokens-file", "", `JSON file of more principals, each limited to its subscriptions: {"principals":[{"name","token","subscriptions":[...]}]}`)
	f.StringVar(&cfg.EncryptionKeyFile, "encryption-key-file", "", "file of the key that encrypts secrets in the store: 32 random bytes in base64, mode 0600 (head -c 32 /dev/urandom | base64); off by default")
	// Isolation (issue 7).
	f.StringVar(&cfg.Isolation, "isolation", cfg.Isolation, "how groups run: runc (containers on the host kernel) or sandboxed (one gVisor sandbox per group)")
	f.StringVar(&cfg.RunscPlatform, "runsc-platform", cfg.RunscPlatform, "gVisor platform under --isolation sandboxed: systrap or ptrace")
	f.StringVar(&cfg.RunscPath, "runsc-path", "", "runsc binary (default /usr/local/lib/berth/runsc, installed by hack/setup.sh)")
	f.StringVar(&cfg.UserNSRemap, "userns-remap", cfg.UserNSRemap, `user namespace of runc containers: auto (on when the kernel allows user namespaces: root in a container is host uid 1073741824), off, or HOSTID:SIZE (container ids 0..SIZE-1 are host ids HOSTID..; SIZE at least 65536)`)
	f.StringVar(&cfg.RunscShim, "runsc-shim", "", "Berth's gVisor shim, containerd-shim-runsc-v1 (default: next to the berth binary, else in /usr/local/lib/berth)")
	f.StringVar(&cfg.PprofListen, "pprof-listen", "", "HOST:PORT serving /debug/pprof without authentication (off by default; keep it on loopback)")
	// The cluster.
	f.BoolVar(&cfg.LocalAgent, "local-agent", cfg.LocalAgent, "run a node agent in the server process, registered as node --node-name (off: only nodes that joined with berth agent run groups)")
	f.StringVar(&cfg.SchedulerPolicy, "scheduler-policy", cfg.SchedulerPolicy, "how the scheduler chooses among nodes with room: spread (fewest groups first) or binpack (fullest first)")
	addNodeFlags(f, &cfg.Node)
	return cmd
}

// addNodeFlags are the flags of a node agent, shared by `berth server`
// (its in-process agent) and `berth agent`.
func addNodeFlags(f *pflag.FlagSet, n *config.Node) {
	f.StringVar(&n.NodeName, "node-name", n.NodeName, "name of the node in the cluster (default: the host name)")
	f.StringVar(&n.Zone, "zone", n.Zone, `availability zone of the node ("1", "2", ...); groups that ask for zones run only on nodes of those zones`)
	f.Float64Var(&n.CPU, "cpu", n.CPU, "CPUs groups may request of the node (default: all of the machine's)")
	f.StringVar(&n.CgroupParent, "cgroup-parent", n.CgroupParent, "cgroup every container of the node is under (default /berth)")
	f.Float64Var(&n.MemoryGB, "memory-gb", n.MemoryGB, "GB of memory groups may request of the node (default: all of the machine's)")
}
