package agent

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/types"
)

// These tests specify what the agent does with the groups its control
// plane binds to its node, running the real Agent over fakes.

func TestAgent_RunsTheGroupsBoundToItsNode(t *testing.T) {
	n := startTestNode(t)
	g := testGroup("web", "u1", types.RestartAlways, "app", "sidecar")
	other := testGroup("elsewhere", "u2", types.RestartAlways, "app")
	n.plane.PutOn("n2", other)
	n.plane.Put(g)

	n.waitRunning(g)
	att, ok, _ := n.net.Attached(g.UID)
	if !ok {
		t.Fatal("the group has no network attachment")
	}
	st := n.status(g.Key())
	if st.ProvisioningState != types.ProvisioningSucceeded || st.IP != att.IP || st.NodeName != "n1" {
		t.Errorf("status: provisioning %q, ip %q, node %q; want Succeeded, %s, n1", st.ProvisioningState, st.IP, st.NodeName, att.IP)
	}
	for _, c := range g.Spec.Containers {
		spec, _ := n.rt.Spec(n.id(g, c.Name))
		want := map[string]string{
			runtime.LabelGroup: g.Key(), runtime.LabelGroupUID: g.UID, runtime.LabelContainer: c.Name,
			runtime.LabelGeneration: "1", runtime.LabelRun: "1.0",
		}
		for k, v := range want {
			if spec.Labels[k] != v {
				t.Errorf("container %s: label %s = %q, want %q", c.Name, k, spec.Labels[k], v)
			}
		}
		if spec.Image != c.Image || spec.NetNSPath != att.NetNSPath {
			t.Errorf("container %s: image %q in %q; want %q in the group's netns %q", c.Name, spec.Image, spec.NetNSPath, c.Image, att.NetNSPath)
		}
		if cs := n.containerStatus(g.Key(), c.Name); cs.Current.State != types.ContainerRunning {
			t.Errorf("container %s reported %q, want Running", c.Name, cs.Current.State)
		}
	}
	if ids := n.rt.IDs(); len(ids) != 2 {
		t.Errorf("containers %v; want only the bound group's two (none of the group bound to n2)", ids)
	}
}

func TestAgent_RestartPolicyAfterAnExit(t *testing.T) {
	tests := []struct {
		policy    string
		exit      uint32
		restarted bool
		state     string
	}{
		{types.RestartNever, 0, false, types.GroupSucceeded},
		{types.RestartNever, 1, false, types.GroupFailed},
		{types.RestartOnFailure, 0, false, types.GroupSucceeded},
		{types.RestartOnFailure, 1, true, types.GroupRunning},
		{types.RestartAlways, 0, true, types.GroupRunning},
		{types.RestartAlways, 1, true, types.GroupRunning},
	}
	for _, tt := range tests {
		verb := "is left ended"
		if tt.restarted {
			verb = "is restarted after its back-off"
		}
		t.Run(fmt.Sprintf("under %s a container that exits %d %s", tt.policy, tt.exit, verb), func(t *testing.T) {
			n := startTestNode(t)
			g := testGroup("job", "u1", tt.policy, "app")
			n.plane.Put(g)
			n.waitRunning(g)
			id := n.id(g, "app")
			if err := n.rt.Exit(id, tt.exit); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the exit reported as the current state (during the back-off)", func() bool {
				cs := n.containerStatus(g.Key(), "app")
				return cs.Current.State == types.ContainerTerminated && cs.Current.ExitCode != nil && *cs.Current.ExitCode == int32(tt.exit)
			})
			// A restart waits out the 10 s back-off, on the agent's clock.
			n.settle(3)
			if n.containerState(g, "app") != runtime.StatusStopped {
				t.Fatal("the container was restarted before its back-off ran out")
			}
			n.clock.Advance(11 * time.Second)

			if tt.restarted {
				waitFor(t, "the restart", func() bool {
					cs := n.containerStatus(g.Key(), "app")
					return cs.RestartCount == 1 && cs.Current.State == types.ContainerRunning && n.containerState(g, "app") == runtime.StatusRunning
				})
				if cs := n.containerStatus(g.Key(), "app"); cs.Previous == nil || cs.Previous.ExitCode == nil || *cs.Previous.ExitCode != int32(tt.exit) {
					t.Errorf("previous state %+v, want the exit with %d", cs.Previous, tt.exit)
				}
				if !slices.Contains(n.rt.Removed(), id) {
					t.Error("the ended container was not removed before its restart")
				}
			} else {
				n.settle(3)
				if n.containerState(g, "app") != runtime.StatusStopped || len(n.rt.Removed()) != 0 {
					t.Errorf("container is %q, removed %v; want it left ended", n.containerState(g, "app"), n.rt.Removed())
				}
				if cs := n.containerStatus(g.Key(), "app"); cs.RestartCount != 0 {
					t.Errorf("restart count %d, want 0", cs.RestartCount)
				}
			}
			if st := n.status(g.Key()); st.State != tt.state {
				t.Errorf("group state %q, want %q", st.State, tt.state)
			}
		})
	}
}

