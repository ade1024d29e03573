package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// NodeLink is the name of a node's interface on the infra bridge, inside
// its namespace.
const NodeLink = "eth0"

// NodeNetwork is a cluster of network namespaces on one host, one per
// node, joined by a bridge in the root namespace (the "infra" network):
// the nodes reach each other, and the root namespace reaches them, on
// the bridge's /24.
type NodeNetwork struct {
	// Bridge is the bridge's name ("bi" + 6 hex digits), unique on the
	// host; the namespace and veth names derive from it.
	Bridge string
	// Prefix is the infra /24 (inside FreePrefix's range), BridgeAddr its
	// first address, held by the bridge: what daemons in the root
	// namespace (server, registry) listen on for the nodes.
	Prefix     netip.Prefix
	BridgeAddr netip.Addr
	// Nodes are the nodes in order; node i has the address i+2 of Prefix.
	Nodes []*Node
}

// Node is one network namespace of a NodeNetwork.
type Node struct {
	// Name is the node's name in its cluster: "node-0", "node-1"...
	Name string
	// NetNS is the namespace's name under RunNetnsDir (unique on the
	// host) and NetNSPath the file to open or pass to nsenter --net.
	NetNS     string
	NetNSPath string
	// Addr is the node's address on the infra network, on NodeLink.
	Addr netip.Addr
	// HostLink is the root namespace's end of the node's veth, a port of
	// the bridge.
	HostLink string

	network *NodeNetwork
}

// StartNodeNetwork makes a bridge with the first address of a free /24
// and n network namespaces, each with a veth on the bridge (NodeLink
// inside, with the node's address), lo up, a default route via the
// bridge, and ip_forward and bridge-nf-call-iptables set to 1 in the
// namespace (the group firewall of an agent filters bridged traffic only
// with the latter; it is per namespace on current kernels). Everything
// is removed when t ends, whatever the test did.
func StartNodeNetwork(t testing.TB, n int) *NodeNetwork {
	t.Helper()
	RequireRoot(t)
	RequireBinary(t, "ip")
	RequireBinary(t, "nsenter")
	if n < 1 || n > 250 {
		t.Fatalf("StartNodeNetwork: %d nodes, want 1 to 250", n)
	}
	// Before the namespaces, so that its cleanup runs after theirs.
	KeepRunNetnsClean(t)

	nn := &NodeNetwork{}
	t.Cleanup(func() { nn.remove(t) })
	if err := nn.makeBridge(); err != nil {
		t.Fatalf("node network: %v", err)
	}
	for i := range n {
		node, err := nn.addNode(i)
		if node != nil {
			nn.Nodes = append(nn.Nodes, node)
		}
		if err != nil {
			t.Fatalf("node network %s: node %d: %v", nn.Bridge, i, err)
		}
	}
	return nn
}

// makeBridge creates the bridge under a fresh name with the first address
// of a free /24. Another test may take the same name or prefix between
// the check and the creation; a failed creation is then retried.
func (nn *NodeNetwork) makeBridge() error {
	var last error
	for range 10 {
		b := make([]byte, 3)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		name := "bi" + hex.EncodeToString(b)
		if _, err := net.InterfaceByName(name); err == nil {
			continue
		}
		prefix, err := FreePrefix(24)
		if err != nil {
			return err
		}
		if err := ipCmd("link", "add", name, "type", "bridge"); err != nil {
			last = err
			continue
		}
		nn.Bridge = name // from here on, the cleanup deletes it
		addr := prefix.Addr().Next()
		if err := ipCmd("addr", "add", netip.PrefixFrom(addr, 24).String(), "dev", name); err != nil {
			return err
		}
		if err := ipCmd("link", "set", name, "up"); err != nil {
			return err
		}
		nn.Prefix, nn.BridgeAddr = prefix, addr
		return nil
	}
	return fmt.Errorf("no bridge made after 10 attempts: %v", last)
}

