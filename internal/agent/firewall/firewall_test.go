package firewall

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/berth-dev/berth/internal/testenv"
)

const table = "berth-bt0"

// countingFake is the knftables fake, counting transactions run.
type countingFake struct {
	*knftables.Fake
	runs int
}

func (c *countingFake) Run(ctx context.Context, tx *knftables.Transaction) error {
	c.runs++
	return c.Fake.Run(ctx, tx)
}

func newFake() (*Firewall, *countingFake) {
	fake := &countingFake{Fake: knftables.NewFake(knftables.IPv4Family, table)}
	return &Firewall{nft: fake, table: table}, fake
}

var (
	public  = netip.MustParsePrefix("10.88.0.0/24")
	subnet1 = netip.MustParsePrefix("10.130.0.0/25")
	subnet2 = netip.MustParsePrefix("10.130.0.128/25")
	subnet3 = netip.MustParsePrefix("10.140.0.0/24")
)

func pubGroup(uid, sub, ip string, ports ...Port) Group {
	return Group{Name: sub + "/rg/" + uid, UID: uid, Subscription: sub, IP: netip.MustParseAddr(ip), Kind: KindPublic, Ports: ports, Bridge: "bt0", Subnet: public}
}

func vnetGroup(uid, vnet, bridge, ip string, subnet netip.Prefix) Group {
	return Group{Name: "s1/rg/" + uid, UID: uid, Subscription: "s1", IP: netip.MustParseAddr(ip), Kind: KindPrivate, VirtualNetwork: vnet, Bridge: bridge, Subnet: subnet}
}

// remote is g as it runs on another node: without a bridge here.
func remote(g Group) Group {
	g.Bridge = ""
	return g
}

