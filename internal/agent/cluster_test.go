package agent

import (
	"context"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/agent/fake"
	"github.com/berth-dev/berth/internal/agent/firewall"
	"github.com/berth-dev/berth/internal/agent/routes"
	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/types"
)

func route(dst, via string) routes.Route {
	return routes.Route{Dst: netip.MustParsePrefix(dst), Via: netip.MustParseAddr(via)}
}

func pubEndpoint(group, node, ip string, ports ...types.Port) types.Endpoint {
	return types.Endpoint{Group: "s1/rg/" + group, UID: group + "-uid", Subscription: "s1", IP: ip, Node: node, Kind: types.EndpointPublic, Ports: ports}
}

func vnetEndpoint(group, node, ip, vnet, prefix string) types.Endpoint {
	return types.Endpoint{Group: "s1/rg/" + group, UID: group + "-uid", Subscription: "s1", IP: ip, Node: node, Kind: types.EndpointPrivate, VirtualNetwork: vnet, SubnetPrefix: prefix}
}

func node(name string, addrs ...string) types.Node { return types.Node{Name: name, Addresses: addrs} }

func TestClusterRoutes(t *testing.T) {
	nodes := map[string]types.Node{
		"a":      node("a", "192.0.2.1"),
		"b":      node("b", "192.0.2.2", "198.51.100.2"),
		"c":      node("c", "192.0.2.3"),
		"noaddr": node("noaddr"),
		"v6":     node("v6", "2001:db8::1"),
	}
	tests := []struct {
		name        string
		eps         []types.Endpoint
		want        []routes.Route
		wantSkipped int
	}{
		{
			name: "a group on another node is routed via that node's first address",
			eps:  []types.Endpoint{pubEndpoint("g1", "b", "10.88.0.5")},
			want: []routes.Route{route("10.88.0.5/32", "192.0.2.2")},
		},
		{
			name: "the node's own groups need no route",
			eps:  []types.Endpoint{pubEndpoint("g1", "a", "10.88.0.5"), vnetEndpoint("g2", "a", "10.130.0.4", "v", "10.130.0.0/24")},
		},
		{
			name: "public and virtual network groups of several nodes, sorted by address",
			eps: []types.Endpoint{
				vnetEndpoint("g3", "c", "10.130.0.9", "v", "10.130.0.0/24"),
				pubEndpoint("g1", "b", "10.88.0.7"),
				pubEndpoint("g2", "c", "10.88.0.6"),
			},
			want: []routes.Route{route("10.88.0.6/32", "192.0.2.3"), route("10.88.0.7/32", "192.0.2.2"), route("10.130.0.9/32", "192.0.2.3")},
		},
		{
			name:        "a group of an unknown node, or of a node without an IPv4 address, is left out",
			eps:         []types.Endpoint{pubEndpoint("g1", "gone", "10.88.0.5"), pubEndpoint("g2", "noaddr", "10.88.0.6"), pubEndpoint("g3", "v6", "10.88.0.7")},
			wantSkipped: 3,
		},
		{
			name:        "a bad address is left out",
			eps:         []types.Endpoint{pubEndpoint("g1", "b", "bogus"), pubEndpoint("g2", "b", "fd00::5"), pubEndpoint("g3", "b", "")},
			wantSkipped: 2,
		},
		{
			name:        "of two groups at one address the first is routed",
			eps:         []types.Endpoint{pubEndpoint("g1", "b", "10.88.0.5"), pubEndpoint("g2", "c", "10.88.0.5")},
			want:        []routes.Route{route("10.88.0.5/32", "192.0.2.2")},
			wantSkipped: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, skipped := clusterRoutes("a", tt.eps, nodes)
			if !slices.Equal(got, tt.want) {
				t.Errorf("routes %v, want %v", got, tt.want)
			}
			if len(skipped) != tt.wantSkipped {
				t.Errorf("skipped %q, want %d", skipped, tt.wantSkipped)
			}
		})
	}
}

