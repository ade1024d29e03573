package testenv_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/miekg/dns"
	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testenv"
)

func TestStartNodeNetwork(t *testing.T) {
	testenv.RequireRoot(t)
	var nn *testenv.NodeNetwork
	t.Run("each node has its address, routes and sysctls", func(t *testing.T) {
		nn = testenv.StartNodeNetwork(t, 2)
		if len(nn.Nodes) != 2 || len(nn.Bridge) > 15 || nn.Prefix.Bits() != 24 || nn.BridgeAddr != nn.Prefix.Addr().Next() {
			t.Fatalf("got network %+v", nn)
		}
		for _, n := range nn.Nodes {
			if !nn.Prefix.Contains(n.Addr) || n.Addr == nn.BridgeAddr {
				t.Errorf("%s: address %s is not a node address of %s", n.Name, n.Addr, nn.Prefix)
			}
			if out := n.Exec(t, "ip", "-o", "-4", "addr", "show", "dev", testenv.NodeLink); !strings.Contains(out, netip.PrefixFrom(n.Addr, 24).String()) {
				t.Errorf("%s: %s has no address %s/24: %s", n.Name, testenv.NodeLink, n.Addr, out)
			}
			if out := n.Exec(t, "ip", "-4", "route", "show", "default"); !strings.Contains(out, "via "+nn.BridgeAddr.String()) {
				t.Errorf("%s: default route is not via %s: %q", n.Name, nn.BridgeAddr, out)
			}
			if out := n.Exec(t, "ip", "-o", "link", "show", "dev", "lo"); !strings.Contains(out, "UP") {
				t.Errorf("%s: lo is not up: %s", n.Name, out)
			}
			for _, sysctl := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/bridge/bridge-nf-call-iptables"} {
				if got := strings.TrimSpace(n.Exec(t, "cat", sysctl)); got != "1" {
					t.Errorf("%s: %s is %s, want 1", n.Name, sysctl, got)
				}
			}
		}
	})
	if nn == nil {
		t.FailNow()
	}
	t.Run("cleanup removed the bridge, the namespaces and their links", func(t *testing.T) {
		assertNodeNetworkGone(t, nn)
	})
}

