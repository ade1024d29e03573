package nodeplane_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/containerd/errdefs"
	"slices"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/agent/fake"
	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/controllers/controllertest"
	"github.com/berth-dev/berth/internal/nodeplane"
	"github.com/berth-dev/berth/internal/types"
)

// plane is one node's view of the control plane, as Local and Remote
// both give it.
type plane interface {
	Register(ctx context.Context, n types.Node) (types.ClusterInfo, error)
	RenewLease(ctx context.Context) error
	Assigned() controller.Source[types.ContainerGroup]
	Endpoints() controller.Source[types.Endpoint]
	Nodes() controller.Source[types.Node]
	LastStatus(ctx context.Context, key string) (*types.GroupStatus, error)
	ReportStatus(ctx context.Context, key string, st *types.GroupStatus) error
	ReportTornDown(ctx context.Context, key, uid string) error
}

var (
	_ plane = (*nodeplane.Local)(nil)
	_ plane = (*nodeplane.Remote)(nil)
)

const testSubnet = "172.30.0.0/16"

// planeEnv is a control plane and the way to one node's view of it.
type planeEnv struct {
	env   *controllertest.Env
	clock *fake.Clock
	plane func(t *testing.T, node string) plane
}

// startServer runs a node protocol Server over a test store, its
// sources served from the informers as the daemon does, or with
// informers false each watching the store.
func startServer(t *testing.T, informers bool) (*controllertest.Env, *nodeplane.Server, *fake.Clock) {
	env := controllertest.Start(t)
	o := nodeplane.ServerOptions{Store: env.Store, PublicSubnet: testSubnet}
	if informers {
		env.Run(t)
		o.Informers = env.Informers
	}
	clk := fake.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	o.Now = clk.Now
	return env, nodeplane.NewServer(o), clk
}

func startLocal(informers bool) func(*testing.T) *planeEnv {
	return func(t *testing.T) *planeEnv {
		env, srv, clk := startServer(t, informers)
		return &planeEnv{env: env, clock: clk, plane: func(_ *testing.T, node string) plane { return srv.Local(node) }}
	}
}

func startRemote(informers bool) func(*testing.T) *planeEnv {
	return func(t *testing.T) *planeEnv {
		f := startAPIWith(t, informers)
		return &planeEnv{env: f.env, clock: f.clock, plane: func(t *testing.T, node string) plane { return f.remote(t, node, node) }}
	}
}

// TestConformance runs the same behaviours against the in-process view
// and the view over the API: an agent must not be able to tell them
// apart.
func TestConformance(t *testing.T) {
	for _, impl := range []struct {
		name  string
		start func(*testing.T) *planeEnv
	}{
		{"local", startLocal(true)},
		{"remote", startRemote(true)},
		{"local with store sources", startLocal(false)},
		{"remote with store sources", startRemote(false)},
	} {
		t.Run(impl.name, func(t *testing.T) {
			e := impl.start(t)
			t.Run("register keeps what the control plane set", func(t *testing.T) { testRegister(t, e) })
			t.Run("renew lease", func(t *testing.T) { testRenewLease(t, e) })
			t.Run("assigned", func(t *testing.T) { testAssigned(t, e) })
			t.Run("report status", func(t *testing.T) { testReportStatus(t, e) })
			t.Run("report status of a group not bound", func(t *testing.T) { testReportNotBound(t, e) })
			t.Run("report torn down", func(t *testing.T) { testReportTornDown(t, e) })
			t.Run("endpoints", func(t *testing.T) { testEndpoints(t, e) })
		})
	}
}

