package scheduler

import (
	"fmt"
	"testing"

	"github.com/berth-dev/berth/internal/types"
)

// benchNodes are n equal nodes of 16 CPUs and 64 GB, spread over three
// zones, none holding anything yet.
func benchNodes(n int) []NodeInfo {
	nodes := make([]NodeInfo, n)
	for i := range nodes {
		nodes[i] = NodeInfo{Node: node(fmt.Sprintf("node-%04d", i), fmt.Sprintf("zone-%d", i%3), 16, 64)}
	}
	return nodes
}

// benchGroup is the i-th group of a run: sizes vary so that nodes fill
// unevenly, as they do in a cluster.
func benchGroup(i int) *types.ContainerGroup {
	return group(0.5+float64(i%4)*0.5, 1+float64(i%3))
}

// BenchmarkPlace places groups one after another on 1,000 nodes, adding
// each placement to its node as the Scheduler does, so later placements
// see fuller nodes. The nodes are reset every 10,000 placements so that
// they never fill up.
func BenchmarkPlace(b *testing.B) {
	for _, p := range []Policy{Spread, Binpack} {
		b.Run(string(p), func(b *testing.B) {
			nodes := benchNodes(1000)
			byName := indexNodes(nodes)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%10000 == 0 {
					b.StopTimer()
					nodes = benchNodes(1000)
					b.StartTimer()
				}
				g := benchGroup(i)
				name, err := Place(g, nodes, p)
				if err != nil {
					b.Fatal(err)
				}
				bind(&nodes[byName[name]], g)
			}
		})
	}
}

// TestPlace_ManyGroupsFit checks what the benchmark relies on: 10,000
// groups fit on 1,000 nodes under both policies, and each policy leaves
// the shape it promises.
func TestPlace_ManyGroupsFit(t *testing.T) {
	for _, p := range []Policy{Spread, Binpack} {
		t.Run(string(p), func(t *testing.T) {
			nodes := benchNodes(1000)
			byName := indexNodes(nodes)
			for i := range 10000 {
				g := benchGroup(i)
				name, err := Place(g, nodes, p)
				if err != nil {
					t.Fatalf("group %d: %v", i, err)
				}
				bind(&nodes[byName[name]], g)
			}
			used := 0
			for _, n := range nodes {
				if n.Groups > 0 {
					used++
				}
			}
			switch {
			case p == Spread && used != len(nodes):
				t.Errorf("spread used %d of %d nodes, want all", used, len(nodes))
			case p == Binpack && used >= len(nodes):
				t.Errorf("binpack used all %d nodes, want fewer", used)
			}
		})
	}
}

func indexNodes(nodes []NodeInfo) map[string]int {
	m := make(map[string]int, len(nodes))
	for i, n := range nodes {
		m[n.Node.Name] = i
	}
	return m
}

// bind adds g to the node it was placed on.
func bind(n *NodeInfo, g *types.ContainerGroup) {
	req := g.Spec.Requests()
	n.Used.CPU += req.CPU
	n.Used.MemoryGB += req.MemoryGB
	n.Groups++
}