func TestNodeNetwork_Reachability(t *testing.T) {
	testenv.RequireRoot(t)
	nn := testenv.StartNodeNetwork(t, 2)
	n0, n1 := nn.Nodes[0], nn.Nodes[1]

	t.Run("a node reaches another node from its own address", func(t *testing.T) {
		ln, err := n0.Listen("tcp", net.JoinHostPort(n0.Addr.String(), "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		if from := roundTrip(t, ln, n1.DialContext); from != n1.Addr {
			t.Errorf("connection came from %s, want %s", from, n1.Addr)
		}
	})
	t.Run("a node reaches the bridge address", func(t *testing.T) {
		ln, err := net.Listen("tcp", net.JoinHostPort(nn.BridgeAddr.String(), "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		if from := roundTrip(t, ln, n0.DialContext); from != n0.Addr {
			t.Errorf("connection came from %s, want %s", from, n0.Addr)
		}
	})
	t.Run("a listener in a node is not on the host's loopback", func(t *testing.T) {
		ln, err := n0.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
			c.Close()
			t.Errorf("the host's %s reached the listener of %s", ln.Addr(), n0.Name)
		}
		if from := roundTrip(t, ln, n0.DialContext); from != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("connection came from %s, want 127.0.0.1", from)
		}
	})
	t.Run("a disconnected node is cut off until it is reconnected", func(t *testing.T) {
		ln, err := net.Listen("tcp", net.JoinHostPort(nn.BridgeAddr.String(), "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		nn.Disconnect(t, n1)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := n1.DialContext(ctx, "tcp", ln.Addr().String())
		cancel()
		if err == nil {
			c.Close()
			t.Errorf("%s reached %s while disconnected", n1.Name, ln.Addr())
		}
		nn.Reconnect(t, n1)
		// The node's neighbour entry for the bridge may have failed
		// meanwhile; the kernel retries it.
		deadline := time.Now().Add(15 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			c, err := n1.DialContext(ctx, "tcp", ln.Addr().String())
			cancel()
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s cannot reach %s after Reconnect: %v", n1.Name, ln.Addr(), err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// roundTrip dials ln with dial, checks that a byte goes through, and
// returns the address the connection came from.
func roundTrip(t *testing.T, ln net.Listener, dial func(ctx context.Context, network, addr string) (net.Conn, error)) netip.Addr {
	t.Helper()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dial(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial %s: %v", ln.Addr(), err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatalf("write: %v", err)
	}
	var s net.Conn
	select {
	case s = <-accepted:
	case <-ctx.Done():
		t.Fatalf("%s accepted nothing", ln.Addr())
	}
	if s == nil {
		t.Fatalf("accept on %s failed", ln.Addr())
	}
	defer s.Close()
	b := make([]byte, 1)
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(s, b); err != nil || b[0] != 'x' {
		t.Fatalf("read %q: %v", b, err)
	}
	return netip.MustParseAddrPort(s.RemoteAddr().String()).Addr()
}

// assertNodeNetworkGone fails t for any part of nn left on the host.
func assertNodeNetworkGone(t *testing.T, nn *testenv.NodeNetwork) {
	t.Helper()
	if _, err := net.InterfaceByName(nn.Bridge); err == nil {
		t.Errorf("bridge %s still exists", nn.Bridge)
	}
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nn.Nodes {
		if _, err := net.InterfaceByName(n.HostLink); err == nil {
			t.Errorf("link %s still exists", n.HostLink)
		}
		if _, err := os.Lstat(n.NetNSPath); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists (%v)", n.NetNSPath, err)
		}
		for _, m := range mounts {
			if strings.Contains(m.Mountpoint, n.NetNS) {
				t.Errorf("still mounted: %s", m.Mountpoint)
			}
		}
	}
}

// TestStartContainerdIn runs a container on the host network of a
// containerd in a node namespace, from an image pulled from the node over
// the infra bridge, next to a containerd of the host's that its cleanup
// must leave alone.
func TestStartContainerdIn(t *testing.T) {
	testenv.RequireRoot(t)
	ns := "testenv-" + randomHex(t, 4)
	t.Cleanup(func() { removeNamespaceLeftovers(t, ns) })

	var (
		nn       *testenv.NodeNetwork
		ctd      *testenv.Containerd
		helloPID uint32
		shimPIDs []int
		otherPID uint32
	)
	t.Run("a node's containerd", func(t *testing.T) {
		nn = testenv.StartNodeNetwork(t, 1)
		node := nn.Nodes[0]
		reg := testenv.StartRegistryOn(t, nn.BridgeAddr.String())
		hello := testenv.PushHelloImage(t, reg)
		busybox := testenv.PushBusyboxImage(t, reg)
		if !strings.HasPrefix(hello, nn.BridgeAddr.String()+":") {
			t.Fatalf("hello image %s is not on the bridge address %s", hello, nn.BridgeAddr)
		}
		other := testenv.StartContainerd(t)
		otherPID = runContainer(t, other.Client(t), ns, busybox, hostResolver())

		t.Run("runs a container pulled over the bridge in the node's namespace", func(t *testing.T) {
			ctd = testenv.StartContainerdIn(t, node.NetNSPath)
			if ctd.NetNSPath != node.NetNSPath {
				t.Errorf("NetNSPath is %q, want %q", ctd.NetNSPath, node.NetNSPath)
			}
			// The client fetches images itself: dialling from the node
			// proves the node reaches the registry.
			helloPID = runContainer(t, ctd.Client(t), ns, hello, nodeResolver(node),
				// No namespace of its own: the shim's, hence containerd's.
				oci.WithHostNamespace(specs.NetworkNamespace))
			shimPIDs = shimsOf(ctd.Address)
			if len(shimPIDs) == 0 {
				t.Errorf("found no shim for %s", ctd.Address)
			}
			if !sameFile(t, fmt.Sprintf("/proc/%d/ns/net", helloPID), node.NetNSPath) {
				t.Errorf("container process %d is not in the network namespace %s", helloPID, node.NetNSPath)
			}
			// It listens on the node's loopback and address, nowhere else.
			for _, target := range []string{"127.0.0.1:80", net.JoinHostPort(node.Addr.String(), "80")} {
				if body := getHello(t, node.DialContext, target); !strings.Contains(body, "Hello from Berth") {
					t.Errorf("GET http://%s/ from %s: %q", target, node.Name, body)
				}
			}
		})
		t.Run("its cleanup left the other containerd's container running", func(t *testing.T) {
			if !alive(int(otherPID)) {
				t.Errorf("container process %d of the host's containerd was killed", otherPID)
			}
			if helloPID == 0 {
				t.Skip("no container ran")
			}
			if alive(int(helloPID)) {
				t.Errorf("container process %d still runs", helloPID)
			}
			for _, pid := range shimPIDs {
				if alive(pid) {
					t.Errorf("shim %d still runs", pid)
				}
			}
		})
	})
	if nn == nil {
		t.FailNow()
	}
	t.Run("cleanup left no namespace, link, mount or directory", func(t *testing.T) {
		assertNodeNetworkGone(t, nn)
		if ctd != nil {
			dir := filepath.Dir(ctd.Address)
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("%s still exists", dir)
			}
			mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range mounts {
				t.Errorf("still mounted: %s", m.Mountpoint)
			}
		}
		if otherPID != 0 && alive(int(otherPID)) {
			t.Errorf("container process %d of the host's containerd survived its cleanup", otherPID)
		}
	})
}

// runContainer pulls ref with resolver and starts it in namespace ns with
// the image's command, returning its pid.
func runContainer(t *testing.T, cl *client.Client, ns, ref string, resolver docker.ResolverOptions, extra ...oci.SpecOpts) uint32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), time.Minute)
	defer cancel()
	img, err := cl.Pull(ctx, ref, client.WithResolver(docker.NewResolver(resolver)), client.WithPullUnpack, client.WithPullSnapshotter("overlayfs"))
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	id := "c-" + randomHex(t, 4)
	opts := append([]oci.SpecOpts{oci.WithImageConfig(img)}, extra...)
	ctr, err := cl.NewContainer(ctx, id,
		client.WithImage(img),
		client.WithSnapshotter("overlayfs"),
		client.WithNewSnapshot(id+"-snap", img),
		client.WithNewSpec(opts...),
	)
	if err != nil {
		t.Fatalf("create container: %v", err)
	}
	task, err := ctr.NewTask(ctx, cio.LogFile(filepath.Join(t.TempDir(), id+".log")))
	if err != nil {
		t.Fatalf("create task: %v", err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatalf("start task: %v", err)
	}
	return task.Pid()
}

// hostResolver reaches every registry over plain HTTP from the host.
func hostResolver() docker.ResolverOptions {
	return docker.ResolverOptions{Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchAllHosts))}
}

