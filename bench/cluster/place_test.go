package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/controllers/scheduler"
	"github.com/berth-dev/berth/internal/types"
)

// placeResult is one policy's run of the scheduler step.
type placeResult struct {
	policy    string
	perSecond float64
	lat       summary
	nodesUsed int
}

// placeStep places m.placeGroups groups one after another on
// m.placeNodes empty nodes with scheduler.Place under each policy, adding
// every placement to its node as the Scheduler's usage does, and a naive
// first-fit scan (the first node with room, no scoring) as the baseline.
func placeStep(t *testing.T, m mode) []placeResult {
	policies := []struct {
		name  string
		place func(*types.ContainerGroup, []scheduler.NodeInfo) (string, error)
	}{
		{"first fit (baseline)", firstFit},
		{"spread", func(g *types.ContainerGroup, n []scheduler.NodeInfo) (string, error) {
			return scheduler.Place(g, n, scheduler.Spread)
		}},
		{"binpack", func(g *types.ContainerGroup, n []scheduler.NodeInfo) (string, error) {
			return scheduler.Place(g, n, scheduler.Binpack)
		}},
	}
	var out []placeResult
	for _, p := range policies {
		nodes := make([]scheduler.NodeInfo, m.placeNodes)
		index := map[string]int{}
		for i := range nodes {
			name := simNodeName(i)
			nodes[i] = scheduler.NodeInfo{Node: types.Node{Name: name, Zone: fmt.Sprintf("zone-%d", i%3),
				Allocatable: types.NodeResources{CPU: simCPU, MemoryGB: simMem},
				Conditions:  []types.NodeCondition{{Type: types.NodeReady, Status: types.ConditionTrue}}}}
			index[name] = i
		}
		lat := make([]time.Duration, 0, m.placeGroups)
		start := time.Now()
		for i := range m.placeGroups {
			g := placeGroup(i)
			t0 := time.Now()
			name, err := p.place(g, nodes)
			lat = append(lat, time.Since(t0))
			if err != nil {
				t.Fatalf("%s: group %d: %v", p.name, i, err)
			}
			n := &nodes[index[name]]
			req := g.Spec.Requests()
			n.Used.CPU += req.CPU
			n.Used.MemoryGB += req.MemoryGB
			n.Groups++
		}
		total := time.Since(start)
		used := 0
		for _, n := range nodes {
			if n.Groups > 0 {
				used++
			}
		}
		r := placeResult{policy: p.name, perSecond: float64(m.placeGroups) / total.Seconds(), lat: summarize(lat), nodesUsed: used}
		t.Logf("%s: %.0f placements/s, p99 %s, %d nodes used", r.policy, r.perSecond, r.lat.P99, used)
		out = append(out, r)
	}
	return out
}

// placeGroup is the i-th group: sizes vary so that nodes fill unevenly.
func placeGroup(i int) *types.ContainerGroup {
	cpu, mem := 0.5+float64(i%4)*0.5, 1+float64(i%3)
	return &types.ContainerGroup{Name: fmt.Sprintf("g-%05d", i), Spec: types.GroupSpec{Containers: []types.Container{
		{Name: "c", Resources: types.Resources{Requests: types.ResourceList{CPU: cpu, MemoryGB: mem}}}}}}
}

// firstFit is the baseline: the first Ready node with room, in list order.
func firstFit(g *types.ContainerGroup, nodes []scheduler.NodeInfo) (string, error) {
	req := g.Spec.Requests()
	for i := range nodes {
		n := &nodes[i]
		if n.Node.Ready() && !n.Node.Unschedulable &&
			req.CPU <= n.Node.Allocatable.CPU-n.Used.CPU && req.MemoryGB <= n.Node.Allocatable.MemoryGB-n.Used.MemoryGB {
			return n.Node.Name, nil
		}
	}
	return "", fmt.Errorf("no node fits")
}
