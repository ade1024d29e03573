package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	goruntime "runtime"
	"strings"
	"syscall"

	"github.com/berth-dev/berth/internal/agent"
	"github.com/berth-dev/berth/internal/agent/firewall"
	"github.com/berth-dev/berth/internal/agent/network"
	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/types"
	"github.com/berth-dev/berth/internal/version"
)

// nodePlane is what a node agent needs of the control plane: its own
// groups (agent.ControlPlane) and the cluster around it (every group's
// endpoint and every node, for routes and the firewall).
type nodePlane interface {
	agent.ControlPlane
	Endpoints() controller.Source[types.Endpoint]
	Nodes() controller.Source[types.Node]
}

// nodeParams are what a node needs besides its configuration.
type nodeParams struct {
	cfg     config.Node
	dataDir string
	// subnet is the cluster's public subnet, which every node's bridge has.
	subnet string
	plane  nodePlane
	// addresses and endpoint are registered with the node: where the
	// other nodes route its groups' traffic, where the API reaches its
	// node server (empty for the in-process agent).
	addresses []string
	endpoint  string
	log       *slog.Logger
}

// node is one machine's agent with the parts it runs on.
type node struct {
	agent   *agent.Agent
	runtime *runtime.Runtime
}

// newNode connects to containerd and sets up the node's networks and
// firewall; close releases the runtime.
func newNode(ctx context.Context, p nodeParams) (n *node, closeFn func(), err error) {
	cfg := p.cfg
	rt, err := runtime.New(ctx, runtime.Options{
		Address:            cfg.ContainerdAddress,
		InsecureRegistries: cfg.InsecureRegistries,
		StateDir:           runtimeStateDir(p.dataDir),
		CgroupParent:       cfg.CgroupParent,
		PidsLimit:          cfg.PidsLimit,
		Isolation:          runtime.Isolation(cfg.Isolation),
		UserNSRemap:        cfg.UserNSRemap,
		RunscPlatform:      cfg.RunscPlatform,
		RunscPath:          cfg.RunscPath,
		ShimPath:           cfg.RunscShim,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("connect to containerd at %s: %w", cfg.ContainerdAddress, err)
	}
	fail := func(err error) (*node, func(), error) {
		rt.Close()
		return nil, nil, err
	}
	// Under user namespace remapping each group's network namespace is
	// made in a user namespace of its own.
	var groupUserNS *network.UserNS
	if u := rt.UserNS(); u != nil {
		groupUserNS = &network.UserNS{HostID: u.HostID, Size: u.Size}
	}
	// Groups get the address the scheduler chose, unique in the cluster;
	// the firewall masquerades their traffic to the world, so that traffic
	// between groups on different nodes keeps its source address.
	nw, err := network.New(network.Options{Dir: p.dataDir, PluginDirs: cfg.CNIPluginDirs, Bridge: cfg.Bridge, Subnet: p.subnet, UserNS: groupUserNS, ClusterRouting: true})
	if err != nil {
		return fail(fmt.Errorf("set up the group network: %w", err))
	}
	// One nftables table per node, named after its bridge.
	var hostPorts []firewall.Port
	for _, hp := range cfg.AllowHostPorts {
		port, err := firewall.ParsePort(hp)
		if err != nil {
			return fail(fmt.Errorf("--allow-host-port: %w", err))
		}
		hostPorts = append(hostPorts, port)
	}
	fw, err := firewall.New(firewall.TableName(cfg.Bridge), hostPorts)
	if err != nil {
		return fail(fmt.Errorf("set up the group firewall: %w", err))
	}
	if err := firewall.CheckBridgeFilter(); err != nil {
		p.log.Error("group firewall incomplete", "err", err)
	}
	name, err := nodeName(cfg.NodeName)
	if err != nil {
		return fail(err)
	}
	ag := agent.New(agent.Options{
		Plane:     p.plane,
		Node:      nodeRecord(name, cfg, p.addresses, p.endpoint),
		Runtime:   rt,
		Network:   nw,
		Firewall:  fw,
		Dir:       p.dataDir,
		Logger:    p.log,
		UserNS:    rt.UserNS(),
		NodeName:  name,
		Endpoints: p.plane.Endpoints(),
		Nodes:     p.plane.Nodes(),
	})
	return &node{agent: ag, runtime: rt}, func() { rt.Close() }, nil
}

// nodeName is the configured name, or the host's name made fit for one.
func nodeName(configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("--node-name is empty and the host name is unknown: %w", err)
	}
	host = strings.ToLower(strings.SplitN(host, ".", 2)[0])
	if host == "" {
		return "", fmt.Errorf("--node-name is empty and the host has no name")
	}
	return host, nil
}

// nodeRecord is what the agent registers: the machine's size, what
// groups may have of it, where it is and what it runs.
func nodeRecord(name string, cfg config.Node, addresses []string, endpoint string) types.Node {
	capacity := machineResources()
	alloc := capacity
	if cfg.CPU > 0 {
		alloc.CPU = cfg.CPU
	}
	if cfg.MemoryGB > 0 {
		alloc.MemoryGB = cfg.MemoryGB
	}
	return types.Node{
		Name:            name,
		Zone:            cfg.Zone,
		Capacity:        capacity,
		Allocatable:     alloc,
		Addresses:       addresses,
		Endpoint:        endpoint,
		Version:         version.Version,
		IsolationLevels: []string{cfg.Isolation},
	}
}

// machineResources is this machine's CPUs and memory.
func machineResources() types.NodeResources {
	c := types.NodeResources{CPU: float64(goruntime.NumCPU())}
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) == nil {
		c.MemoryGB = float64(si.Totalram) * float64(si.Unit) / (1 << 30)
	}
	return c
}