// nodeResolver is hostResolver with every connection made from node.
func nodeResolver(node *testenv.Node) docker.ResolverOptions {
	hc := &http.Client{Transport: &http.Transport{DialContext: node.DialContext}}
	return docker.ResolverOptions{Hosts: docker.ConfigureDefaultRegistries(
		docker.WithPlainHTTP(docker.MatchAllHosts),
		docker.WithClient(hc),
	)}
}

// getHello GETs http://target/ with connections made by dial, retrying
// until the server listens.
func getHello(t *testing.T, dial func(ctx context.Context, network, addr string) (net.Conn, error), target string) string {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := hc.Get("http://" + target + "/")
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				return string(b)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET http://%s/: %v", target, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sameFile reports whether a and b are the same inode (namespace files
// are compared so).
func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	var sa, sb unix.Stat_t
	if err := unix.Stat(a, &sa); err != nil {
		t.Fatalf("stat %s: %v", a, err)
	}
	if err := unix.Stat(b, &sb); err != nil {
		t.Fatalf("stat %s: %v", b, err)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// TestStartServer_OnNodeNetwork checks that a server listening on the
// infra bridge serves its API, over TLS with its CA, and its DNS to the
// nodes.
func TestStartServer_OnNodeNetwork(t *testing.T) {
	testenv.RequireRoot(t)
	nn := testenv.StartNodeNetwork(t, 1)
	node := nn.Nodes[0]
	ctd := testenv.StartContainerd(t)
	srv := testenv.StartServer(t, testenv.ServerOptions{Containerd: ctd, ListenHost: nn.BridgeAddr.String(), Isolation: "runc"})

	t.Run("the API answers a node on the bridge address", func(t *testing.T) {
		if want := "https://" + nn.BridgeAddr.String() + ":"; !strings.HasPrefix(srv.Client.Endpoint, want) {
			t.Fatalf("endpoint %s does not start with %s", srv.Client.Endpoint, want)
		}
		hc := srv.HTTPClient()
		hc.Transport.(*http.Transport).DialContext = node.DialContext
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.Client.Endpoint+"/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+srv.Client.Token)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("list groups from %s: %v", node.Name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("list groups from %s answered %s, want 200", node.Name, resp.Status)
		}
	})
	t.Run("the DNS server answers a node on the bridge address", func(t *testing.T) {
		if host, _, _ := net.SplitHostPort(srv.DNS); host != nn.BridgeAddr.String() {
			t.Fatalf("DNS listens on %s, want the bridge address %s", srv.DNS, nn.BridgeAddr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := node.DialContext(ctx, "udp", srv.DNS)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		m := new(dns.Msg)
		m.SetQuestion("nothing-"+rand.Text()[:8]+".example.", dns.TypeA)
		co := &dns.Conn{Conn: c}
		if err := co.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
		r, err := co.ReadMsg()
		if err != nil {
			t.Fatalf("query %s from %s: %v", srv.DNS, node.Name, err)
		}
		if r.Id != m.Id || !r.Response {
			t.Errorf("got %v", r)
		}
	})
}