func TestClusterFirewallState(t *testing.T) {
	public := netip.MustParsePrefix("10.88.0.0/16")
	vnetA := netip.MustParsePrefix("10.130.0.0/24")
	vnetB := netip.MustParsePrefix("10.140.0.0/24")
	tests := []struct {
		name        string
		eps         []types.Endpoint
		wantGroups  []firewall.Group
		wantManaged []netip.Prefix
		wantBad     int
	}{
		{
			name: "a public group of another node keeps its tenant and declared ports, without a bridge here",
			eps:  []types.Endpoint{pubEndpoint("g1", "b", "10.88.0.5", types.Port{Port: 80, Protocol: "TCP"}, types.Port{Port: 53, Protocol: "UDP"})},
			wantGroups: []firewall.Group{{Name: "s1/rg/g1", UID: "g1-uid", Subscription: "s1", IP: netip.MustParseAddr("10.88.0.5"), Kind: firewall.KindPublic,
				Ports: []firewall.Port{{Protocol: "tcp", Port: 80}, {Protocol: "udp", Port: 53}}, Subnet: public}},
			wantManaged: []netip.Prefix{public},
		},
		{
			name: "a virtual network group of another node belongs to its network, whose subnet is managed",
			eps:  []types.Endpoint{vnetEndpoint("g1", "b", "10.130.0.4", "s1/rg/v", "10.130.0.0/24")},
			wantGroups: []firewall.Group{{Name: "s1/rg/g1", UID: "g1-uid", Subscription: "s1", IP: netip.MustParseAddr("10.130.0.4"), Kind: firewall.KindPrivate,
				VirtualNetwork: "s1/rg/v", Subnet: vnetA}},
			wantManaged: []netip.Prefix{public, vnetA},
		},
		{
			name:        "the node's own groups are left to the local half, but their subnets are managed",
			eps:         []types.Endpoint{pubEndpoint("g1", "a", "10.88.0.5"), vnetEndpoint("g2", "a", "10.140.0.4", "s1/rg/w", "10.140.0.0/24")},
			wantManaged: []netip.Prefix{public, vnetB},
		},
		{
			name:        "a group without an ipAddress (kind None) keeps its address for its own traffic only; its subscription is lower case",
			eps:         []types.Endpoint{{Group: "S2/rg/g1", UID: "u", Subscription: "S2", IP: "10.88.0.9", Node: "b", Kind: types.EndpointNone}},
			wantGroups:  []firewall.Group{{Name: "S2/rg/g1", UID: "u", Subscription: "s2", IP: netip.MustParseAddr("10.88.0.9"), Kind: firewall.KindNone, Subnet: public}},
			wantManaged: []netip.Prefix{public},
		},
		{
			name:        "bad addresses and prefixes are left out",
			eps:         []types.Endpoint{pubEndpoint("g1", "b", "bogus"), vnetEndpoint("g2", "b", "10.130.0.4", "v", "nope")},
			wantManaged: []netip.Prefix{public},
			wantBad:     2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, bad := clusterFirewallState("a", public, tt.eps)
			if !reflect.DeepEqual(got.Groups, tt.wantGroups) {
				t.Errorf("groups\n got %+v\nwant %+v", got.Groups, tt.wantGroups)
			}
			if !slices.Equal(got.Managed, tt.wantManaged) {
				t.Errorf("managed %v, want %v", got.Managed, tt.wantManaged)
			}
			if len(got.Bridges) != 0 {
				t.Errorf("bridges %v: only the local half knows them", got.Bridges)
			}
			if len(bad) != tt.wantBad {
				t.Errorf("left out %q, want %d", bad, tt.wantBad)
			}
		})
	}
}

func TestRouteMetric(t *testing.T) {
	a, b := routeMetric(netip.MustParsePrefix("10.88.0.0/16")), routeMetric(netip.MustParsePrefix("10.89.0.0/16"))
	if a == b || a <= routes.DefaultMetric || b <= routes.DefaultMetric {
		t.Errorf("metrics %d and %d: want distinct ones above the default %d", a, b, routes.DefaultMetric)
	}
	if again := routeMetric(netip.MustParsePrefix("10.88.1.0/16")); again != a {
		t.Errorf("metric of the same subnet changed: %d, then %d", a, again)
	}
}

// memSource is a Source kept in memory, with its whole history, so a
// watch from any revision misses nothing.
type memSource[T any] struct {
	mu      sync.Mutex
	items   map[string]T
	rev     int64
	history []controller.Event[T]
	changed chan struct{}
}

func newMemSource[T any]() *memSource[T] {
	return &memSource[T]{items: map[string]T{}, changed: make(chan struct{})}
}

func (s *memSource[T]) List(context.Context) ([]controller.Item[T], int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []controller.Item[T]
	for k, v := range s.items {
		out = append(out, controller.Item[T]{Key: k, Value: v, Revision: s.rev})
	}
	return out, s.rev, nil
}

