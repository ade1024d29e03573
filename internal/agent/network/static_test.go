package network_test

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/agent/network"
	"github.com/berth-dev/berth/internal/testenv"
)

// nth is the address n places after the start of p.
func nth(p netip.Prefix, n int) netip.Addr {
	a := p.Masked().Addr()
	for range n {
		a = a.Next()
	}
	return a
}

func proxyARP(t *testing.T, bridge string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc/sys/net/ipv4/conf", bridge, "proxy_arp"))
	if err != nil {
		t.Fatalf("read proxy_arp of %s: %v", bridge, err)
	}
	return strings.TrimSpace(string(b))
}

// TestManager_SetupInAtAddress attaches groups at the addresses they were
// given, on a node set up for cluster routing.
func TestManager_SetupInAtAddress(t *testing.T) {
	n := newTestNetworkOpts(t, 24, func(o *network.Options) { o.ClusterRouting = true })
	ctx := context.Background()
	subnet := netip.MustParsePrefix(n.opts.Subnet)
	id := groupUID(t)
	want := nth(subnet, 77)

	a, err := n.SetupIn(ctx, id, &network.Placement{IP: want.String()})
	if err != nil {
		t.Fatalf("SetupIn: %v", err)
	}

	t.Run("the group has its address on the public bridge, through static IPAM", func(t *testing.T) {
		if a.IP != want.String() || a.Gateway != nth(subnet, 1).String() || a.Bridge != n.opts.Bridge {
			t.Errorf("got %+v, want %s via %s on %s", a, want, nth(subnet, 1), n.opts.Bridge)
		}
		entries, _ := os.ReadDir(filepath.Join(n.opts.Dir, "cni", "ipam", network.DefaultNetworkName))
		for _, e := range entries {
			if e.Name() == want.String() {
				t.Errorf("host-local holds %s: the address came from the node's allocator", want)
			}
		}
		out, err := exec.Command("nsenter", "--net="+a.NetNSPath, "--", "ip", "-o", "-4", "addr", "show", "dev", "eth0").CombinedOutput()
		if err != nil || !strings.Contains(string(out), netip.PrefixFrom(want, subnet.Bits()).String()) {
			t.Errorf("eth0 in the namespace: %s %v, want %s/%d", out, err, want, subnet.Bits())
		}
		out, err = exec.Command("nsenter", "--net="+a.NetNSPath, "--", "ip", "-4", "route", "show", "default").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "via "+nth(subnet, 1).String()) {
			t.Errorf("default route in the namespace: %s %v, want via %s", out, err, nth(subnet, 1))
		}
	})

	t.Run("the bridge answers ARP for routed addresses and does not masquerade", func(t *testing.T) {
		if got := proxyARP(t, n.opts.Bridge); got != "1" {
			t.Errorf("proxy_arp of %s = %s, want 1", n.opts.Bridge, got)
		}
		if got := natRulesFor(t, id); len(got) != 0 {
			t.Errorf("nat rules for %s: %v; want none, the firewall masquerades", id, got)
		}
	})

	t.Run("a repeated SetupIn at the same address returns the attachment", func(t *testing.T) {
		got, err := n.SetupIn(ctx, id, &network.Placement{IP: want.String()})
		if err != nil || got != a {
			t.Errorf("got %+v %v, want %+v", got, err, a)
		}
		if m := bridgeMembers(t, n.opts.Bridge); len(m) != 1 {
			t.Errorf("bridge members %v, want one", m)
		}
	})

	t.Run("SetupIn at another address moves the group there", func(t *testing.T) {
		other := nth(subnet, 78)
		got, err := n.SetupIn(ctx, id, &network.Placement{IP: other.String()})
		if err != nil || got.IP != other.String() {
			t.Fatalf("got %+v %v, want %s", got, err, other)
		}
		if m := bridgeMembers(t, n.opts.Bridge); len(m) != 1 {
			t.Errorf("bridge members %v, want one", m)
		}
	})

	t.Run("a virtual network group has its address on the subnet's bridge", func(t *testing.T) {
		prefix, err := testenv.FreePrefix(28)
		if err != nil {
			t.Fatal(err)
		}
		pl := network.Placement{VirtualNetwork: "s/rg/v", Subnet: "a", Prefix: prefix.String(), IP: nth(prefix, 9).String()}
		bridge := network.SubnetBridge(n.opts.Bridge, pl)
		t.Cleanup(func() { _ = network.DeleteLink(bridge) })
		vid := groupUID(t)
		got, err := n.SetupIn(ctx, vid, &pl)
		if err != nil {
			t.Fatalf("SetupIn: %v", err)
		}
		if got.IP != pl.IP || got.Bridge != bridge || got.Gateway != nth(prefix, 1).String() {
			t.Errorf("got %+v, want %s on %s", got, pl.IP, bridge)
		}
		if p := proxyARP(t, bridge); p != "1" {
			t.Errorf("proxy_arp of %s = %s, want 1", bridge, p)
		}
		// After a restart, DEL comes from the cached static config.
		m2, err := network.New(n.opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := m2.Teardown(ctx, vid); err != nil {
			t.Fatalf("Teardown: %v", err)
		}
		if _, ok, _ := m2.Attached(vid); ok {
			t.Error("still attached after Teardown")
		}
	})

	t.Run("an address that is no group address of the subnet is refused", func(t *testing.T) {
		for _, ip := range []string{"bogus", "fd00::1", subnet.Addr().String(), nth(subnet, 1).String(), nth(subnet, 255).String(), "192.0.2.7"} {
			_, err := n.SetupIn(ctx, groupUID(t), &network.Placement{IP: ip})
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("SetupIn at %q: got %v, want InvalidArgument", ip, err)
			}
		}
	})

	t.Run("Teardown releases the group", func(t *testing.T) {
		if err := n.Teardown(ctx, id); err != nil {
			t.Fatal(err)
		}
		if m := bridgeMembers(t, n.opts.Bridge); len(m) != 0 {
			t.Errorf("bridge members %v, want none", m)
		}
	})
}

// TestManager_SetupWithoutClusterRouting keeps a single node's bridge as it
// was: the bridge masquerades and answers ARP only for itself.
func TestManager_SetupWithoutClusterRouting(t *testing.T) {
	n := newTestNetwork(t, 24)
	id := groupUID(t)
	if _, err := n.Setup(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if got := proxyARP(t, n.opts.Bridge); got != "0" {
		t.Errorf("proxy_arp of %s = %s, want 0", n.opts.Bridge, got)
	}
	if len(natRulesFor(t, id)) == 0 {
		t.Errorf("no masquerade rule for %s", id)
	}
}
