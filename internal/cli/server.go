package cli

import (
	"github.com/spf13/cobra"

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
	f.StringVar(&cfg.Bridge, "bridge-name", cfg.Bridge, "name of the Linux bridge the groups attach to")
	f.StringVar(&cfg.Subnet, "subnet", cfg.Subnet, "IPv4 subnet the group IPs come from")
	f.StringSliceVar(&cfg.CNIPluginDirs, "cni-plugin-dir", cfg.CNIPluginDirs, "directories holding the CNI plugins")
	f.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	return cmd
}