func TestAgent_ANewRunReplacesTheContainers(t *testing.T) {
	tests := []struct {
		name   string
		change func(g *types.ContainerGroup)
		image  string
		run    string
	}{
		{"an update (a new generation)", func(g *types.ContainerGroup) {
			g.Generation = 2
			g.Spec.Containers[0].Image = "img:v2"
		}, "img:v2", "2.0"},
		{"a restart request", func(g *types.ContainerGroup) { g.Restarts = 1 }, "img:v1", "1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := startTestNode(t)
			g := testGroup("web", "u1", types.RestartAlways, "app")
			n.plane.Put(g)
			n.waitRunning(g)
			id := n.id(g, "app")

			tt.change(&g)
			n.plane.Put(g)
			waitFor(t, "the new run", func() bool {
				st := n.status(g.Key())
				spec, _ := n.rt.Spec(id)
				return st.ObservedGeneration == g.Generation && st.ObservedRestarts == g.Restarts && st.State == types.GroupRunning &&
					spec.Labels[runtime.LabelRun] == tt.run && n.containerState(g, "app") == runtime.StatusRunning
			})

			spec, _ := n.rt.Spec(id)
			if spec.Image != tt.image || spec.Labels[runtime.LabelGeneration] != fmt.Sprint(g.Generation) {
				t.Errorf("container runs %q, generation %q; want %s, %d", spec.Image, spec.Labels[runtime.LabelGeneration], tt.image, g.Generation)
			}
			if removed := n.rt.Removed(); !slices.Equal(removed, []string{id}) {
				t.Errorf("removed %v, want the old container once", removed)
			}
			if slices.Contains(n.net.TornDown(), g.UID) {
				t.Error("a new run tore down the group's network")
			}
			if cs := n.containerStatus(g.Key(), "app"); cs.Previous == nil || cs.Previous.DetailStatus != detailKilled {
				t.Errorf("previous state %+v, want the old container Killed", cs.Previous)
			}
			if st := n.status(g.Key()); st.ProvisioningState != types.ProvisioningSucceeded {
				t.Errorf("provisioning %q, want Succeeded", st.ProvisioningState)
			}
		})
	}
}

func TestAgent_ARecreatedGroupReplacesTheOldIncarnation(t *testing.T) {
	n := startTestNode(t)
	old := testGroup("web", "u1", types.RestartAlways, "app")
	n.plane.Put(old)
	n.waitRunning(old)

	// Deleted and created again under the same name while the agent was
	// not looking: a new UID at the same key.
	g := testGroup("web", "u2", types.RestartAlways, "app")
	n.plane.Put(g)
	n.waitRunning(g)

	if n.containerState(old, "app") != "" {
		t.Error("the old incarnation's container is left")
	}
	if torn := n.net.TornDown(); !slices.Equal(torn, []string{old.UID}) {
		t.Errorf("tore down %v, want the old incarnation's network only", torn)
	}
	if st := n.status(g.Key()); st.UID != g.UID {
		t.Errorf("status of %q, want the new incarnation's", st.UID)
	}
}

func TestAgent_AStoppedGroupFreesTheNodeAndIsReportedStopped(t *testing.T) {
	n := startTestNode(t)
	g := testGroup("web", "u1", types.RestartAlways, "app")
	n.plane.Put(g)
	n.waitRunning(g)

	g.Stopped = true
	n.plane.Put(g)
	waitFor(t, "the group reported Stopped", func() bool { return n.status(g.Key()).State == types.GroupStopped })
	if ids := n.rt.IDs(); len(ids) != 0 {
		t.Errorf("containers %v left of a stopped group", ids)
	}
	if _, ok, _ := n.net.Attached(g.UID); ok {
		t.Error("a stopped group keeps its network attachment")
	}
	if st := n.status(g.Key()); st.IP != "" {
		t.Errorf("a stopped group reports IP %q", st.IP)
	}
	if n.plane.TornDownCalls() != 0 || n.plane.Group(g.Key()) == nil {
		t.Error("a stop was reported as a finished delete")
	}
}