func TestFirewall_Apply(t *testing.T) {
	tests := []struct {
		name      string
		state     State
		hostPorts []Port
		want      []string // lines the dump must contain
		notWant   []string
	}{
		{
			name: "a public group accepts its declared ports, its own traffic, and drops other tenants",
			state: State{Managed: []netip.Prefix{public}, Groups: []Group{
				pubGroup("aaaa", "s1", "10.88.0.2", Port{"tcp", 80}, Port{"udp", 53}, Port{"tcp", 80}),
			}},
			want: []string{
				"add chain ip berth-bt0 forward { type filter hook forward priority 0 ; policy accept ; }",
				"add rule ip berth-bt0 forward ct state established,related accept",
				"add rule ip berth-bt0 forward ip daddr vmap @groups",
				"add rule ip berth-bt0 forward ip daddr @managed drop",
				"add element ip berth-bt0 groups { 10.88.0.2 : goto group-aaaa }",
				"add rule ip berth-bt0 group-aaaa ip saddr 10.88.0.2 accept",
				"add rule ip berth-bt0 group-aaaa ip saddr @managed ip saddr != @" + tenantSet("s1") + " drop",
				"add rule ip berth-bt0 group-aaaa meta l4proto . th dport { tcp . 80, udp . 53 } accept",
				"add rule ip berth-bt0 group-aaaa drop",
				"add element ip berth-bt0 managed { 10.88.0.0/24 }",
				"add element ip berth-bt0 " + tenantSet("s1") + " { 10.88.0.2 }",
			},
		},
		{
			name: "groups reach the host only on the allowed ports",
			state: State{Managed: []netip.Prefix{public}, Groups: []Group{
				pubGroup("aaaa", "s1", "10.88.0.2", Port{"tcp", 80}),
			}},
			hostPorts: []Port{{"udp", 53}, {"tcp", 8443}},
			want: []string{
				"add chain ip berth-bt0 input { type filter hook input priority 0 ; policy accept ; comment \"groups reach the host only on allowed ports\" ; }",
				"add rule ip berth-bt0 input ct state established,related accept",
				"add rule ip berth-bt0 input ip saddr @managed meta l4proto . th dport { tcp . 8443, udp . 53 } accept",
				"add rule ip berth-bt0 input ip saddr @managed drop",
			},
		},
		{
			name: "without allowed ports groups cannot open connections to the host",
			state: State{Managed: []netip.Prefix{public}, Groups: []Group{
				pubGroup("aaaa", "s1", "10.88.0.2", Port{"tcp", 80}),
			}},
			want:    []string{"add rule ip berth-bt0 input ip saddr @managed drop"},
			notWant: []string{"input ip saddr @managed meta l4proto"},
		},
		{
			name: "groups of a virtual network share one chain that accepts the network's bridges and subnets",
			state: State{Managed: []netip.Prefix{public, subnet1, subnet2, subnet3}, Groups: []Group{
				vnetGroup("b1", "s1/rg/vnet1", "bv1", "10.130.0.2", subnet1),
				vnetGroup("b2", "s1/rg/vnet1", "bv2", "10.130.0.130", subnet2),
				vnetGroup("c1", "s1/rg/vnet2", "bv3", "10.140.0.2", subnet3),
			}},
			want: []string{
				"add element ip berth-bt0 groups { 10.130.0.2 : goto " + vnetChain("s1/rg/vnet1") + " }",
				"add element ip berth-bt0 groups { 10.130.0.130 : goto " + vnetChain("s1/rg/vnet1") + " }",
				"add element ip berth-bt0 groups { 10.140.0.2 : goto " + vnetChain("s1/rg/vnet2") + " }",
				"add rule ip berth-bt0 " + vnetChain("s1/rg/vnet1") + ` iifname { "bv1", "bv2" } ip saddr { 10.130.0.0/25, 10.130.0.128/25 } accept`,
				"add rule ip berth-bt0 " + vnetChain("s1/rg/vnet2") + ` iifname { "bv3" } ip saddr { 10.140.0.0/24 } accept`,
				"add rule ip berth-bt0 " + vnetChain("s1/rg/vnet2") + " drop",
			},
			notWant: []string{"group-b1", "group-c1"},
		},
		{
			name: "a virtual network spread over nodes accepts its subnets from other nodes, and through its own bridges only here",
			state: State{Managed: []netip.Prefix{public, subnet1, subnet2}, Bridges: []string{"bt0"}, Groups: []Group{
				vnetGroup("b1", "s1/rg/vnet1", "bv1", "10.130.0.2", subnet1),
				remote(vnetGroup("b2", "s1/rg/vnet1", "", "10.130.0.130", subnet2)),
			}},
			want: []string{
				"add element ip berth-bt0 groups { 10.130.0.130 : goto " + vnetChain("s1/rg/vnet1") + " }",
				"add rule ip berth-bt0 " + vnetChain("s1/rg/vnet1") + ` iifname { "bv1" } ip saddr { 10.130.0.0/25, 10.130.0.128/25 } accept`,
				"add rule ip berth-bt0 " + vnetChain("s1/rg/vnet1") + " iifname != @bridges ip saddr { 10.130.0.0/25, 10.130.0.128/25 } accept",
				`add element ip berth-bt0 bridges { "bt0" }`,
				`add element ip berth-bt0 bridges { "bv1" }`,
			},
		},
		{
			name: "a virtual network with no group on this node accepts only from other nodes",
			state: State{Managed: []netip.Prefix{public, subnet3}, Bridges: []string{"bt0"}, Groups: []Group{
				remote(vnetGroup("c1", "s1/rg/vnet2", "", "10.140.0.2", subnet3)),
			}},
			want: []string{
				"add rule ip berth-bt0 " + vnetChain("s1/rg/vnet2") + " iifname != @bridges ip saddr { 10.140.0.0/24 } accept",
				"add rule ip berth-bt0 " + vnetChain("s1/rg/vnet2") + " drop",
			},
			notWant: []string{vnetChain("s1/rg/vnet2") + " iifname {"},
		},
		{
			name: "groups of other nodes get the same chains and tenant sets as local ones",
			state: State{Managed: []netip.Prefix{public}, Bridges: []string{"bt0"}, Groups: []Group{
				pubGroup("aaaa", "s1", "10.88.0.2", Port{"tcp", 80}),
				remote(pubGroup("bbbb", "s2", "10.88.0.3", Port{"tcp", 80})),
			}},
			want: []string{
				"add element ip berth-bt0 groups { 10.88.0.3 : goto group-bbbb }",
				"add rule ip berth-bt0 group-bbbb ip saddr @managed ip saddr != @" + tenantSet("s2") + " drop",
				"add element ip berth-bt0 " + tenantSet("s2") + " { 10.88.0.3 }",
			},
		},
		{
			name: "traffic from groups to the world is masqueraded, to other groups not",
			state: State{Managed: []netip.Prefix{public}, Groups: []Group{
				pubGroup("aaaa", "s1", "10.88.0.2", Port{"tcp", 80}),
			}},
			want: []string{
				`add chain ip berth-bt0 postrouting { type nat hook postrouting priority 100 ; comment "groups reach the world behind the node's address, other groups with their own" ; }`,
				"add rule ip berth-bt0 postrouting ip saddr @managed ip daddr != @managed masquerade",
			},
		},
		{
			name: "a group without an IP address accepts only its own traffic",
			state: State{Managed: []netip.Prefix{public}, Groups: []Group{
				{Name: "s2/rg/n", UID: "nnnn", Subscription: "s2", IP: netip.MustParseAddr("10.88.0.9"), Kind: KindNone, Bridge: "bt0", Subnet: public},
			}},
			want: []string{
				"add rule ip berth-bt0 group-nnnn ip saddr 10.88.0.9 accept",
				"add rule ip berth-bt0 group-nnnn drop",
			},
			notWant: []string{"th dport"},
		},
		{
			name: "tenants get one address set each",
			state: State{Managed: []netip.Prefix{public}, Groups: []Group{
				pubGroup("aaaa", "s1", "10.88.0.2", Port{"tcp", 80}),
				pubGroup("bbbb", "s2", "10.88.0.3", Port{"tcp", 80}),
			}},
			want: []string{
				"add element ip berth-bt0 " + tenantSet("s1") + " { 10.88.0.2 }",
				"add element ip berth-bt0 " + tenantSet("s2") + " { 10.88.0.3 }",
				"add rule ip berth-bt0 group-bbbb ip saddr @managed ip saddr != @" + tenantSet("s2") + " drop",
			},
			notWant: []string{tenantSet("s1") + " { 10.88.0.3 }", tenantSet("s2") + " { 10.88.0.2 }"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fw, fake := newFake()
			fw.hostPorts = tt.hostPorts
			if err := fw.Apply(context.Background(), tt.state); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			got := fake.Dump()
			for _, w := range tt.want {
				if !strings.Contains(got, w+"\n") {
					t.Errorf("dump lacks %q:\n%s", w, got)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(got, w) {
					t.Errorf("dump has %q:\n%s", w, got)
				}
			}
		})
	}
}

func TestFirewall_ApplyReplacesWholeTable(t *testing.T) {
	fw, fake := newFake()
	ctx := context.Background()
	first := State{Managed: []netip.Prefix{public}, Groups: []Group{pubGroup("aaaa", "s1", "10.88.0.2", Port{"tcp", 80})}}
	if err := fw.Apply(ctx, first); err != nil {
		t.Fatal(err)
	}
	second := State{Managed: []netip.Prefix{public}, Groups: []Group{pubGroup("bbbb", "s2", "10.88.0.3", Port{"udp", 53})}}
	if err := fw.Apply(ctx, second); err != nil {
		t.Fatal(err)
	}
	got := fake.Dump()
	for _, stale := range []string{"group-aaaa", "10.88.0.2", tenantSet("s1"), "tcp . 80"} {
		if strings.Contains(got, stale) {
			t.Errorf("dump still has %q of the first state:\n%s", stale, got)
		}
	}
	if !strings.Contains(got, "group-bbbb") {
		t.Errorf("dump lacks the second state:\n%s", got)
	}

	t.Run("the same state is not applied twice", func(t *testing.T) {
		runs := fake.runs
		if err := fw.Apply(ctx, second); err != nil {
			t.Fatal(err)
		}
		if fake.runs != runs {
			t.Errorf("got %d runs, want %d", fake.runs, runs)
		}
	})

	t.Run("after Invalidate the same state is applied again", func(t *testing.T) {
		fake.Table = nil // removed behind the firewall's back
		fw.Invalidate()
		if err := fw.Apply(ctx, second); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(fake.Dump(), "group-bbbb") {
			t.Errorf("table not restored:\n%s", fake.Dump())
		}
	})

	t.Run("a state without groups deletes the table", func(t *testing.T) {
		if err := fw.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		if fake.Table != nil {
			t.Errorf("table still exists:\n%s", fake.Dump())
		}
		if err := fw.Delete(ctx); err != nil {
			t.Errorf("second Delete: %v", err)
		}
	})
}

func TestParsePort(t *testing.T) {
	for in, want := range map[string]Port{"tcp:8443": {"tcp", 8443}, "UDP:53": {"udp", 53}} {
		if got, err := ParsePort(in); err != nil || got != want {
			t.Errorf("ParsePort(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "8443", "tcp:", "tcp:0", "tcp:70000", "sctp:1", "tcp:x"} {
		if _, err := ParsePort(in); err == nil {
			t.Errorf("ParsePort(%q) succeeded", in)
		}
	}
}

func TestMergePrefixes(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want string
	}{
		{"disjoint prefixes stay", []string{"10.2.0.0/24", "10.1.0.0/24"}, "10.1.0.0/24 10.2.0.0/24"},
		{"a prefix inside another goes", []string{"10.1.0.128/25", "10.1.0.0/24"}, "10.1.0.0/24"},
		{"duplicates go", []string{"10.1.0.0/24", "10.1.0.0/24"}, "10.1.0.0/24"},
		{"host bits are masked", []string{"10.1.0.7/24"}, "10.1.0.0/24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in []netip.Prefix
			for _, s := range tt.in {
				in = append(in, netip.MustParsePrefix(s))
			}
			var got []string
			for _, p := range mergePrefixes(in) {
				got = append(got, p.String())
			}
			if strings.Join(got, " ") != tt.want {
				t.Errorf("got %v, want %s", got, tt.want)
			}
		})
	}
}

// TestFirewall_RealNFT applies a state with the nft binary and the kernel's
// nf_tables, then removes it.
func TestFirewall_RealNFT(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "nft")
	name := "berth-unit" + randomSuffix(t)
	fw, err := New(name, []Port{{"tcp", 8443}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx := context.Background()
	t.Cleanup(func() { _ = fw.Delete(ctx) })
	st := State{Managed: []netip.Prefix{public, subnet1, subnet3}, Bridges: []string{"bt0"}, Groups: []Group{
		pubGroup("aaaa", "s1", "10.88.0.2", Port{"tcp", 80}),
		vnetGroup("b1", "s1/rg/vnet1", "bv1", "10.130.0.2", subnet1),
		remote(vnetGroup("b2", "s1/rg/vnet1", "", "10.140.0.2", subnet3)),
	}}
	if err := fw.Apply(ctx, st); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	out, err := exec.Command("nft", "list", "table", "ip", name).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list table: %v: %s", err, out)
	}
	for _, w := range []string{"hook forward", "hook input", "ip saddr @managed meta l4proto . th dport { tcp . 8443 } accept", "meta l4proto . th dport { tcp . 80 }", `iifname "bv1" ip saddr { 10.130.0.0/25, 10.140.0.0/24 } accept`, "iifname != @bridges ip saddr { 10.130.0.0/25, 10.140.0.0/24 } accept", `elements = { "bt0",`, "10.88.0.2 : goto group-aaaa",
		"type nat hook postrouting priority srcnat", "ip saddr @managed ip daddr != @managed masquerade"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("table lacks %q:\n%s", w, out)
		}
	}
	if err := fw.Delete(ctx); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if out, err := exec.Command("nft", "list", "table", "ip", name).CombinedOutput(); err == nil {
		t.Errorf("table %s still exists:\n%s", name, out)
	}
}

