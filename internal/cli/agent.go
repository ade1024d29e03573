package cli

import (
	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
)

func newAgentCommand() *cobra.Command {
	cfg := config.DefaultAgent()
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a node agent that joins a Berth cluster and runs the groups placed on it",
		Long: `Run a node of a Berth cluster on this machine. On the first start the agent
trades --join-token (from ` + "`berth node token create`" + ` on a server) for a
client certificate signed by the servers' CA, kept under the data dir; from then
on it talks to the servers over mutual TLS only and never touches etcd.

The agent registers its node, renews its lease, runs the groups the scheduler
binds to it on the local containerd, reports their status, and serves their
logs, exec and attach to the API on --listen.`,
		Example: `  berth agent --server https://10.0.0.1:8443 --ca-file ca.crt --join-token abcdef.0123456789abcdef \
    --advertise-address 10.0.0.2 --data-dir /var/lib/berth-agent --zone 1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return daemon.RunAgent(cmd.Context(), cfg, newLogger(cfg.LogLevel))
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&cfg.Servers, "server", nil, "comma-separated https URLs of the berth servers")
	f.StringVar(&cfg.JoinToken, "join-token", "", "token to join with (needed only until the node has its certificate)")
	f.StringVar(&cfg.CAFile, "ca-file", "", "CA certificate of the servers (a server's DATA_DIR/pki/ca.crt)")
	f.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for the node's state: certificate, logs, network namespaces")
	f.StringVar(&cfg.AdvertiseAddress, "advertise-address", "", "IPv4 address of this node that the servers and the other nodes reach")
	f.StringVar(&cfg.Listen, "listen", "", "HOST:PORT of the node server for logs, exec and attach (default: the advertise address, port "+daemon.DefaultNodeServerPort+")")
	f.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	f.StringVar(&cfg.ContainerdAddress, "containerd-address", cfg.ContainerdAddress, "containerd socket")
	f.StringArrayVar(&cfg.InsecureRegistries, "insecure-registry", nil, "HOST:PORT of a registry reached over plain HTTP (repeatable)")
	f.StringVar(&cfg.Bridge, "bridge-name", cfg.Bridge, "name of the Linux bridge the groups attach to")
	f.StringSliceVar(&cfg.CNIPluginDirs, "cni-plugin-dir", cfg.CNIPluginDirs, "directories holding the CNI plugins")
	f.StringArrayVar(&cfg.AllowHostPorts, "allow-host-port", nil, "PROTO:PORT of the host that groups may connect to, e.g. udp:53 (repeatable)")
	f.Int64Var(&cfg.PidsLimit, "pids-limit", cfg.PidsLimit, "most processes one container may run (cgroup pids.max)")
	f.StringVar(&cfg.Isolation, "isolation", cfg.Isolation, "how groups run: runc or sandboxed (one gVisor sandbox per group)")
	f.StringVar(&cfg.RunscPlatform, "runsc-platform", cfg.RunscPlatform, "gVisor platform under --isolation sandboxed: systrap or ptrace")
	f.StringVar(&cfg.RunscPath, "runsc-path", "", "runsc binary (default /usr/local/lib/berth/runsc)")
	f.StringVar(&cfg.RunscShim, "runsc-shim", "", "Berth's gVisor shim (default: next to the berth binary, else in /usr/local/lib/berth)")
	f.StringVar(&cfg.UserNSRemap, "userns-remap", cfg.UserNSRemap, "user namespace of runc containers: auto, off, or HOSTID:SIZE")
	addNodeFlags(f, &cfg.Node)
	return cmd
}
