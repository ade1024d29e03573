// Package network gives each container group its own network namespace,
// attached to a node-local bridge with CNI (libcni and the reference
// plugins: loopback, bridge with host-local or static IPAM, portmap).
//
// On a cluster node (Options.ClusterRouting) every node has the same
// subnets on its bridges, and a group's address, allocated for the whole
// cluster, is routed to the node that runs it (package routes). A group
// reaches an address of its own subnet that lives on another node because
// the bridge answers ARP for it (proxy_arp: the node has a route to it
// through another interface) and then routes the packet; the bridge does
// not masquerade, so the destination sees the group's own address, which
// its firewall rules check.
//
// Everything needed to undo an attachment lives on disk under Options.Dir:
// the namespace is bind-mounted on Dir/netns/<id>, and libcni caches the
// config, runtime arguments (port mappings) and result of every ADD under
// Dir/cni/cache. Teardown therefore works after an agent restart, and a
// repeated Setup returns the cached attachment instead of allocating again.
package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
	cnitypes "github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// Defaults for Options.
const (
	DefaultPluginDir   = "/usr/lib/cni"
	DefaultBridge      = "berth0"
	DefaultSubnet      = "10.88.0.0/16"
	DefaultNetworkName = "berth"
)

// cleanupTimeout bounds the rollback of a failed Setup, which runs on a
// context detached from the caller's (the caller may be why it failed).
const cleanupTimeout = 30 * time.Second

// validID is what CNI accepts as a container ID; it also keeps the id safe
// as a file name under Dir/netns.
var validID = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)

// Options configures a Manager.
type Options struct {
	// Dir holds the state: Dir/netns/<id> (bind-mounted netns files),
	// Dir/cni/cache (libcni), Dir/cni/ipam (host-local) and the config
	// files Dir/cni/berth.conflist and Dir/cni/loopback.conf.
	Dir string
	// PluginDirs are searched for CNI plugins; default {"/usr/lib/cni"}.
	PluginDirs []string
	// Bridge is the host bridge; default "berth0".
	Bridge string
	// Subnet is an IPv4 CIDR, default "10.88.0.0/16"; the bridge (gateway)
	// takes its first address.
	Subnet string
	// NetworkName is the CNI network name; default "berth". It names the
	// cache entries and the host-local directory, so changing it orphans
	// existing attachments.
	NetworkName string
	// UserNS, when set, makes each group's namespace inside a user
	// namespace of its own, mapped by it, pinned at Dir/userns/<id>
	// (userns.go).
	UserNS *UserNS
	// ClusterRouting makes the bridges fit a cluster node (see the package
	// doc): no masquerading by the bridge plugin, which the firewall's
	// postrouting chain does for traffic to the world, and proxy_arp on
	// every bridge.
	ClusterRouting bool
}

// Attachment is a group's place on the network.
type Attachment struct {
	// NetNSPath is the namespace file to give the group's containers.
	NetNSPath string
	// IP is the group's IPv4 address on the bridge, without prefix length.
	IP string
	// Gateway is the bridge's address, the group's default route.
	Gateway string
	// Bridge is the host bridge the group is attached to.
	Bridge string
	// UserNSPath is the user namespace the network namespace belongs to,
	// for the group's containers to join; empty when it is the host's.
	UserNSPath string
}

// PortMapping publishes a port of the group on the host, through the
// portmap plugin.
type PortMapping struct {
	HostPort      int32
	ContainerPort int32
	// Protocol is "tcp" or "udp"; empty means tcp.
	Protocol string
	// HostIP restricts the mapping to one host address; empty means all.
	HostIP string
}

// Manager attaches and detaches group network namespaces. It is safe for
// concurrent use; calls for the same id are serialised.
type Manager struct {
	dir   string
	cni   *libcni.CNIConfig
	def   *bridgeNet // the node's public bridge
	lo    *libcni.PluginConfig
	locks keyedMutex
	// netLocks serialises CNI work per bridge network, so that the removal
	// of a subnet bridge after its last DEL never races an ADD.
	netLocks keyedMutex
	userns   *UserNS
	// masq is the bridge plugin's ipMasq; proxyARP sets proxy_arp on the
	// bridges. Both follow Options.ClusterRouting.
	masq     bool
	proxyARP bool
}