func (s *memSource[T]) Watch(ctx context.Context, after int64) <-chan controller.Event[T] {
	out := make(chan controller.Event[T])
	go func() {
		defer close(out)
		for {
			s.mu.Lock()
			var pending []controller.Event[T]
			for _, ev := range s.history {
				if ev.Revision > after {
					pending = append(pending, ev)
				}
			}
			wait := s.changed
			s.mu.Unlock()
			for _, ev := range pending {
				select {
				case out <- ev:
					after = ev.Revision
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-wait:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func (s *memSource[T]) record(ev controller.Event[T]) {
	s.rev++
	ev.Revision = s.rev
	s.history = append(s.history, ev)
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *memSource[T]) put(key string, v T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.items[key] = v
	s.record(controller.Event[T]{Type: controller.EventPut, Key: key, Value: v})
}

func (s *memSource[T]) del(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.items, key)
	s.record(controller.Event[T]{Type: controller.EventDelete, Key: key})
}

// recordingTable keeps the route sets it was synced to.
type recordingTable struct {
	mu   sync.Mutex
	last []routes.Route
	n    int
}

func (r *recordingTable) Sync(_ context.Context, want []routes.Route) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last, r.n = slices.Clone(want), r.n+1
	return nil
}

func (r *recordingTable) get() ([]routes.Route, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.last), r.n
}

// clusterRecordingFirewall records both halves.
type clusterRecordingFirewall struct {
	mu             sync.Mutex
	local, cluster *firewall.State
}

func (f *clusterRecordingFirewall) Apply(_ context.Context, st firewall.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.local = &st
	return nil
}

func (f *clusterRecordingFirewall) ApplyCluster(_ context.Context, st firewall.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cluster = &st
	return nil
}

func (f *clusterRecordingFirewall) Invalidate() {}

func (f *clusterRecordingFirewall) clusterIPs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cluster == nil {
		return nil
	}
	var out []string
	for _, g := range f.cluster.Groups {
		out = append(out, g.IP.String())
	}
	slices.Sort(out)
	return out
}

func routeStrings(rs []routes.Route) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.String())
	}
	return strings.Join(out, ", ")
}

func TestAgent_RunCluster(t *testing.T) {
	eps := newMemSource[types.Endpoint]()
	nodes := newMemSource[types.Node]()
	for _, n := range []types.Node{node("a", "192.0.2.1"), node("b", "192.0.2.2")} {
		nodes.put(n.Name, n)
	}
	eps.put("s1/rg/mine", pubEndpoint("mine", "a", "10.88.0.2"))
	eps.put("s1/rg/theirs", pubEndpoint("theirs", "b", "10.88.0.3", types.Port{Port: 80, Protocol: "TCP"}))

	table := &recordingTable{}
	fw := &clusterRecordingFirewall{}
	a := New(Options{Network: fake.NewNetwork(), Firewall: fw, NodeName: "a", Endpoints: eps, Nodes: nodes, Resync: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.runClusterWith(ctx, table) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("runCluster: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("runCluster did not return after its context ended")
		}
	})

	waitFor := func(t *testing.T, what, want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			rs, _ := table.get()
			got := routeStrings(rs) + " | " + strings.Join(fw.clusterIPs(), ",")
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: got %q, want %q", what, got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	t.Run("the other node's group is routed and filtered", func(t *testing.T) {
		waitFor(t, "first pass", "10.88.0.3/32 via 192.0.2.2 | 10.88.0.3")
	})
	t.Run("a new group on the other node gets its route", func(t *testing.T) {
		eps.put("s1/rg/v", vnetEndpoint("v", "b", "10.130.0.4", "s1/rg/vnet", "10.130.0.0/24"))
		waitFor(t, "after a put", "10.88.0.3/32 via 192.0.2.2, 10.130.0.4/32 via 192.0.2.2 | 10.130.0.4,10.88.0.3")
	})
	t.Run("a node that changes its address moves its routes", func(t *testing.T) {
		nodes.put("b", node("b", "192.0.2.20"))
		waitFor(t, "after the node's new address", "10.88.0.3/32 via 192.0.2.20, 10.130.0.4/32 via 192.0.2.20 | 10.130.0.4,10.88.0.3")
	})
	t.Run("a group that moves to this node loses its route", func(t *testing.T) {
		eps.put("s1/rg/theirs", pubEndpoint("theirs", "a", "10.88.0.3"))
		eps.del("s1/rg/v")
		waitFor(t, "after the move", " | ")
	})
}
