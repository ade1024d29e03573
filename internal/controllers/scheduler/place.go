// Package scheduler places container groups on nodes. Place is a pure
// function of a group and the nodes with what they already hold; the
// Scheduler controller feeds it from informers and binds the group to the
// chosen node, with its cluster-wide address, in one revision-checked
// write.
package scheduler

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/berth-dev/berth/internal/types"
)

// Policy breaks ties between nodes that fit.
type Policy string

const (
	// Spread puts a group on the node that is least allocated after it,
	// so load (and the damage of losing a node) is spread. The default.
	Spread Policy = "spread"
	// Binpack fills the most allocated node that fits first, keeping
	// whole nodes free for large groups.
	Binpack Policy = "binpack"
)

// ParsePolicy reads a --scheduler-policy value.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(strings.ToLower(s)); p {
	case Spread, Binpack:
		return p, nil
	case "":
		return Spread, nil
	}
	return "", fmt.Errorf("scheduler policy %q: want spread or binpack", s)
}

// NodeInfo is a node as the scheduler sees it: the node and what the
// groups bound to it request.
type NodeInfo struct {
	Node types.Node
	// Used is the sum of the requests of the groups bound to the node
	// (stopped ones hold nothing); UsedGPUs by sku.
	Used     types.ResourceList
	UsedGPUs map[string]int32
	// Groups is how many groups are bound to the node.
	Groups int
}

// Reasons a node does not fit, as they appear in the Unschedulable
// message.
const (
	reasonNotReady  = "not ready"
	reasonCordoned  = "cordoned"
	reasonZone      = "in another zone"
	reasonCPU       = "insufficient cpu"
	reasonMemory    = "insufficient memory"
	reasonGPU       = "insufficient gpu"
	reasonNoGPUSKU  = "without the gpu sku"
	reasonNoNodes   = "no node has joined"
	capacityEpsilon = 1e-9
)

// Unschedulable is Place's answer when no node fits, with why each node
// was passed over: it becomes the group's FailedScheduling event.
type Unschedulable struct {
	Nodes int
	// Reasons counts the nodes passed over for each reason.
	Reasons map[string]int
}

func (u *Unschedulable) Error() string {
	if u.Nodes == 0 {
		return "no node is available: " + reasonNoNodes + "."
	}
	reasons := make([]string, 0, len(u.Reasons))
	for r, n := range u.Reasons {
		reasons = append(reasons, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(reasons)
	return fmt.Sprintf("0/%d nodes are available: %s.", u.Nodes, strings.Join(reasons, ", "))
}

// Place picks the node for g among nodes, or returns *Unschedulable. It
// only considers Ready, uncordoned nodes in one of the group's zones (any
// zone when it names none) with room for its requests; policy orders the
// ones that fit, and the node name breaks remaining ties, so the same
// input always gives the same node.
func Place(g *types.ContainerGroup, nodes []NodeInfo, policy Policy) (string, error) {
	req := g.Spec.Requests()
	best, bestScore := -1, 0.0
	u := &Unschedulable{Nodes: len(nodes), Reasons: map[string]int{}}
	for i := range nodes {
		n := &nodes[i]
		if r := misfit(g, req, n); r != "" {
			u.Reasons[r]++
			continue
		}
		score := allocation(req, n)
		if policy == Binpack {
			score = -score
		}
		if best < 0 || score < bestScore-capacityEpsilon ||
			(math.Abs(score-bestScore) <= capacityEpsilon && tieBefore(n, &nodes[best])) {
			best, bestScore = i, score
		}
	}
	if best < 0 {
		return "", u
	}
	return nodes[best].Node.Name, nil
}

// misfit is why the group cannot go on n, or "" when it can.
func misfit(g *types.ContainerGroup, req types.ResourceList, n *NodeInfo) string {
	switch {
	case !n.Node.Ready():
		return reasonNotReady
	case n.Node.Unschedulable:
		return reasonCordoned
	case len(g.Spec.Zones) > 0 && !slices.ContainsFunc(g.Spec.Zones, func(z string) bool { return strings.EqualFold(z, n.Node.Zone) }):
		return reasonZone
	case req.CPU > n.Node.Allocatable.CPU-n.Used.CPU+capacityEpsilon:
		return reasonCPU
	case req.MemoryGB > n.Node.Allocatable.MemoryGB-n.Used.MemoryGB+capacityEpsilon:
		return reasonMemory
	}
	if req.GPU.Count > 0 {
		have, ok := n.Node.Allocatable.GPUs[req.GPU.SKU]
		if !ok {
			return reasonNoGPUSKU
		}
		if req.GPU.Count > have-n.UsedGPUs[req.GPU.SKU] {
			return reasonGPU
		}
	}
	return ""
}

// allocation is how full n is after the group: the larger of its CPU and
// memory fractions.
func allocation(req types.ResourceList, n *NodeInfo) float64 {
	frac := func(used, want, have float64) float64 {
		if have <= 0 {
			return 1
		}
		return (used + want) / have
	}
	return max(frac(n.Used.CPU, req.CPU, n.Node.Allocatable.CPU), frac(n.Used.MemoryGB, req.MemoryGB, n.Node.Allocatable.MemoryGB))
}

// tieBefore orders nodes of equal score: fewer groups first, then by name.
func tieBefore(a, b *NodeInfo) bool {
	if a.Groups != b.Groups {
		return a.Groups < b.Groups
	}
	return a.Node.Name < b.Node.Name
}
