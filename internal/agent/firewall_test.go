package agent

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/berth-dev/berth/internal/agent/firewall"
	"github.com/berth-dev/berth/internal/agent/network"
	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/types"
)

// fixedGroups is a desiredGroups of a fixed set.
type fixedGroups []types.ContainerGroup

func (f fixedGroups) Get(key string) (types.ContainerGroup, bool) {
	for _, g := range f {
		if g.Key() == key {
			return g, true
		}
	}
	return types.ContainerGroup{}, false
}

func (f fixedGroups) List() []controller.Item[types.ContainerGroup] {
	out := make([]controller.Item[types.ContainerGroup], len(f))
	for i, g := range f {
		out[i] = controller.Item[types.ContainerGroup]{Key: g.Key(), Value: g}
	}
	return out
}

// attachedNet is a groupNetwork that only knows attachments.
type attachedNet struct {
	groupNetwork
	atts map[string]network.Attachment
}

func (n attachedNet) Attached(id string) (network.Attachment, bool, error) {
	a, ok := n.atts[id]
	return a, ok, nil
}

func (n attachedNet) Subnet() netip.Prefix { return netip.MustParsePrefix("10.88.0.0/16") }

// recordingFirewall keeps the last applied state.
type recordingFirewall struct{ last *firewall.State }

func (f *recordingFirewall) Apply(_ context.Context, st firewall.State) error {
	f.last = &st
	return nil
}

func (f *recordingFirewall) Invalidate() {}

func TestSyncFirewall(t *testing.T) {
	group := func(uid, sub string, spec types.GroupSpec) types.ContainerGroup {
		return types.ContainerGroup{Subscription: sub, ResourceGroup: "rg", Name: uid, UID: uid, Spec: spec}
	}
	subnet := &types.SubnetRef{VirtualNetwork: "s1/rg/vnet", Name: "a", AddressPrefix: "10.130.0.0/24"}
	groups := []types.ContainerGroup{
		group("pub", "S1", types.GroupSpec{IPAddress: &types.IPAddress{Type: "Public", Ports: []types.Port{{Port: 80, Protocol: "TCP"}, {Port: 53, Protocol: "UDP"}}}}),
		group("priv", "s1", types.GroupSpec{IPAddress: &types.IPAddress{Type: "Private"}, Subnet: subnet}),
		group("none", "s2", types.GroupSpec{}),
		group("pending", "s2", types.GroupSpec{Subnet: &types.SubnetRef{VirtualNetwork: "s2/rg/v", Name: "b", AddressPrefix: "10.140.0.0/24"}}),
	}
	atts := map[string]network.Attachment{
		"pub":  {IP: "10.88.0.2", Bridge: "bt0"},
		"priv": {IP: "10.130.0.2", Bridge: "bv1"},
		"none": {IP: "10.88.0.3", Bridge: "bt0"},
	}
	fw := &recordingFirewall{}
	a := New(Options{Network: attachedNet{atts: atts}, Firewall: fw})
	a.groups = fixedGroups(groups)
	if err := a.syncFirewall(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := fw.last
	if st == nil {
		t.Fatal("nothing applied")
	}
	wantManaged := []netip.Prefix{netip.MustParsePrefix("10.88.0.0/16"), netip.MustParsePrefix("10.130.0.0/24"), netip.MustParsePrefix("10.140.0.0/24")}
	if !slices.Equal(st.Managed, wantManaged) {
		t.Errorf("managed = %v, want %v (a subnet is managed before its group is attached)", st.Managed, wantManaged)
	}
	byUID := map[string]firewall.Group{}
	for _, g := range st.Groups {
		byUID[g.UID] = g
	}
	if _, ok := byUID["pending"]; ok || len(st.Groups) != 3 {
		t.Errorf("got groups %v, want the three attached ones", st.Groups)
	}
	tests := []struct {
		uid  string
		want firewall.Group
	}{
		{"pub", firewall.Group{Name: "s1/rg/pub", UID: "pub", Subscription: "s1", IP: netip.MustParseAddr("10.88.0.2"), Kind: firewall.KindPublic,
			Ports: []firewall.Port{{Protocol: "tcp", Port: 80}, {Protocol: "udp", Port: 53}}, Bridge: "bt0", Subnet: netip.MustParsePrefix("10.88.0.0/16")}},
		{"priv", firewall.Group{Name: "s1/rg/priv", UID: "priv", Subscription: "s1", IP: netip.MustParseAddr("10.130.0.2"), Kind: firewall.KindPrivate,
			VirtualNetwork: "s1/rg/vnet", Bridge: "bv1", Subnet: netip.MustParsePrefix("10.130.0.0/24")}},
		{"none", firewall.Group{Name: "s2/rg/none", UID: "none", Subscription: "s2", IP: netip.MustParseAddr("10.88.0.3"), Kind: firewall.KindNone,
			Bridge: "bt0", Subnet: netip.MustParsePrefix("10.88.0.0/16")}},
	}
	for _, tt := range tests {
		t.Run(tt.uid, func(t *testing.T) {
			got := byUID[tt.uid]
			if got.Name != tt.want.Name || got.Subscription != tt.want.Subscription || got.IP != tt.want.IP || got.Kind != tt.want.Kind ||
				got.VirtualNetwork != tt.want.VirtualNetwork || got.Bridge != tt.want.Bridge || got.Subnet != tt.want.Subnet || !slices.Equal(got.Ports, tt.want.Ports) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	if !a.firewallCovers("pub", "10.88.0.2") || a.firewallCovers("pub", "10.88.0.9") || a.firewallCovers("pending", "") {
		t.Error("firewallCovers disagrees with the applied state")
	}
}