func testRegister(t *testing.T, e *planeEnv) {
	ctx := t.Context()
	// A node the control plane knows: cordoned, and Ready by the node
	// lifecycle controller's judgement.
	known := controllertest.ReadyNode("n-reg", "z1", 4, 8)
	known.Unschedulable = true
	if _, err := e.env.Nodes.Put(ctx, "n-reg", known); err != nil {
		t.Fatal(err)
	}
	info, err := e.plane(t, "n-reg").Register(ctx, types.Node{Zone: "z2", Addresses: []string{"10.0.0.7"}, Allocatable: types.NodeResources{CPU: 2, MemoryGB: 4}})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	if info.PublicSubnet != testSubnet || info.LeaseTTLSeconds != 10 || info.LeaseRenewSeconds != 3 {
		t.Errorf("cluster info = %+v, want subnet %s, lease 10 s renewed every 3 s", info, testSubnet)
	}
	// An agent cannot call its own node Ready.
	if _, err := e.plane(t, "n-reg2").Register(ctx, controllertest.ReadyNode("", "z1", 1, 1)); err != nil {
		t.Fatalf("register: %v", err)
	}

	nodes := e.plane(t, "n-reg").Nodes()
	eventually(t, "both nodes are listed as registered", func() (bool, string) {
		items, _, err := nodes.List(ctx)
		if err != nil {
			return false, err.Error()
		}
		n, ok := find(items, "n-reg")
		n2, ok2 := find(items, "n-reg2")
		switch {
		case !ok || !ok2:
			return false, fmt.Sprintf("listed %v", keys(items))
		case n.Zone != "z2" || !slices.Equal(n.Addresses, []string{"10.0.0.7"}) || n.Allocatable.CPU != 2:
			return false, fmt.Sprintf("n-reg does not have what the agent said: %+v", n)
		case !n.Ready() || !n.Unschedulable:
			return false, fmt.Sprintf("n-reg lost what the control plane set (Ready, cordon): %+v", n)
		case n2.Ready() || len(n2.Conditions) != 0:
			return false, fmt.Sprintf("n-reg2 has the conditions its agent sent: %+v", n2.Conditions)
		}
		return true, ""
	})
	l, _, err := e.env.Leases.Get(ctx, "n-reg")
	if err != nil || !l.RenewedAt.Equal(e.clock.Now()) {
		t.Errorf("lease after register = %+v, %v; want renewed at %s", l, err, e.clock.Now())
	}
}