func TestAgent_AGroupMovedToAnotherNodeIsTornDownWithoutAReport(t *testing.T) {
	n := startTestNode(t)
	g := testGroup("web", "u1", types.RestartAlways, "app")
	n.plane.Put(g)
	n.waitRunning(g)
	before := n.plane.Status(g.Key())
	writes := n.plane.StatusWrites()

	if err := n.plane.Move(g.Key(), "n2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the teardown", func() bool {
		return len(n.rt.IDs()) == 0 && slices.Contains(n.net.TornDown(), g.UID) && n.quiet(g.Key())
	})
	calls := n.plane.ReportCalls()
	n.settle(3)

	if got := n.plane.ReportCalls(); got != calls {
		t.Errorf("%d status reports after the teardown, want none", got-calls)
	}
	if n.plane.StatusWrites() != writes || !n.plane.Status(g.Key()).UpdatedAt.Equal(before.UpdatedAt) {
		t.Error("the status of the moved group was overwritten")
	}
	if c := n.plane.TornDownCalls(); c != 0 {
		t.Errorf("ReportTornDown called %d times for a group that moved; the delete is not this node's", c)
	}
	if _, ok := n.a.statuses.get(g.Key()); ok {
		t.Error("the agent still remembers a status of the moved group")
	}
	if g := n.plane.Group(g.Key()); g == nil || g.NodeName != "n2" {
		t.Errorf("group %+v, want it left to n2", g)
	}
}

func TestAgent_ADeletingGroupIsTornDownAndReportedOnce(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, n *testNode, g types.ContainerGroup)
	}{
		{"a running group", func(t *testing.T, n *testNode, g types.ContainerGroup) {
			n.plane.Put(g)
			n.waitRunning(g)
		}},
		{"a group whose network never came up", func(t *testing.T, n *testNode, g types.ContainerGroup) {
			n.net.FailSetup(errdefs.ErrUnavailable)
			n.plane.Put(g)
			waitFor(t, "the failure reported", func() bool {
				return n.status(g.Key()).ProvisioningState == types.ProvisioningFailed
			})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := startTestNode(t)
			g := testGroup("web", "u1", types.RestartAlways, "app")
			tt.setup(t, n, g)
			hadNetwork := false
			if _, ok, _ := n.net.Attached(g.UID); ok {
				hadNetwork = true
			}

			if err := n.plane.MarkDeleting(g.Key()); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the delete finished", func() bool { return n.plane.Group(g.Key()) == nil })
			if ids := n.rt.IDs(); len(ids) != 0 {
				t.Errorf("containers %v left after the delete", ids)
			}
			if _, ok, _ := n.net.Attached(g.UID); ok {
				t.Error("the network attachment is left after the delete")
			}
			if hadNetwork && !slices.Contains(n.net.TornDown(), g.UID) {
				t.Error("the network was not torn down")
			}
			if got := n.plane.TornDown(); len(got) != 1 || got[0].Key != g.Key() || got[0].UID != g.UID {
				t.Errorf("torn down reports %v, want one for %s (%s)", got, g.Key(), g.UID)
			}
			// Once the group is gone from the agent's view, nothing more is
			// reported of it.
			waitFor(t, "the group gone from the agent's view", func() bool { return n.a.group(g.Key()) == nil && n.quiet(g.Key()) })
			calls, reports := n.plane.TornDownCalls(), n.plane.ReportCalls()
			n.settle(3)
			if n.plane.TornDownCalls() != calls || n.plane.ReportCalls() != reports {
				t.Error("the agent kept reporting a group whose delete finished")
			}
		})
	}
}

