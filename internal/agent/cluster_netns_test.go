package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/berth-dev/berth/internal/agent/firewall"
	"github.com/berth-dev/berth/internal/agent/network"
	"github.com/berth-dev/berth/internal/agent/routes"
	"github.com/berth-dev/berth/internal/testenv"
	"github.com/berth-dev/berth/internal/types"
)

// clusterNode is one node of TestClusterNetwork_AcrossNodes: a node
// namespace with the agent's network manager, firewall and route table,
// all working in that namespace.
type clusterNode struct {
	*testenv.Node
	net   *network.Manager
	fw    *firewall.Firewall
	table *routes.Table
	agent *Agent
	atts  map[string]network.Attachment // by group key
}

// nthAddr is the address n places after the start of p.
func nthAddr(p netip.Prefix, n int) string {
	a := p.Masked().Addr()
	for range n {
		a = a.Next()
	}
	return a.String()
}

// serveIn answers "hello from <name>" on port in the group namespace at
// path, until the test ends.
func serveIn(t *testing.T, path, name string, port int) {
	t.Helper()
	var ln net.Listener
	err := ns.WithNetNSPath(path, func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp4", ":"+strconv.Itoa(port))
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", name, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "hello from "+name)
			c.Close()
		}
	}()
}

// dialFrom connects from the group namespace at path (or the node's own,
// with node set) to ip:port and returns what the server wrote.
func dialFrom(path string, node *testenv.Node, ip string, port int, timeout time.Duration) (string, error) {
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	var c net.Conn
	dial := func() error {
		var err error
		c, err = net.DialTimeout("tcp4", addr, timeout)
		return err
	}
	var err error
	if node != nil {
		err = node.Do(dial)
	} else {
		err = ns.WithNetNSPath(path, func(ns.NetNS) error { return dial() })
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	return string(b), err
}

// TestClusterNetwork_AcrossNodes runs two nodes, each in its namespace with
// the same public subnet and virtual network subnet on its bridges and its
// groups at cluster-wide addresses, and checks that the routes and firewall
// rules the agent computes from the cluster's endpoints let groups reach
// each other across the nodes, with the isolation rules of one node.
func TestClusterNetwork_AcrossNodes(t *testing.T) {
	testenv.RequireRoot(t)
	for _, p := range []string{"bridge", "static", "host-local", "portmap", "loopback"} {
		testenv.RequireBinary(t, filepath.Join(network.DefaultPluginDir, p))
	}
	testenv.RequireBinary(t, "nft")
	nn := testenv.StartNodeNetwork(t, 2)
	public, err := testenv.FreePrefix(24)
	if err != nil {
		t.Fatal(err)
	}
	vnetPrefix, err := testenv.FreePrefix(28)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	bridge := "bc" + hex.EncodeToString(b)
	ctx := context.Background()

	const vnet = "s1/rg/vnet"
	subnet := &types.SubnetRef{VirtualNetwork: vnet, Name: "default", AddressPrefix: vnetPrefix.String()}
	pub := func(name, sub, node, ip string) types.ContainerGroup {
		return types.ContainerGroup{Subscription: sub, ResourceGroup: "rg", Name: name, UID: name + "0123456789abcdef", NodeName: node, IP: ip,
			Spec: types.GroupSpec{IPAddress: &types.IPAddress{Type: "Public", Ports: []types.Port{{Port: 8080, Protocol: "TCP"}}}}}
	}
	priv := func(name, node, ip string) types.ContainerGroup {
		return types.ContainerGroup{Subscription: "s1", ResourceGroup: "rg", Name: name, UID: name + "0123456789abcdef", NodeName: node, IP: ip,
			Spec: types.GroupSpec{IPAddress: &types.IPAddress{Type: "Private"}, Subnet: subnet}}
	}
	n0, n1 := nn.Nodes[0].Name, nn.Nodes[1].Name
	groups := []types.ContainerGroup{
		pub("pa", "s1", n0, nthAddr(public, 10)),
		pub("pb", "s1", n1, nthAddr(public, 20)),
		pub("pc", "s2", n1, nthAddr(public, 30)), // another tenant
		priv("va", n0, nthAddr(vnetPrefix, 5)),
		priv("vb", n1, nthAddr(vnetPrefix, 6)),
	}
	var eps []types.Endpoint
	for i := range groups {
		e, ok := types.EndpointOf(&groups[i])
		if !ok {
			t.Fatalf("group %s has no endpoint", groups[i].Name)
		}
		eps = append(eps, e)
	}
	nodes := map[string]types.Node{}
	for _, n := range nn.Nodes {
		nodes[n.Name] = types.Node{Name: n.Name, Addresses: []string{n.Addr.String()}}
	}

	cns := map[string]*clusterNode{}
	for _, n := range nn.Nodes {
		c := &clusterNode{Node: n, table: routes.New(0), atts: map[string]network.Attachment{}}
		dir := t.TempDir()
		err := n.Do(func() error {
			var err error
			if c.net, err = network.New(network.Options{Dir: dir, Bridge: bridge, Subnet: public.String(), ClusterRouting: true}); err != nil {
				return err
			}
			c.fw, err = firewall.New(firewall.TableName(bridge), nil)
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		// After t.TempDir, so it runs before the directory goes: the
		// group namespaces are mounted there.
		t.Cleanup(func() {
			ids, _ := c.net.List()
			for _, id := range ids {
				if err := n.Do(func() error { return c.net.Teardown(context.Background(), id) }); err != nil {
					t.Errorf("%s: teardown %s: %v", n.Name, id, err)
				}
			}
		})
		var mine fixedGroups
		for i := range groups {
			g := &groups[i]
			if g.NodeName != n.Name {
				continue
			}
			mine = append(mine, *g)
			var att network.Attachment
			if err := n.Do(func() error {
				var err error
				att, err = c.net.SetupIn(ctx, g.UID, placement(g))
				return err
			}); err != nil {
				t.Fatalf("%s: set up %s: %v", n.Name, g.Name, err)
			}
			if att.IP != g.IP {
				t.Fatalf("%s: %s attached at %s, want its address %s", n.Name, g.Name, att.IP, g.IP)
			}
			c.atts[g.Key()] = att
			serveIn(t, att.NetNSPath, g.Name, 8080)
			serveIn(t, att.NetNSPath, g.Name, 9090) // not declared
		}
		c.agent = New(Options{Network: c.net, Firewall: c.fw, NodeName: n.Name})
		c.agent.groups = mine
		cns[n.Name] = c
	}
	att := func(node, name string) network.Attachment { return cns[node].atts["s1/rg/"+name] }

	t.Run("without routes a group of the other node is out of reach", func(t *testing.T) {
		if got, err := dialFrom(att(n0, "pa").NetNSPath, nil, nthAddr(public, 20), 8080, time.Second); err == nil {
			t.Fatalf("pa reached pb without routes: %q", got)
		}
	})

	// What the cluster network controller does on each node, and the
	// agent's own firewall sync of its attached groups.
	for _, c := range cns {
		rs, skipped := clusterRoutes(c.Name, eps, nodes)
		st, bad := clusterFirewallState(c.Name, public, eps)
		if len(skipped)+len(bad) > 0 {
			t.Fatalf("%s: endpoints left out: %v %v", c.Name, skipped, bad)
		}
		err := c.Do(func() error {
			if err := c.table.Sync(ctx, rs); err != nil {
				return err
			}
			if err := c.agent.syncFirewall(ctx); err != nil {
				return err
			}
			return c.fw.ApplyCluster(ctx, st)
		})
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
	}

	tests := []struct {
		name     string
		from     string // group name, or "node" for node 0's own namespace
		fromNode string
		to       string
		port     int
		ok       bool
	}{
		{"a public group reaches a public group of its subscription on the other node", "pa", n0, nthAddr(public, 20), 8080, true},
		{"and the way back", "pb", n1, nthAddr(public, 10), 8080, true},
		{"a port the group did not declare stays closed across nodes", "pa", n0, nthAddr(public, 20), 9090, false},
		{"a group of another subscription on the other node is closed", "pa", n0, nthAddr(public, 30), 8080, false},
		{"a virtual network group reaches its network's group on the other node, on any port", "va", n0, nthAddr(vnetPrefix, 6), 9090, true},
		{"and the way back, through the other node's bridge answering ARP", "vb", n1, nthAddr(vnetPrefix, 5), 8080, true},
		{"a public group does not reach a virtual network group on the other node", "pa", n0, nthAddr(vnetPrefix, 6), 8080, false},
		{"a virtual network group does not reach a public group's undeclared port on the other node", "va", n0, nthAddr(public, 20), 9090, false},
		{"the host network of a node reaches a public group on the other node", "node", n0, nthAddr(public, 20), 8080, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var node *testenv.Node
			path := ""
			if tt.from == "node" {
				node = cns[tt.fromNode].Node
			} else {
				path = att(tt.fromNode, tt.from).NetNSPath
			}
			timeout := 3 * time.Second
			if !tt.ok {
				timeout = time.Second
			}
			got, err := dialFrom(path, node, tt.to, tt.port, timeout)
			switch {
			case tt.ok && (err != nil || got == ""):
				t.Errorf("%s -> %s:%d: %q, %v; want an answer", tt.from, tt.to, tt.port, got, err)
			case !tt.ok && err == nil && got != "":
				t.Errorf("%s -> %s:%d answered %q; want it closed", tt.from, tt.to, tt.port, got)
			}
		})
	}

	t.Run("the destination sees the group's own address", func(t *testing.T) {
		var ln net.Listener
		if err := ns.WithNetNSPath(att(n1, "pb").NetNSPath, func(ns.NetNS) error {
			var err error
			ln, err = net.Listen("tcp4", ":8081")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		got := make(chan string, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- err.Error()
				return
			}
			got <- c.RemoteAddr().(*net.TCPAddr).IP.String()
			c.Close()
		}()
		// pb declares 8081 too: both nodes learn it, node 0 from the
		// endpoint, node 1 from its own group.
		groups[1].Spec.IPAddress.Ports = append(groups[1].Spec.IPAddress.Ports, types.Port{Port: 8081, Protocol: "TCP"})
		eps[1], _ = types.EndpointOf(&groups[1])
		st, _ := clusterFirewallState(n0, public, eps)
		if err := cns[n0].Do(func() error { return cns[n0].fw.ApplyCluster(ctx, st) }); err != nil {
			t.Fatal(err)
		}
		cns[n1].agent.groups = fixedGroups{groups[1], groups[2], groups[4]}
		if err := cns[n1].Do(func() error { return cns[n1].agent.syncFirewall(ctx) }); err != nil {
			t.Fatal(err)
		}
		c, err := dialFrom(att(n0, "pa").NetNSPath, nil, nthAddr(public, 20), 8081, 3*time.Second)
		if err != nil {
			t.Fatalf("pa -> pb:8081 after declaring it: %q %v", c, err)
		}
		select {
		case from := <-got:
			if want := nthAddr(public, 10); from != want {
				t.Errorf("pb saw the connection from %s, want pa's %s (no masquerading between groups)", from, want)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("pb's listener got nothing")
		}
	})
}