func testRenewLease(t *testing.T, e *planeEnv) {
	ctx := t.Context()
	p := e.plane(t, "n-lease")
	if _, err := p.Register(ctx, types.Node{}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(5 * time.Second)
	if err := p.RenewLease(ctx); err != nil {
		t.Fatalf("renew: %v", err)
	}
	l, _, err := e.env.Leases.Get(ctx, "n-lease")
	if err != nil {
		t.Fatal(err)
	}
	if !l.RenewedAt.Equal(e.clock.Now()) || l.TTLSeconds != 10 || l.Node != "n-lease" {
		t.Errorf("lease = %+v, want renewed at %s for 10 s", l, e.clock.Now())
	}
}

func testAssigned(t *testing.T, e *planeEnv) {
	ctx := t.Context()
	const node = "n-as"
	a1 := putGroup(t, e, "as-a1", node, "")
	putGroup(t, e, "as-b1", "n-as-other", "")
	putGroup(t, e, "as-none", "", "")
	src := e.plane(t, node).Assigned()
	var rev int64
	eventually(t, "only the node's group is listed", func() (bool, string) {
		items, r, err := src.List(ctx)
		if err != nil {
			return false, err.Error()
		}
		rev = r
		var mine []string
		for _, it := range items {
			if it.Key >= "sub/rg/as-" && it.Key < "sub/rg/as." {
				mine = append(mine, it.Key)
			}
			if it.Value.NodeName != node {
				return false, fmt.Sprintf("listed %s, bound to %q", it.Key, it.Value.NodeName)
			}
		}
		return slices.Equal(mine, []string{a1.Key()}), fmt.Sprintf("listed %v", mine)
	})

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := src.Watch(wctx, rev)
	putGroup(t, e, "as-b2", "n-as-other", "") // never seen as put
	a2 := putGroup(t, e, "as-a2", node, "")
	ev := nextEvent(t, ch, node, a2.Key())
	if ev.Type != controller.EventPut || ev.Value.UID != a2.UID {
		t.Fatalf("after binding %s: event %v %s", a2.Key(), ev.Type, ev.Key)
	}
	putGroup(t, e, "as-a1", "n-as-other", "") // moved away
	if ev := nextEvent(t, ch, node, a1.Key()); ev.Type != controller.EventDelete {
		t.Fatalf("after moving %s to another node: event %v, want delete", a1.Key(), ev.Type)
	}
}

func testReportStatus(t *testing.T, e *planeEnv) {
	ctx := t.Context()
	const node = "n-st"
	g := putGroup(t, e, "st", node, "")
	p := e.plane(t, node)
	if st, err := p.LastStatus(ctx, g.Key()); err != nil || st != nil {
		t.Fatalf("last status before any report = %+v, %v; want none", st, err)
	}
	at := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	if err := p.ReportStatus(ctx, g.Key(), &types.GroupStatus{UID: g.UID, ObservedGeneration: 1, ProvisioningState: types.ProvisioningSucceeded, State: types.GroupRunning, UpdatedAt: at}); err != nil {
		t.Fatalf("report: %v", err)
	}
	st, err := p.LastStatus(ctx, g.Key())
	if err != nil || st == nil {
		t.Fatalf("last status = %+v, %v", st, err)
	}
	if st.UID != g.UID || st.NodeName != node || st.State != types.GroupRunning || st.ObservedGeneration != 1 || !st.UpdatedAt.Equal(at) || st.TornDown {
		t.Errorf("last status = %+v, want what the node reported, from %s", st, node)
	}
	// The report is stamped with its node, in the caller's copy too.
	rep := &types.GroupStatus{UID: g.UID, NodeName: "someone-else", TornDown: true, State: types.GroupRunning}
	if err := p.ReportStatus(ctx, g.Key(), rep); err != nil || rep.NodeName != node || rep.TornDown {
		t.Errorf("report = %v, leaving the report %+v; want it stamped with %s, not torn down", err, rep, node)
	}
}

func testReportNotBound(t *testing.T, e *planeEnv) {
	ctx := t.Context()
	const node = "n-nb"
	elsewhere := putGroup(t, e, "nb-else", "n-nb-other", "")
	mine := putGroup(t, e, "nb-mine", node, "")
	for _, tc := range []struct {
		name, key, uid string
		// readable: the group is the node's, so it may read the status
		// (and see that it is another incarnation's).
		readable bool
	}{
		{"bound to another node", elsewhere.Key(), elsewhere.UID, false},
		{"an older incarnation", mine.Key(), "uid-of-the-deleted-one", true},
		{"gone", "sub/rg/nb-gone", "uid-nb-gone", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := types.GroupStatus{UID: tc.uid, NodeName: "n-nb-other", State: types.GroupRunning}
			if _, err := e.env.Statuses.Put(ctx, tc.key, before); err != nil {
				t.Fatal(err)
			}
			p := e.plane(t, node)
			err := p.ReportStatus(ctx, tc.key, &types.GroupStatus{UID: tc.uid, State: types.GroupFailed})
			if !errors.Is(err, nodeplane.ErrNotBound) {
				t.Fatalf("report = %v, want ErrNotBound", err)
			}
			st, _, err := e.env.Statuses.Get(ctx, tc.key)
			if err != nil || st.State != types.GroupRunning || st.NodeName != "n-nb-other" {
				t.Errorf("status after the refused report = %+v, %v; want it unchanged", st, err)
			}
			// Nor may the node read it, unless the group is the node's.
			got, err := p.LastStatus(ctx, tc.key)
			switch {
			case tc.readable && (err != nil || got == nil || got.UID != tc.uid):
				t.Errorf("last status of the node's group = %+v, %v; want the stored one", got, err)
			case !tc.readable && !errors.Is(err, nodeplane.ErrNotBound):
				t.Errorf("last status of a group not bound to the node = %+v, %v; want ErrNotBound", got, err)
			}
		})
	}
}