func TestAgent_AReportRefusedByTheFenceDoesNotLoop(t *testing.T) {
	n := newTestNode(t)
	n.plane.FailReportStatus(fmt.Errorf("group is not bound to node n1: %w", errdefs.ErrFailedPrecondition))
	g := testGroup("web", "u1", types.RestartAlways, "app")
	n.plane.Put(g)
	n.start()
	waitFor(t, "the container running", func() bool { return n.containerState(g, "app") == runtime.StatusRunning })
	waitFor(t, "a few refused reports", func() bool { return n.plane.ReportCalls() >= 2 })

	// Every pass reports once; passes come from resyncs, not from the
	// refusal.
	r0, c0 := n.resyncs.Load(), n.plane.ReportCalls()
	n.settle(10)
	resyncs, calls := n.resyncs.Load()-r0, int64(n.plane.ReportCalls()-c0)
	if calls > 2*resyncs+2 {
		t.Errorf("%d status reports in %d resyncs: the agent retries a refused report hot", calls, resyncs)
	}
	n.running()
	if removed := n.rt.Removed(); len(removed) != 0 {
		t.Errorf("removed %v; a refused report must not stop a group still in the agent's view", removed)
	}
	if n.plane.StatusWrites() != 0 {
		t.Error("a refused report was stored")
	}

	n.plane.FailReportStatus(nil)
	n.waitRunning(g)
	if removed := n.rt.Removed(); len(removed) != 0 {
		t.Errorf("removed %v; the container should have been adopted", removed)
	}
}

func TestAgent_RegistersItsNodeAndRenewsTheLease(t *testing.T) {
	n := startTestNode(t)
	waitFor(t, "the registration", func() bool { return len(n.plane.Registered()) > 0 })
	if got := n.plane.Registered()[0]; got.Name != "n1" {
		t.Errorf("registered %q, want n1", got.Name)
	}
	// The plane asks for a renewal every second.
	waitFor(t, "a renewal", func() bool { return n.plane.Renewals() >= 1 })
	if got := len(n.plane.Registered()); got != 1 {
		t.Errorf("registered %d times; a renewal is not a registration", got)
	}
}

func TestAgent_NothingIsTornDownBeforeTheFirstListing(t *testing.T) {
	ctx := context.Background()
	n := newTestNode(t)
	kept := testGroup("kept", "u1", types.RestartAlways, "app")
	gone := testGroup("gone", "u9", types.RestartAlways, "app")
	// What an earlier agent left: a running container and a network of
	// each group; only kept is still bound to the node.
	if err := n.rt.Pull(ctx, "img:v1", nil); err != nil {
		t.Fatal(err)
	}
	for _, g := range []types.ContainerGroup{kept, gone} {
		att, err := n.net.SetupIn(ctx, g.UID, nil)
		if err != nil {
			t.Fatal(err)
		}
		c := &g.Spec.Containers[0]
		spec := containerSpec(&g, c, att, c.Resources.Effective(), n.a.containerPaths(g.UID, c.Name))
		if err := n.rt.Create(ctx, spec); err != nil {
			t.Fatal(err)
		}
		if err := n.rt.Start(ctx, spec.ID); err != nil {
			t.Fatal(err)
		}
	}
	n.plane.Put(kept)
	n.plane.FailList(errdefs.ErrUnavailable)
	n.start()

	waitFor(t, "a failed listing", func() bool { return n.plane.Lists() >= 1 })
	// The informer retries after a second; meanwhile nothing may go.
	time.Sleep(300 * time.Millisecond)
	if removed, torn := n.rt.Removed(), n.net.TornDown(); len(removed) != 0 || len(torn) != 0 {
		t.Fatalf("removed %v, tore down %v before the groups bound to the node were listed", removed, torn)
	}
	if n.plane.ReportCalls() != 0 {
		t.Error("the agent reported a status before it listed its groups")
	}

	n.plane.FailList(nil)
	waitFor(t, "the gone group's teardown", func() bool {
		return n.containerState(gone, "app") == "" && slices.Contains(n.net.TornDown(), gone.UID)
	})
	n.waitRunning(kept)
	if removed := n.rt.Removed(); !slices.Equal(removed, []string{n.id(gone, "app")}) {
		t.Errorf("removed %v, want only the gone group's container: the kept one is adopted", removed)
	}
	if torn := n.net.TornDown(); !slices.Equal(torn, []string{gone.UID}) {
		t.Errorf("tore down %v, want only the gone group's network", torn)
	}
	if n.plane.TornDownCalls() != 0 {
		t.Error("ReportTornDown for a group that is just not bound here")
	}
}