func randomSuffix(t *testing.T) string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// TestFirewall_Golden compares the whole nft script of a two-node cluster,
// seen from one node, with testdata/cluster.nft (go test -update rewrites
// it): a change of any rule shows up in review as a diff of that file.
func TestFirewall_Golden(t *testing.T) {
	st := State{
		Managed: []netip.Prefix{public, subnet1, subnet2, subnet3},
		Bridges: []string{"bt0"},
		Groups: []Group{
			pubGroup("aaaa", "s1", "10.88.0.2", Port{"tcp", 80}),
			remote(pubGroup("bbbb", "s2", "10.88.0.3", Port{"udp", 53})),
			{Name: "s2/rg/n", UID: "nnnn", Subscription: "s2", IP: netip.MustParseAddr("10.88.0.9"), Kind: KindNone, Bridge: "bt0", Subnet: public},
			vnetGroup("b1", "s1/rg/vnet1", "bv1", "10.130.0.2", subnet1),
			remote(vnetGroup("b2", "s1/rg/vnet1", "", "10.130.0.130", subnet2)),
			remote(vnetGroup("c1", "s1/rg/vnet2", "", "10.140.0.2", subnet3)),
		},
	}
	fw, fake := newFake()
	fw.hostPorts = []Port{{"tcp", 8443}}
	if err := fw.Apply(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	got := fw.last
	path := filepath.Join("testdata", "cluster.nft")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("script differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
	if fake.Table == nil {
		t.Error("the fake nft did not take the script")
	}
}
