package firewall

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestMerge(t *testing.T) {
	mine := pubGroup("aaaa", "s1", "10.88.0.2", Port{"tcp", 80})
	there := remote(pubGroup("bbbb", "s2", "10.88.0.3"))
	movedHere := remote(pubGroup("cccc", "s1", "10.88.0.2"))
	vnetThere := remote(vnetGroup("dddd", "s1/rg/v", "bv1", "10.140.0.5", subnet3))
	twin := remote(pubGroup("eeee", "s2", "10.88.0.3"))
	tests := []struct {
		name         string
		local, other State
		wantUIDs     []string
		wantManaged  []netip.Prefix
		wantBridges  []string
	}{
		{
			name:        "the node's groups and the other nodes' groups make one state",
			local:       State{Managed: []netip.Prefix{public}, Bridges: []string{"bt0"}, Groups: []Group{mine}},
			other:       State{Managed: []netip.Prefix{public, subnet3}, Bridges: []string{"elsewhere"}, Groups: []Group{there, vnetThere}},
			wantUIDs:    []string{"aaaa", "bbbb", "dddd"},
			wantManaged: []netip.Prefix{public, public, subnet3},
			wantBridges: []string{"bt0"},
		},
		{
			name:        "an address attached here keeps the local group",
			local:       State{Groups: []Group{mine}},
			other:       State{Groups: []Group{movedHere, there}},
			wantUIDs:    []string{"aaaa", "bbbb"},
			wantManaged: []netip.Prefix{},
		},
		{
			name:        "of two other groups at one address the first counts",
			other:       State{Groups: []Group{there, twin}},
			wantUIDs:    []string{"bbbb"},
			wantManaged: []netip.Prefix{},
		},
		{
			name:        "a group of another node never has a bridge here",
			other:       State{Groups: []Group{pubGroup("ffff", "s1", "10.88.0.9")}},
			wantUIDs:    []string{"ffff"},
			wantManaged: []netip.Prefix{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Merge(tt.local, tt.other)
			var uids []string
			for _, g := range got.Groups {
				uids = append(uids, g.UID)
				if g.UID != "aaaa" && g.Bridge != "" {
					t.Errorf("group %s of another node has bridge %q", g.UID, g.Bridge)
				}
			}
			if !slices.Equal(uids, tt.wantUIDs) {
				t.Errorf("groups %v, want %v", uids, tt.wantUIDs)
			}
			if !slices.Equal(got.Managed, tt.wantManaged) {
				t.Errorf("managed %v, want %v", got.Managed, tt.wantManaged)
			}
			if !slices.Equal(got.Bridges, tt.wantBridges) {
				t.Errorf("bridges %v, want %v", got.Bridges, tt.wantBridges)
			}
		})
	}
}

func TestFirewall_ApplyCluster(t *testing.T) {
	fw, fake := newFake()
	ctx := context.Background()
	local := State{Managed: []netip.Prefix{public}, Bridges: []string{"bt0"}, Groups: []Group{pubGroup("aaaa", "s1", "10.88.0.2", Port{"tcp", 80})}}
	cluster := State{Managed: []netip.Prefix{public, subnet3}, Groups: []Group{
		remote(pubGroup("bbbb", "s2", "10.88.0.3")),
		remote(vnetGroup("dddd", "s1/rg/v", "bv1", "10.140.0.5", subnet3)),
	}}
	if err := fw.ApplyCluster(ctx, cluster); err != nil {
		t.Fatal(err)
	}

	t.Run("the other nodes' groups alone make a table", func(t *testing.T) {
		got := fake.Dump()
		for _, w := range []string{"10.88.0.3 : goto group-bbbb", "10.140.0.5 : goto " + vnetChain("s1/rg/v"), "add element ip berth-bt0 managed { 10.140.0.0/24 }"} {
			if !strings.Contains(got, w) {
				t.Errorf("dump lacks %q:\n%s", w, got)
			}
		}
		// Without a local bridge of the network, only traffic from other
		// nodes (not from a group bridge here) is accepted.
		if strings.Contains(got, `iifname { "bv1" }`) {
			t.Errorf("a remote group's bridge is taken for a local one:\n%s", got)
		}
	})

	t.Run("Apply of the node's groups keeps the other nodes' groups", func(t *testing.T) {
		if err := fw.Apply(ctx, local); err != nil {
			t.Fatal(err)
		}
		got := fake.Dump()
		for _, w := range []string{"10.88.0.2 : goto group-aaaa", "10.88.0.3 : goto group-bbbb", `add element ip berth-bt0 bridges { "bt0" }`} {
			if !strings.Contains(got, w) {
				t.Errorf("dump lacks %q:\n%s", w, got)
			}
		}
	})

	t.Run("ApplyCluster of an empty cluster keeps the node's groups", func(t *testing.T) {
		if err := fw.ApplyCluster(ctx, State{}); err != nil {
			t.Fatal(err)
		}
		got := fake.Dump()
		if !strings.Contains(got, "group-aaaa") || strings.Contains(got, "group-bbbb") || strings.Contains(got, "10.140.0.0/24") {
			t.Errorf("want only the node's group:\n%s", got)
		}
	})

	t.Run("Delete forgets both halves", func(t *testing.T) {
		if err := fw.ApplyCluster(ctx, cluster); err != nil {
			t.Fatal(err)
		}
		if err := fw.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		if fake.Table != nil {
			t.Errorf("table still exists:\n%s", fake.Dump())
		}
	})
}