// addNode makes node i. It returns the node as soon as anything of it
// exists, so that the cleanup knows what to remove.
func (nn *NodeNetwork) addNode(i int) (*Node, error) {
	addr := nn.BridgeAddr
	for range i + 1 {
		addr = addr.Next()
	}
	name := "node-" + strconv.Itoa(i)
	node := &Node{
		Name:     name,
		NetNS:    "berth-" + nn.Bridge + "-" + name,
		HostLink: nn.Bridge + "v" + strconv.Itoa(i),
		Addr:     addr,
		network:  nn,
	}
	node.NetNSPath = filepath.Join(RunNetnsDir, node.NetNS)
	if err := ipCmd("netns", "add", node.NetNS); err != nil {
		return nil, err
	}
	// The node's end is made in its namespace, so that no two nodes'
	// interfaces ever share a name in the root namespace.
	steps := [][]string{
		{"link", "add", node.HostLink, "type", "veth", "peer", "name", NodeLink, "netns", node.NetNS},
		{"link", "set", node.HostLink, "master", nn.Bridge, "up"},
		{"-n", node.NetNS, "link", "set", "lo", "up"},
		{"-n", node.NetNS, "addr", "add", netip.PrefixFrom(addr, 24).String(), "dev", NodeLink},
		{"-n", node.NetNS, "link", "set", NodeLink, "up"},
		{"-n", node.NetNS, "route", "add", "default", "via", nn.BridgeAddr.String()},
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			return node, err
		}
	}
	// /proc/sys/net shows the namespace of the thread that opens it.
	err := node.Do(func() error {
		for _, p := range []string{"/proc/sys/net/ipv4/ip_forward", bridgeNFCallIptables} {
			if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	return node, err
}

// bridgeNFCallIptables is br_netfilter's switch for passing bridged IPv4
// traffic through the ip family's hooks (the agent's group firewall).
const bridgeNFCallIptables = "/proc/sys/net/bridge/bridge-nf-call-iptables"

// Disconnect cuts the node off the infra network (its bridge port goes
// down), as a network partition would, leaving its processes running.
func (nn *NodeNetwork) Disconnect(t testing.TB, node *Node) {
	t.Helper()
	if err := ipCmd("link", "set", node.HostLink, "down"); err != nil {
		t.Fatalf("disconnect %s: %v", node.Name, err)
	}
}

// Reconnect undoes Disconnect.
func (nn *NodeNetwork) Reconnect(t testing.TB, node *Node) {
	t.Helper()
	if err := ipCmd("link", "set", node.HostLink, "up"); err != nil {
		t.Fatalf("reconnect %s: %v", node.Name, err)
	}
}

// remove deletes the veths, the namespaces and the bridge. A process still
// in a node's namespace (a daemon whose own cleanup failed) would keep it,
// and its interfaces, alive after the file is gone: it is reported and
// killed first.
func (nn *NodeNetwork) remove(t testing.TB) {
	for _, node := range nn.Nodes {
		for pid, cmdline := range node.processes() {
			t.Errorf("process %d was still in the namespace of %s; killed it: %.160s", pid, node.Name, cmdline)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if err := deleteLink(node.HostLink); err != nil {
			t.Errorf("node network: %v", err)
		}
		if _, err := os.Stat(node.NetNSPath); err == nil {
			if err := ipCmd("netns", "del", node.NetNS); err != nil {
				t.Errorf("node network: %v", err)
			}
		}
	}
	if nn.Bridge != "" {
		if err := deleteLink(nn.Bridge); err != nil {
			t.Errorf("node network: %v", err)
		}
	}
}

// processes maps the pids of the processes in the node's namespace to
// their command lines.
func (n *Node) processes() map[int]string {
	var want unix.Stat_t
	if err := unix.Stat(n.NetNSPath, &want); err != nil {
		return nil
	}
	found := map[int]string{}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		var st unix.Stat_t
		if unix.Stat(p+"/ns/net", &st) != nil || st.Dev != want.Dev || st.Ino != want.Ino {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, _ := os.ReadFile(p + "/cmdline")
		found[pid] = strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
	}
	return found
}

// Command returns a command that runs name with args in the node's
// network namespace, and only there: nsenter --net keeps the host's mount
// namespace, which containerd, its shims and the agent must share (they
// pass bind mounts to each other), where `ip netns exec` would give the
// command a private one with its own /sys.
func (n *Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	argv := nsenterArgs(n.NetNSPath, append([]string{name}, args...)...)
	return exec.CommandContext(ctx, argv[0], argv[1:]...)
}

// nsenterArgs is the command line that runs args in the namespace at path.
func nsenterArgs(path string, args ...string) []string {
	return append([]string{"nsenter", "--net=" + path, "--"}, args...)
}

// Exec runs args in the node's namespace and returns its combined
// output, failing t when it fails.
func (n *Node) Exec(t testing.TB, args ...string) string {
	t.Helper()
	if len(args) == 0 {
		t.Fatal("Node.Exec: no command")
	}
	out, err := n.Command(context.Background(), args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %s: %v: %s", n.Name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Do runs fn on an OS thread switched to the node's network namespace,
// for sockets the test itself opens there. Only what fn does on its own
// goroutine happens in the namespace: goroutines it starts, and processes
// it forks (the kernel signals those when the thread ends), do not belong
// in it; use Command for processes.
func (n *Node) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restored, err := withNetNS(n.NetNSPath, fn)
		if restored {
			runtime.UnlockOSThread()
		}
		// Else the goroutine ends locked, and Go ends the thread with it
		// rather than run other goroutines in the node's namespace.
		errc <- err
	}()
	return <-errc
}

// withNetNS switches the current (locked) thread to the namespace at path,
// runs fn and switches back, reporting whether the thread is back in its
// own namespace.
func withNetNS(path string, fn func() error) (restored bool, err error) {
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return true, fmt.Errorf("open own network namespace: %w", err)
	}
	defer self.Close()
	target, err := os.Open(path)
	if err != nil {
		return true, fmt.Errorf("open network namespace: %w", err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return true, fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		return false, errors.Join(fnErr, fmt.Errorf("return from network namespace %s: %w", path, err))
	}
	return true, fnErr
}

// DialContext dials addr from the node's namespace; it fits
// http.Transport.DialContext. The host of addr should be an IP address:
// a name lookup may run on another thread, outside the namespace.
func (n *Node) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Listen listens on addr in the node's namespace; the listener stays
// there whichever thread accepts.
func (n *Node) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// ipCmd runs ip(8) with args.
func ipCmd(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
