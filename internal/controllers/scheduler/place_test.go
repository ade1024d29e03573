package scheduler

import (
	"errors"
	"testing"

	"github.com/berth-dev/berth/internal/types"
)

func node(name, zone string, cpu, mem float64, opts ...func(*types.Node)) types.Node {
	n := types.Node{Name: name, Zone: zone, Allocatable: types.NodeResources{CPU: cpu, MemoryGB: mem},
		Conditions: []types.NodeCondition{{Type: types.NodeReady, Status: types.ConditionTrue}}}
	for _, o := range opts {
		o(&n)
	}
	return n
}

func notReady(n *types.Node) { n.Conditions[0].Status = types.ConditionFalse }
func cordoned(n *types.Node) { n.Unschedulable = true }
func gpus(sku string, c int32) func(*types.Node) {
	return func(n *types.Node) { n.Allocatable.GPUs = map[string]int32{sku: c} }
}

func group(cpu, mem float64, zones ...string) *types.ContainerGroup {
	return &types.ContainerGroup{Name: "g", Spec: types.GroupSpec{Zones: zones, Containers: []types.Container{
		{Name: "a", Resources: types.Resources{Requests: types.ResourceList{CPU: cpu / 2, MemoryGB: mem / 2}}},
		{Name: "b", Resources: types.Resources{Requests: types.ResourceList{CPU: cpu / 2, MemoryGB: mem / 2}}},
	}}}
}

func info(n types.Node, usedCPU, usedMem float64, groups int) NodeInfo {
	return NodeInfo{Node: n, Used: types.ResourceList{CPU: usedCPU, MemoryGB: usedMem}, Groups: groups}
}

func TestPlace(t *testing.T) {
	gpuGroup := group(1, 1)
	gpuGroup.Spec.Containers[0].Resources.Requests.GPU = types.GPUResource{Count: 2, SKU: "V100"}
	tests := []struct {
		name   string
		group  *types.ContainerGroup
		nodes  []NodeInfo
		policy Policy
		want   string
		// wantErr is the Unschedulable message when no node fits.
		wantErr string
	}{
		{
			name:  "spread picks the least allocated node after the group",
			group: group(1, 1),
			nodes: []NodeInfo{info(node("a", "", 4, 8), 2, 1, 2), info(node("b", "", 4, 8), 1, 1, 1), info(node("c", "", 4, 8), 1, 4, 1)},
			want:  "b",
		},
		{
			name:   "binpack picks the most allocated node that still fits",
			group:  group(1, 1),
			nodes:  []NodeInfo{info(node("a", "", 4, 8), 2, 1, 2), info(node("b", "", 4, 8), 1, 1, 1), info(node("c", "", 4, 8), 3.5, 1, 3)},
			policy: Binpack,
			want:   "a",
		},
		{
			name:  "equal nodes are told apart by fewer groups, then by name",
			group: group(1, 1),
			nodes: []NodeInfo{info(node("c", "", 4, 8), 0, 0, 0), info(node("a", "", 4, 8), 0, 0, 1), info(node("b", "", 4, 8), 0, 0, 0)},
			want:  "b",
		},
		{
			name:  "a group that exactly fills a node fits",
			group: group(4, 8),
			nodes: []NodeInfo{info(node("a", "", 4, 8), 0, 0, 0)},
			want:  "a",
		},
		{
			name:    "not ready and cordoned nodes are passed over",
			group:   group(1, 1),
			nodes:   []NodeInfo{info(node("a", "", 4, 8, notReady), 0, 0, 0), info(node("b", "", 4, 8, cordoned), 0, 0, 0)},
			wantErr: "0/2 nodes are available: 1 cordoned, 1 not ready.",
		},
		{
			name:  "zones are honoured, in any case",
			group: group(1, 1, "2"),
			nodes: []NodeInfo{info(node("a", "1", 4, 8), 0, 0, 0), info(node("b", "2", 4, 8), 3, 7, 5)},
			want:  "b",
		},
		{
			name:    "a group in a zone without nodes does not fit",
			group:   group(1, 1, "3"),
			nodes:   []NodeInfo{info(node("a", "1", 4, 8), 0, 0, 0), info(node("b", "2", 4, 8), 0, 0, 0)},
			wantErr: "0/2 nodes are available: 2 in another zone.",
		},
		{
			name:    "a group too big for every node says which resource is short",
			group:   group(3, 4),
			nodes:   []NodeInfo{info(node("a", "", 4, 8), 2, 0, 1), info(node("b", "", 4, 8), 0, 5, 1), info(node("c", "", 2, 16), 0, 0, 0)},
			wantErr: "0/3 nodes are available: 1 insufficient memory, 2 insufficient cpu.",
		},
		{
			name:    "no node at all",
			group:   group(1, 1),
			wantErr: "no node is available: no node has joined.",
		},
		{
			name:  "a GPU group goes to a node with enough GPUs of its sku",
			group: gpuGroup,
			nodes: []NodeInfo{info(node("a", "", 8, 8), 0, 0, 0), info(node("b", "", 8, 8, gpus("K80", 4)), 0, 0, 0),
				{Node: node("c", "", 8, 8, gpus("V100", 2)), UsedGPUs: map[string]int32{"V100": 1}},
				info(node("d", "", 8, 8, gpus("V100", 2)), 6, 0, 3)},
			want: "d",
		},
		{
			name:    "a GPU group without a node of its sku does not fit",
			group:   gpuGroup,
			nodes:   []NodeInfo{info(node("a", "", 8, 8), 0, 0, 0), info(node("b", "", 8, 8, gpus("K80", 4)), 0, 0, 0)},
			wantErr: "0/2 nodes are available: 2 without the gpu sku.",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Place(tt.group, tt.nodes, tt.policy)
			if tt.wantErr != "" {
				var u *Unschedulable
				if !errors.As(err, &u) || err.Error() != tt.wantErr {
					t.Fatalf("Place = %q, %v; want Unschedulable %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Place = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
