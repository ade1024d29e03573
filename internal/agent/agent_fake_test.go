package agent

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/agent/fake"
	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/types"
)

var (
	_ ControlPlane     = (*fake.Plane)(nil)
	_ containerRuntime = (*fake.Runtime)(nil)
	_ groupNetwork     = (*fake.Network)(nil)
)

// testResync is the resync period of a testNode: short, so that what a
// test changes behind the agent's back (the clock) is acted on soon.
const testResync = 20 * time.Millisecond

// testNode is a real Agent on node n1 over fakes: its control plane,
// container runtime, network and clock.
type testNode struct {
	t     *testing.T
	a     *Agent
	plane *fake.Plane
	rt    *fake.Runtime
	net   *fake.Network
	clock *fake.Clock
	// resyncs counts the resyncs begun (each lists the network).
	resyncs atomic.Int64
	done    chan error
}

// newTestNode returns a node whose agent has not started: the test may
// first put what an earlier agent left behind.
func newTestNode(t *testing.T) *testNode {
	t.Helper()
	clock := fake.NewClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	n := &testNode{
		t:     t,
		plane: fake.NewPlane("n1"),
		rt:    fake.NewRuntime(clock.Now),
		net:   fake.NewNetwork(),
		clock: clock,
	}
	n.net.OnList = func() { n.resyncs.Add(1) }
	n.a = New(Options{
		Plane:     n.plane,
		Node:      types.Node{Name: "n1"},
		Runtime:   n.rt,
		Network:   n.net,
		Dir:       t.TempDir(),
		Resync:    testResync,
		StopGrace: time.Millisecond,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	n.a.now = clock.Now
	return n
}

// startTestNode returns a node whose agent runs until the test ends.
func startTestNode(t *testing.T) *testNode {
	n := newTestNode(t)
	n.start()
	return n
}

func (n *testNode) start() {
	ctx, cancel := context.WithCancel(context.Background())
	n.done = make(chan error, 1)
	go func() { n.done <- n.a.Run(ctx) }()
	n.t.Cleanup(func() {
		cancel()
		select {
		case <-n.done:
		case <-time.After(5 * time.Second):
			n.t.Error("the agent did not stop within 5 s of its context")
		}
	})
}

// running fails the test if Run has returned.
func (n *testNode) running() {
	n.t.Helper()
	select {
	case err := <-n.done:
		n.t.Fatalf("the agent stopped: %v", err)
	default:
	}
}

// settle waits for k more resyncs: whatever the agent would do on its
// own about what it was shown has been done by then.
func (n *testNode) settle(k int64) {
	n.t.Helper()
	from := n.resyncs.Load()
	waitFor(n.t, "resyncs", func() bool { return n.resyncs.Load() >= from+k })
}

// status is what the plane holds of key; never nil.
func (n *testNode) status(key string) types.GroupStatus {
	if st := n.plane.Status(key); st != nil {
		return *st
	}
	return types.GroupStatus{}
}

// containerStatus is the reported status of container name of key.
func (n *testNode) containerStatus(key, name string) types.ContainerStatus {
	st := n.status(key)
	if cs := st.Container(name); cs != nil {
		return *cs
	}
	return types.ContainerStatus{}
}

// waitRunning waits for g to be reported Running and every container of
// it to run.
func (n *testNode) waitRunning(g types.ContainerGroup) {
	n.t.Helper()
	waitFor(n.t, g.Name+" reported Running", func() bool {
		st := n.status(g.Key())
		if st.UID != g.UID || st.State != types.GroupRunning || st.ObservedGeneration != g.Generation {
			return false
		}
		for _, c := range g.Spec.Containers {
			if n.containerState(g, c.Name) != runtime.StatusRunning {
				return false
			}
		}
		return true
	})
}

// id is the runtime's id of container name of g.
func (n *testNode) id(g types.ContainerGroup, name string) string {
	return n.rt.ContainerID(g.UID, name)
}

// containerState is what the runtime says of container name of g; ""
// when there is no such container.
func (n *testNode) containerState(g types.ContainerGroup, name string) runtime.Status {
	info, ok := n.rt.Get(n.id(g, name))
	if !ok {
		return ""
	}
	return info.Status
}

// testGroup is a group of one container per name, all of image img,
// under policy; generation 1.
func testGroup(name, uid, policy string, containers ...string) types.ContainerGroup {
	g := types.ContainerGroup{
		Subscription: "sub", ResourceGroup: "rg", Name: name, UID: uid, Generation: 1,
		Spec: types.GroupSpec{OSType: "Linux", RestartPolicy: policy},
	}
	for _, c := range containers {
		g.Spec.Containers = append(g.Spec.Containers, types.Container{Name: c, Image: "img:v1"})
	}
	return g
}

// quiet reports whether no pass over key runs or waits in the queue.
func (n *testNode) quiet(key string) bool { return n.a.ctl.Queue().Idle(key) }
