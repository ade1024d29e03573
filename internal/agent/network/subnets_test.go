package network_test

import (
	"context"
	"net"
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

// TestManager_SetupIn attaches groups to a virtual network subnet's bridge
// and checks that the last teardown, by a new Manager as after an agent
// restart, removes the bridge and everything of the subnet.
func TestManager_SetupIn(t *testing.T) {
	n := newTestNetwork(t, 24)
	ctx := context.Background()
	prefix, err := testenv.FreePrefix(28)
	if err != nil {
		t.Fatal(err)
	}
	pl := network.Placement{VirtualNetwork: "sub/rg/vnet1", Subnet: "s1", Prefix: prefix.String()}
	bridge := network.SubnetBridge(n.opts.Bridge, pl)
	t.Cleanup(func() { _ = network.DeleteLink(bridge) })
	if len(bridge) > 15 || !strings.HasPrefix(bridge, "bv") {
		t.Fatalf("bridge name %q: want bv… of at most 15 bytes", bridge)
	}

	first, second := groupUID(t), groupUID(t)
	a1, err := n.SetupIn(ctx, first, &pl)
	if err != nil {
		t.Fatalf("SetupIn: %v", err)
	}
	a2, err := n.SetupIn(ctx, second, &pl)
	if err != nil {
		t.Fatalf("SetupIn second: %v", err)
	}
	for _, a := range []network.Attachment{a1, a2} {
		ip, err := netip.ParseAddr(a.IP)
		if err != nil || !prefix.Contains(ip) {
			t.Errorf("got IP %q, want one in %s", a.IP, prefix)
		}
		if a.Gateway != prefix.Addr().Next().String() || a.Bridge != bridge {
			t.Errorf("got gateway %s bridge %s, want %s on %s", a.Gateway, a.Bridge, prefix.Addr().Next(), bridge)
		}
	}
	if a1.IP == a2.IP {
		t.Errorf("both groups got %s", a1.IP)
	}
	if _, err := net.InterfaceByName(bridge); err != nil {
		t.Fatalf("bridge %s: %v", bridge, err)
	}
	if got, ok, err := n.Attached(first); err != nil || !ok || got != a1 {
		t.Errorf("Attached = %+v %v %v, want %+v", got, ok, err, a1)
	}
	if got, err := n.SetupIn(ctx, first, &pl); err != nil || got != a1 {
		t.Errorf("repeated SetupIn = %+v %v, want the cached %+v", got, err, a1)
	}

	t.Run("the bridge stays while a group uses it", func(t *testing.T) {
		if err := n.Teardown(ctx, first); err != nil {
			t.Fatal(err)
		}
		if _, err := net.InterfaceByName(bridge); err != nil {
			t.Errorf("bridge %s gone with a group still on it: %v", bridge, err)
		}
		if _, ok, _ := n.Attached(first); ok {
			t.Error("torn-down group still attached")
		}
	})

	t.Run("the last teardown after a restart removes the subnet's bridge, addresses and rules", func(t *testing.T) {
		m2, err := network.New(n.opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := m2.Teardown(ctx, second); err != nil {
			t.Fatal(err)
		}
		if _, err := net.InterfaceByName(bridge); err == nil {
			t.Errorf("bridge %s left", bridge)
		}
		for _, p := range []string{filepath.Join("cni", "ipam", "berth-"+bridge), filepath.Join("cni", "nets", "berth-"+bridge+".conflist"), filepath.Join("cni", "attachments", second)} {
			if _, err := os.Stat(filepath.Join(n.opts.Dir, p)); err == nil {
				t.Errorf("%s left", p)
			}
		}
		rules, err := testenv.RulesNamingHosts(prefix.String())
		if err != nil {
			t.Fatal(err)
		}
		if len(rules) > 0 {
			t.Errorf("iptables rules left:\n%s", strings.Join(rules, "\n"))
		}
	})

	t.Run("a new Manager removes a subnet bridge that no attachment uses", func(t *testing.T) {
		id := groupUID(t)
		if _, err := n.SetupIn(ctx, id, &pl); err != nil {
			t.Fatal(err)
		}
		conf := filepath.Join(n.opts.Dir, "cni", "nets", "berth-"+bridge+".conflist")
		saved, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Teardown(ctx, id); err != nil {
			t.Fatal(err)
		}
		// As if the agent crashed after the last teardown, before the
		// bridge went.
		if err := os.WriteFile(conf, saved, 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("ip", "link", "add", bridge, "type", "bridge").CombinedOutput(); err != nil {
			t.Fatalf("ip link add: %v: %s", err, out)
		}
		if _, err := network.New(n.opts); err != nil {
			t.Fatal(err)
		}
		if _, err := net.InterfaceByName(bridge); err == nil {
			t.Errorf("bridge %s left", bridge)
		}
		if _, err := os.Stat(conf); err == nil {
			t.Errorf("%s left", conf)
		}
	})

	t.Run("a subnet overlapping the public one is refused", func(t *testing.T) {
		_, err := n.SetupIn(ctx, groupUID(t), &network.Placement{VirtualNetwork: "v", Subnet: "s", Prefix: n.opts.Subnet})
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("got %v, want InvalidArgument", err)
		}
	})
}
