package nodes_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/controllers/controllertest"
	"github.com/berth-dev/berth/internal/controllers/nodes"
	"github.com/berth-dev/berth/internal/types"
)

func TestNodes(t *testing.T) {
	t.Parallel()
	e := controllertest.Start(t)
	ctx := t.Context()
	now := time.Now().UTC()
	put := func(n types.Node, renewed time.Time, groups ...string) {
		t.Helper()
		if _, err := e.Nodes.Create(ctx, n.Name, n); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Leases.Put(ctx, n.Name, types.Lease{Node: n.Name, RenewedAt: renewed, TTLSeconds: 10}); err != nil {
			t.Fatal(err)
		}
		for _, name := range groups {
			g := controllertest.Group(name, 1, 1)
			g.NodeName, g.IP = n.Name, "10.88.0.9"
			if _, err := e.Groups.Create(ctx, g.Key(), g); err != nil {
				t.Fatal(err)
			}
			st := types.GroupStatus{UID: g.UID, NodeName: n.Name, State: types.GroupRunning, Containers: []types.ContainerStatus{
				{Name: "c", Current: types.ContainerState{State: types.ContainerRunning, StartTime: now}}}}
			if _, err := e.Statuses.Put(ctx, g.Key(), st); err != nil {
				t.Fatal(err)
			}
		}
	}
	put(controllertest.ReadyNode("alive", "", 4, 8), now, "stays")
	put(controllertest.ReadyNode("lost", "", 4, 8), now.Add(-time.Minute), "moves")
	draining := controllertest.ReadyNode("drained", "", 4, 8)
	draining.Unschedulable, draining.Draining = true, true
	put(draining, now, "leaves")
	// Watching since long ago: the lapsed lease counts at once.
	e.Run(t, nodes.New(nodes.Options{Store: e.Store, Informers: e.Informers, WatchedSince: now.Add(-time.Hour)}))

	node := func(name string) types.Node {
		n, _, err := e.Nodes.Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	group := func(name string) (types.ContainerGroup, types.GroupStatus) {
		g, _, err := e.Groups.Get(ctx, types.GroupKey("sub", "rg", name))
		if err != nil {
			t.Fatal(err)
		}
		st, _, _ := e.Statuses.Get(ctx, g.Key())
		return g, st
	}
	t.Run("a node whose lease lapsed goes NotReady and its groups are unbound with an event", func(t *testing.T) {
		controllertest.Eventually(t, "lost is NotReady and moves is unbound", func() (bool, string) {
			n := node("lost")
			g, _ := group("moves")
			c := n.Condition(types.NodeReady)
			return c != nil && c.Status == types.ConditionFalse && c.Reason == nodes.ReasonLeaseLapsed && g.NodeName == "",
				fmt.Sprintf("condition %+v, group on %q", c, g.NodeName)
		})
		g, st := group("moves")
		if g.IP != "10.88.0.9" {
			t.Errorf("the group lost its address %q; it keeps it when it moves", g.IP)
		}
		last := st.Events[len(st.Events)-1]
		if st.NodeName != "" || last.Name != nodes.EventRescheduling || !strings.Contains(last.Message, "lost") {
			t.Errorf("status node %q, last event %+v", st.NodeName, last)
		}
		if cs := st.Containers[0]; cs.Current.State != types.ContainerWaiting || cs.Previous == nil || cs.Previous.State != types.ContainerRunning {
			t.Errorf("container status %+v, want Waiting with the Running state as previous", cs)
		}
	})
	t.Run("a node with a valid lease is Ready and keeps its groups", func(t *testing.T) {
		controllertest.Eventually(t, "alive is Ready", func() (bool, string) {
			n := node("alive")
			c := n.Condition(types.NodeReady)
			return c != nil && c.Status == types.ConditionTrue, fmt.Sprintf("%+v", c)
		})
		if g, _ := group("stays"); g.NodeName != "alive" {
			t.Fatalf("group moved to %q", g.NodeName)
		}
	})
	t.Run("a draining node's groups move and the drain ends with the node cordoned", func(t *testing.T) {
		controllertest.Eventually(t, "the drain finished", func() (bool, string) {
			n := node("drained")
			g, _ := group("leaves")
			return !n.Draining && g.NodeName == "", fmt.Sprintf("draining %v, group on %q", n.Draining, g.NodeName)
		})
		if !node("drained").Unschedulable {
			t.Fatal("the drained node is no longer cordoned")
		}
	})
	t.Run("a lease that stops being renewed lapses on its own", func(t *testing.T) {
		// Renewed now with a TTL of one second and never again.
		if _, err := e.Leases.Put(ctx, "alive", types.Lease{Node: "alive", RenewedAt: time.Now().UTC(), TTLSeconds: 1}); err != nil {
			t.Fatal(err)
		}
		controllertest.Eventually(t, "alive is NotReady", func() (bool, string) {
			n := node("alive")
			c := n.Condition(types.NodeReady)
			return c != nil && c.Status == types.ConditionFalse, fmt.Sprintf("%+v", c)
		})
	})
}

// A server that starts (or restarts) gives every node a lease's TTL to
// renew against it: leases that lapsed while it was down are not node
// losses yet.
func TestNodes_StartGrace(t *testing.T) {
	t.Parallel()
	e := controllertest.Start(t)
	ctx := t.Context()
	n := controllertest.ReadyNode("quiet", "", 4, 8)
	if _, err := e.Nodes.Create(ctx, n.Name, n); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Leases.Put(ctx, n.Name, types.Lease{Node: n.Name, RenewedAt: time.Now().UTC().Add(-time.Hour), TTLSeconds: 2}); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	e.Run(t, nodes.New(nodes.Options{Store: e.Store, Informers: e.Informers}))
	controllertest.Eventually(t, "quiet goes NotReady once its grace is over", func() (bool, string) {
		got, _, err := e.Nodes.Get(ctx, n.Name)
		if err != nil {
			return false, err.Error()
		}
		c := got.Condition(types.NodeReady)
		return c != nil && c.Status == types.ConditionFalse, fmt.Sprintf("condition %+v", c)
	})
	if waited := time.Since(started); waited < 2*time.Second {
		t.Errorf("NotReady %s after the start, before the lease's TTL of 2s", waited)
	}
}