// New validates opts, creates the state directories, writes the CNI config
// files and checks that the plugins it needs are installed.
func New(opts Options) (*Manager, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("network state dir is required: %w", errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(opts.Dir) {
		return nil, fmt.Errorf("network state dir %q must be absolute: %w", opts.Dir, errdefs.ErrInvalidArgument)
	}
	if len(opts.PluginDirs) == 0 {
		opts.PluginDirs = []string{DefaultPluginDir}
	}
	if opts.Bridge == "" {
		opts.Bridge = DefaultBridge
	}
	if len(opts.Bridge) > 15 {
		return nil, fmt.Errorf("bridge name %q is longer than 15 bytes: %w", opts.Bridge, errdefs.ErrInvalidArgument)
	}
	if opts.Subnet == "" {
		opts.Subnet = DefaultSubnet
	}
	if opts.NetworkName == "" {
		opts.NetworkName = DefaultNetworkName
	}
	subnet, err := parseSubnet(opts.Subnet)
	if err != nil {
		return nil, err
	}

	m := &Manager{dir: opts.Dir, userns: opts.UserNS, masq: !opts.ClusterRouting, proxyARP: opts.ClusterRouting}
	for _, d := range []string{m.netnsDir(), m.netnsTmpDir(), m.cniDir(), m.cacheDir(), m.ipamDir(), m.recordDir(), m.netsDir(), m.userNSDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create network state dir: %w", err)
		}
	}

	if m.def, err = newBridgeNet(opts.NetworkName, opts.Bridge, subnet, m.ipamDir(), m.masq); err != nil {
		return nil, err
	}
	loBytes, err := loopbackConf(opts.NetworkName)
	if err != nil {
		return nil, fmt.Errorf("render loopback conf: %w", err)
	}
	if m.lo, err = libcni.NetworkPluginConfFromBytes(loBytes); err != nil {
		return nil, fmt.Errorf("parse loopback conf: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(m.cniDir(), confListFile), m.def.bytes); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(m.cniDir(), loopbackFile), loBytes); err != nil {
		return nil, err
	}

	m.cni = libcni.NewCNIConfigWithCacheDir(opts.PluginDirs, m.cacheDir(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := m.cni.ValidateNetworkList(ctx, m.def.list); err != nil {
		return nil, fmt.Errorf("cni plugins in %s: %w: %w", strings.Join(opts.PluginDirs, ":"), errdefs.ErrFailedPrecondition, err)
	}
	if _, err := m.cni.ValidateNetwork(ctx, m.lo); err != nil {
		return nil, fmt.Errorf("cni plugins in %s: %w: %w", strings.Join(opts.PluginDirs, ":"), errdefs.ErrFailedPrecondition, err)
	}
	if err := m.collectNets(); err != nil {
		slog.Warn("collect unused subnet networks", "err", err)
	}
	return m, nil
}

func (m *Manager) netnsDir() string    { return filepath.Join(m.dir, "netns") }
func (m *Manager) netnsTmpDir() string { return filepath.Join(m.dir, "netns.tmp") }
func (m *Manager) cniDir() string      { return filepath.Join(m.dir, "cni") }
func (m *Manager) cacheDir() string    { return filepath.Join(m.dir, "cni", "cache") }
func (m *Manager) ipamDir() string     { return filepath.Join(m.dir, "cni", "ipam") }

// NetNSPath is where the namespace of id is (or would be) mounted.
func (m *Manager) NetNSPath(id string) string { return filepath.Join(m.netnsDir(), id) }

// Subnet is the public network's subnet.
func (m *Manager) Subnet() netip.Prefix { return m.def.subnet }

// Bridge is the public network's bridge.
func (m *Manager) Bridge() string { return m.def.bridge }

// Setup is SetupWithPorts without published ports.
func (m *Manager) Setup(ctx context.Context, id string) (Attachment, error) {
	return m.SetupWithPorts(ctx, id, nil)
}

// SetupIn attaches id to the bridge of a virtual network subnet, or to the
// public bridge when p is nil or has no Prefix, at p.IP when it is set.
// See SetupWithPorts. An attachment at another address than p.IP is made
// again at p.IP.
func (m *Manager) SetupIn(ctx context.Context, id string, p *Placement) (Attachment, error) {
	if p == nil {
		return m.SetupWithPorts(ctx, id, nil)
	}
	n := m.def
	if p.Prefix != "" {
		var err error
		if n, err = m.subnetNet(p); err != nil {
			return Attachment{}, err
		}
	}
	var ip netip.Addr
	if p.IP != "" {
		var err error
		if ip, err = checkGroupIP(p.IP, n.subnet); err != nil {
			return Attachment{}, fmt.Errorf("network of %s: %w", id, err)
		}
	}
	return m.setup(ctx, id, n, ip, nil)
}

// SetupWithPorts creates the network namespace of id, brings up its
// loopback and attaches it to the bridge, publishing ports on the host.
//
// It is idempotent: for an id that is attached already it returns the
// attachment from the CNI cache, without allocating, whatever ports asks
// for (to change them, Teardown first). Leftovers of an interrupted Setup
// are removed before a new attempt, and a failed attempt undoes itself.
func (m *Manager) SetupWithPorts(ctx context.Context, id string, ports []PortMapping) (_ Attachment, retErr error) {
	return m.setup(ctx, id, m.def, netip.Addr{}, ports)
}

// setup attaches id to n, at ip through static IPAM when it is valid.
func (m *Manager) setup(ctx context.Context, id string, n *bridgeNet, ip netip.Addr, ports []PortMapping) (_ Attachment, retErr error) {
	if err := checkID(id); err != nil {
		return Attachment{}, err
	}
	unlock := m.locks.lock(id)
	defer unlock()

	path := m.NetNSPath(id)
	if a, ok, err := m.cached(id, path); err != nil {
		return Attachment{}, err
	} else if ok && a.Bridge == n.bridge && (!ip.IsValid() || a.IP == ip.String()) {
		return a, nil
	}
	// Whatever exists for id is an incomplete attachment (the cache entry
	// is written only after the whole list succeeded): start from scratch.
	if err := m.teardown(ctx, id); err != nil {
		return Attachment{}, fmt.Errorf("clean up earlier attachment of %s: %w", id, err)
	}

	unlockNet := m.netLocks.lock(n.name)
	defer unlockNet()
	// The record goes first: a crash after it still lets teardown find the
	// network whose DEL releases what the ADD allocated.
	if err := m.writeNetConf(n); err != nil {
		return Attachment{}, fmt.Errorf("network of %s: %w", id, err)
	}
	if err := m.writeRecord(id, n); err != nil {
		return Attachment{}, fmt.Errorf("network of %s: %w", id, err)
	}
	create := func() error { return createNetNS(m.netnsTmpDir(), path) }
	if m.userns != nil {
		create = func() error { return createNetNSInUserNS(*m.userns, m.UserNSPath(id), path) }
	}
	if err := create(); err != nil {
		_ = m.removeRecord(id)
		return Attachment{}, fmt.Errorf("network of %s: %w", id, err)
	}
	defer func() {
		if retErr == nil {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if err := m.teardownIn(cctx, id, n); err != nil {
			slog.WarnContext(ctx, "roll back network setup", "group_uid", id, "error", err)
			retErr = errors.Join(retErr, fmt.Errorf("roll back: %w", err))
		}
	}()

	if _, err := m.cni.AddNetwork(ctx, m.lo, &libcni.RuntimeConf{ContainerID: id, NetNS: path, IfName: ifLoopback}); err != nil {
		return Attachment{}, fmt.Errorf("network of %s: cni add loopback: %w", id, err)
	}
	rt := &libcni.RuntimeConf{ContainerID: id, NetNS: path, IfName: ifEth}
	if len(ports) > 0 {
		rt.CapabilityArgs = map[string]any{"portMappings": portMappings(ports)}
	}
	list := n.list
	if ip.IsValid() {
		var err error
		if list, err = n.staticList(ip); err != nil {
			return Attachment{}, fmt.Errorf("network of %s: %w", id, err)
		}
	}
	res, err := m.cni.AddNetworkList(ctx, list, rt)
	if err != nil {
		return Attachment{}, fmt.Errorf("network of %s: cni add %s: %w", id, list.Name, err)
	}
	// The bridge exists from the first ADD on; setting it on every ADD
	// also repairs a bridge that was made again.
	if m.proxyARP {
		if err := setProxyARP(n.bridge); err != nil {
			return Attachment{}, fmt.Errorf("network of %s: %w", id, err)
		}
	}
	a, err := attachment(path, res)
	if err != nil {
		return Attachment{}, fmt.Errorf("network of %s: %w", id, err)
	}
	a.Bridge = n.bridge
	if m.userns != nil {
		a.UserNSPath = m.UserNSPath(id)
	}
	return a, nil
}

// cached returns the attachment of id if it is complete: its namespace is
// mounted and the ADD of the list is in the cache.
func (m *Manager) cached(id, path string) (Attachment, bool, error) {
	alive, err := netnsAlive(path)
	if err != nil || !alive {
		return Attachment{}, false, err
	}
	n, err := m.recordedNet(id)
	if err != nil {
		return Attachment{}, false, err
	}
	res, err := m.cni.GetNetworkListCachedResult(n.list, &libcni.RuntimeConf{ContainerID: id, NetNS: path, IfName: ifEth})
	if err != nil {
		return Attachment{}, false, fmt.Errorf("network of %s: read cni cache: %w", id, err)
	}
	if res == nil {
		return Attachment{}, false, nil
	}
	a, err := attachment(path, res)
	if err != nil {
		return Attachment{}, false, fmt.Errorf("network of %s: cached result: %w", id, err)
	}
	a.Bridge = n.bridge
	// Whatever the node says now: a namespace keeps the owner it was
	// made with.
	if ok, err := userNSAlive(m.UserNSPath(id)); err != nil {
		return Attachment{}, false, err
	} else if ok {
		a.UserNSPath = m.UserNSPath(id)
	}
	return a, true, nil
}

// Attached returns the attachment of id if it is complete, from the CNI
// cache: it survives an agent restart. It waits for a Setup or Teardown of
// id in progress: their half-written files must not be read (nor the
// placeholder of a namespace not yet mounted be taken for a stale one).
func (m *Manager) Attached(id string) (Attachment, bool, error) {
	if err := checkID(id); err != nil {
		return Attachment{}, false, err
	}
	unlock := m.locks.lock(id)
	defer unlock()
	return m.cached(id, m.NetNSPath(id))
}

// Teardown detaches the namespace of id from the network (CNI DEL of the
// list, then of loopback, with the configs and port mappings cached at ADD
// time) and removes it, which releases its IP address. An id with nothing
// left is not an error.
func (m *Manager) Teardown(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	unlock := m.locks.lock(id)
	defer unlock()
	if err := m.teardown(ctx, id); err != nil {
		return fmt.Errorf("network of %s: %w", id, err)
	}
	return nil
}

// teardown detaches id from the network its record names (the public one
// when there is no record: attachments made before records existed).
func (m *Manager) teardown(ctx context.Context, id string) error {
	n, err := m.recordedNet(id)
	if err != nil {
		return err
	}
	unlockNet := m.netLocks.lock(n.name)
	defer unlockNet()
	return m.teardownIn(ctx, id, n)
}

// teardownIn runs DEL even when neither namespace nor cache is left: DEL is
// idempotent for the plugins, and it is what releases an address that an
// ADD interrupted by a crash allocated without caching. The caller holds
// the network's lock. A subnet bridge whose last attachment this was is
// removed with its IPAM state.
func (m *Manager) teardownIn(ctx context.Context, id string, n *bridgeNet) error {
	path := m.NetNSPath(id)
	alive, err := netnsAlive(path)
	if err != nil {
		return err
	}
	nsPath := ""
	if alive {
		nsPath = path
	}

	list, rt, err := m.cachedList(id, n)
	if err != nil {
		return err
	}
	rt.NetNS = nsPath
	if err := m.cni.DelNetworkList(ctx, list, rt); err != nil {
		return fmt.Errorf("cni del %s: %w", list.Name, err)
	}

	lo, rt, err := m.cachedLoopback(id)
	if err != nil {
		return err
	}
	rt.NetNS = nsPath
	if err := m.cni.DelNetwork(ctx, lo, rt); err != nil {
		return fmt.Errorf("cni del loopback: %w", err)
	}
	if err := removeNetNS(path); err != nil {
		return err
	}
	if err := unmountNS(m.UserNSPath(id)); err != nil {
		return err
	}
	if err := m.removeRecord(id); err != nil {
		return err
	}
	if n == m.def {
		return nil
	}
	return m.releaseNetIfUnused(n)
}

// cachedList returns the list config and runtime arguments that the ADD of
// id used, or the current config if there was no complete ADD.
func (m *Manager) cachedList(id string, n *bridgeNet) (*libcni.NetworkConfigList, *libcni.RuntimeConf, error) {
	rt := &libcni.RuntimeConf{ContainerID: id, IfName: ifEth}
	b, crt, err := m.cni.GetNetworkListCachedConfig(n.list, rt)
	if err != nil {
		return nil, nil, fmt.Errorf("read cni cache: %w", err)
	}
	if b == nil {
		return n.list, rt, nil
	}
	list, err := libcni.ConfListFromBytes(b)
	if err != nil {
		return nil, nil, fmt.Errorf("parse cached conflist: %w", err)
	}
	return list, crt, nil
}

// cachedLoopback is cachedList for the loopback config.
func (m *Manager) cachedLoopback(id string) (*libcni.PluginConfig, *libcni.RuntimeConf, error) {
	rt := &libcni.RuntimeConf{ContainerID: id, IfName: ifLoopback}
	b, crt, err := m.cni.GetNetworkCachedConfig(m.lo, rt)
	if err != nil {
		return nil, nil, fmt.Errorf("read cni cache: %w", err)
	}
	if b == nil {
		return m.lo, rt, nil
	}
	lo, err := libcni.NetworkPluginConfFromBytes(b)
	if err != nil {
		return nil, nil, fmt.Errorf("parse cached loopback conf: %w", err)
	}
	return lo, crt, nil
}

// List returns the ids that have a namespace file under Dir/netns, attached
// or not, so that the caller can tear down the ones it does not know.
func (m *Manager) List() ([]string, error) {
	entries, err := os.ReadDir(m.netnsDir())
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list network namespaces: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if validID.MatchString(e.Name()) && !e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

func checkID(id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("network id %q: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

// attachment picks the IPv4 address of the interface inside the namespace.
func attachment(path string, res cnitypes.Result) (Attachment, error) {
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return Attachment{}, fmt.Errorf("convert cni result: %w", err)
	}
	for _, ipc := range r.IPs {
		if ipc.Address.IP.To4() == nil {
			continue
		}
		if ipc.Interface != nil {
			i := *ipc.Interface
			if i < 0 || i >= len(r.Interfaces) || r.Interfaces[i].Sandbox == "" {
				continue
			}
		}
		a := Attachment{NetNSPath: path, IP: ipc.Address.IP.String()}
		if ipc.Gateway != nil {
			a.Gateway = ipc.Gateway.String()
		}
		return a, nil
	}
	return Attachment{}, fmt.Errorf("cni result has no IPv4 address in the namespace: %w", errdefs.ErrInternal)
}

// portMappings renders ports in the shape of the portMappings capability.
func portMappings(ports []PortMapping) []map[string]any {
	out := make([]map[string]any, 0, len(ports))
	for _, p := range ports {
		proto := strings.ToLower(p.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		pm := map[string]any{"hostPort": p.HostPort, "containerPort": p.ContainerPort, "protocol": proto}
		if p.HostIP != "" {
			pm["hostIP"] = p.HostIP
		}
		out = append(out, pm)
	}
	return out
}

// setProxyARP makes bridge answer ARP requests for addresses the node
// routes through another interface: the groups of its subnet that run on
// other nodes. It writes the sysctl of the calling thread's network
// namespace, the agent's.
func setProxyARP(bridge string) error {
	path := filepath.Join("/proc/sys/net/ipv4/conf", bridge, "proxy_arp")
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("enable proxy_arp on %s: %w", bridge, err)
	}
	return nil
}

// writeFileAtomic replaces path with data, so that a reader never sees a
// half-written config.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
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

// keyedMutex serialises work per key without holding one lock for all.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()

	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