func testReportTornDown(t *testing.T, e *planeEnv) {
	ctx := t.Context()
	const node = "n-td"
	g := putGroup(t, e, "td", node, "")
	other := putGroup(t, e, "td-else", "n-td-other", "")
	p := e.plane(t, node)
	if err := p.ReportTornDown(ctx, g.Key(), g.UID); err != nil {
		t.Fatalf("torn down: %v", err)
	}
	st, err := p.LastStatus(ctx, g.Key())
	if err != nil || st == nil || !st.TornDown || st.NodeName != node || st.UID != g.UID {
		t.Errorf("status after torn down = %+v, %v", st, err)
	}
	// A group the node lost needs no report: it succeeds, writing nothing.
	if err := p.ReportTornDown(ctx, other.Key(), other.UID); err != nil {
		t.Errorf("torn down of a group bound elsewhere = %v, want nil", err)
	}
	if st, _, err := e.env.Statuses.Get(ctx, other.Key()); !errdefs.IsNotFound(err) {
		t.Errorf("status of the group bound elsewhere = %+v, %v; want none", st, err)
	}
}

func testEndpoints(t *testing.T, e *planeEnv) {
	ctx := t.Context()
	with := putGroup(t, e, "ep-ip", "n-ep", "10.1.0.5")
	without := putGroup(t, e, "ep-noip", "n-ep", "")
	src := e.plane(t, "n-ep-reader").Endpoints()
	eventually(t, "the group with an address is an endpoint", func() (bool, string) {
		items, _, err := src.List(ctx)
		if err != nil {
			return false, err.Error()
		}
		if _, ok := find(items, without.Key()); ok {
			return false, without.Key() + " has no address but is listed"
		}
		ep, ok := find(items, with.Key())
		if !ok || ep.IP != "10.1.0.5" || ep.Node != "n-ep" || ep.UID != with.UID || ep.Group != with.Key() {
			return false, fmt.Sprintf("endpoint of %s = %+v", with.Key(), ep)
		}
		return true, ""
	})
}

// putGroup writes group name bound to node, with ip.
func putGroup(t *testing.T, e *planeEnv, name, node, ip string) types.ContainerGroup {
	t.Helper()
	g := controllertest.Group(name, 1, 1)
	g.NodeName, g.IP = node, ip
	if _, err := e.env.Groups.Put(t.Context(), g.Key(), g); err != nil {
		t.Fatal(err)
	}
	return g
}

// nextEvent returns the next event of key from a watch of node's
// groups, failing on a reset, a closed channel, a put of a group bound
// elsewhere, or after 10 s.
func nextEvent(t *testing.T, ch <-chan controller.Event[types.ContainerGroup], node, key string) controller.Event[types.ContainerGroup] {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			switch {
			case !ok:
				t.Fatalf("watch closed, waiting for %s", key)
			case ev.Type == controller.EventReset:
				t.Fatalf("watch reset, waiting for %s", key)
			case ev.Type == controller.EventPut && ev.Value.NodeName != node:
				t.Fatalf("watch of %s's groups sent %s, bound to %q", node, ev.Key, ev.Value.NodeName)
			case ev.Key == key:
				return ev
			}
		case <-timeout:
			t.Fatalf("no event of %s in 10 s", key)
		}
	}
}

func find[T any](items []controller.Item[T], key string) (T, bool) {
	for _, it := range items {
		if it.Key == key {
			return it.Value, true
		}
	}
	var zero T
	return zero, false
}

func keys[T any](items []controller.Item[T]) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.Key
	}
	return out
}

func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	controllertest.Eventually(t, what, cond)
}
