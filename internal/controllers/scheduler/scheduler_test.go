package scheduler_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/controllers"
	"github.com/berth-dev/berth/internal/controllers/scheduler"
	"github.com/berth-dev/berth/internal/embedetcd/etcdtest"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

func readyNode(name, zone string, cpu, mem float64) types.Node {
	return types.Node{Name: name, Zone: zone, Allocatable: types.NodeResources{CPU: cpu, MemoryGB: mem},
		Conditions: []types.NodeCondition{{Type: types.NodeReady, Status: types.ConditionTrue}}}
}

func newGroup(name string, cpu, mem float64, zones ...string) types.ContainerGroup {
	return types.ContainerGroup{Subscription: "sub", ResourceGroup: "rg", Name: name, UID: "uid-" + name, Generation: 1,
		Spec: types.GroupSpec{Zones: zones, Containers: []types.Container{{Name: "c", Resources: types.Resources{Requests: types.ResourceList{CPU: cpu, MemoryGB: mem}}}}}}
}

type env struct {
	st     *store.Store
	groups store.Typed[types.ContainerGroup]
	status store.Typed[types.GroupStatus]
	nodes  store.Typed[types.Node]
	// in are the scheduler's informers.
	in *controllers.Informers
}

func start(t *testing.T) *env {
	t.Helper()
	st := store.New(etcdtest.NewClient(t), "/test/")
	e := &env{st: st, groups: store.NewTyped[types.ContainerGroup](st, types.PrefixGroups),
		status: store.NewTyped[types.GroupStatus](st, types.PrefixGroupStatus), nodes: store.NewTyped[types.Node](st, types.PrefixNodes)}
	in := controllers.NewInformers(st, nil)
	e.in = in
	s := scheduler.New(scheduler.Options{Store: st, Informers: in, PublicSubnet: netip.MustParsePrefix("10.88.0.0/16"), Workers: 2})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { in.Run(ctx); done <- struct{}{} }()
	go func() { s.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	return e
}

func (e *env) put(t *testing.T, gs ...types.ContainerGroup) {
	t.Helper()
	for _, g := range gs {
		if _, err := e.groups.Create(t.Context(), g.Key(), g); err != nil {
			t.Fatal(err)
		}
	}
}

// addNode stores n and waits until the scheduler's cache has it, so that
// the groups a test creates next are placed knowing every node.
func (e *env) addNode(t *testing.T, n types.Node) {
	t.Helper()
	if _, err := e.nodes.Create(t.Context(), n.Name, n); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := e.in.Nodes.Get(n.Name); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s not in the scheduler's cache after 10s", n.Name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// bound waits until every named group is bound and returns them by name.
func (e *env) bound(t *testing.T, names ...string) map[string]types.ContainerGroup {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := map[string]types.ContainerGroup{}
		for _, n := range names {
			g, _, err := e.groups.Get(t.Context(), types.GroupKey("sub", "rg", n))
			if err == nil && g.NodeName != "" {
				out[n] = g
			}
		}
		if len(out) == len(names) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("bound %d of %v", len(out), names)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) lastEvent(t *testing.T, name string) types.Event {
	t.Helper()
	st, _, err := e.status.Get(t.Context(), types.GroupKey("sub", "rg", name))
	if err != nil || len(st.Events) == 0 {
		return types.Event{}
	}
	return st.Events[len(st.Events)-1]
}

func TestScheduler(t *testing.T) {
	t.Parallel()
	t.Run("groups are spread over the nodes, each with its own address and a Scheduled event", func(t *testing.T) {
		t.Parallel()
		e := start(t)
		for _, n := range []string{"n1", "n2", "n3"} {
			e.addNode(t, readyNode(n, "1", 4, 8))
		}
		var names []string
		for i := range 6 {
			names = append(names, fmt.Sprintf("g%d", i))
			e.put(t, newGroup(names[i], 1, 1))
		}
		got := e.bound(t, names...)
		perNode, ips := map[string]int{}, map[string]bool{}
		for name, g := range got {
			perNode[g.NodeName]++
			if ips[g.IP] || !netip.MustParsePrefix("10.88.0.0/16").Contains(netip.MustParseAddr(g.IP)) || g.IP == "10.88.0.1" {
				t.Errorf("%s got address %q: taken twice, outside the subnet or the gateway", name, g.IP)
			}
			ips[g.IP] = true
			if ev := e.lastEvent(t, name); ev.Name != scheduler.EventScheduled || !strings.Contains(ev.Message, g.NodeName) {
				t.Errorf("%s: last event %+v, want Scheduled naming %s", name, ev, g.NodeName)
			}
		}
		for _, n := range []string{"n1", "n2", "n3"} {
			if perNode[n] != 2 {
				t.Fatalf("groups per node = %v, want 2 on each", perNode)
			}
		}
		claims, _, err := store.NewTyped[types.IPClaim](e.st, types.PrefixIPClaims).List(t.Context())
		if err != nil || len(claims) != 6 {
			t.Fatalf("ip claims = %d (%v), want 6", len(claims), err)
		}
	})
	t.Run("a group too big for every node waits with a FailedScheduling event and runs once a node with room joins", func(t *testing.T) {
		t.Parallel()
		e := start(t)
		e.addNode(t, readyNode("small", "", 2, 4))
		e.put(t, newGroup("big", 3, 2))
		// The group may be tried before the scheduler's cache has the
		// node ("no node has joined"); once it has, the event says why.
		deadline := time.Now().Add(10 * time.Second)
		for {
			ev := e.lastEvent(t, "big")
			if ev.Name == scheduler.EventFailedScheduling && strings.Contains(ev.Message, "1 insufficient cpu") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("last event %+v, want FailedScheduling saying 1 insufficient cpu", ev)
			}
			time.Sleep(10 * time.Millisecond)
		}
		e.addNode(t, readyNode("large", "", 8, 16))
		if g := e.bound(t, "big")["big"]; g.NodeName != "large" {
			t.Fatalf("bound to %s, want large", g.NodeName)
		}
	})
	t.Run("zones are honoured and the capacity a binding takes is counted before the cache shows it", func(t *testing.T) {
		t.Parallel()
		e := start(t)
		e.addNode(t, readyNode("z1", "1", 2, 8))
		e.addNode(t, readyNode("z2", "2", 2, 8))
		// Four groups of one core, all created at once, for zone 2 only:
		// two fit; the others must wait rather than overcommit z2.
		e.put(t, newGroup("a", 1, 1, "2"), newGroup("b", 1, 1, "2"), newGroup("c", 1, 1, "2"), newGroup("d", 1, 1, "2"))
		// Wait until every group was decided: bound, or told it cannot
		// be placed because z2 is full.
		deadline := time.Now().Add(10 * time.Second)
		for {
			bound, full := 0, 0
			for _, name := range []string{"a", "b", "c", "d"} {
				g, _, _ := e.groups.Get(t.Context(), types.GroupKey("sub", "rg", name))
				switch ev := e.lastEvent(t, name); {
				case g.NodeName != "":
					bound++
					if g.NodeName != "z2" {
						t.Fatalf("%s on %s, want z2", name, g.NodeName)
					}
				case ev.Name == scheduler.EventFailedScheduling && strings.Contains(ev.Message, "1 in another zone, 1 insufficient cpu"):
					full++
				}
			}
			if bound > 2 {
				t.Fatalf("%d groups bound, want 2 (z2 holds two cores)", bound)
			}
			if bound == 2 && full == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d bound, %d told z2 is full; want 2 and 2", bound, full)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}
