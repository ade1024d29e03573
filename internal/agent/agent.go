// Package agent is Berth's node agent: it realises the container groups of
// its node on containerd and CNI, and reports what it sees. Every pass is
// level-triggered: it compares the desired group with what runs and
// converges, so a missed event or a restart of the agent never loses work.
//
// The files, top down:
//   - agent.go: what the agent needs of the world (ControlPlane, the
//     runtime, the network), New, Run, the node's lease, and the passes
//     over groups on the controller library (internal/controller);
//   - reconcile.go: one pass over one group, and tearing groups down;
//   - containers.go: running a group's containers (init containers, then
//     main containers, restarts and back-off, pulls, exit watchers);
//   - spec.go: the runtime.ContainerSpec of a container, pure;
//   - status.go: the instance view (states, events) and its reporting;
//   - gc.go: the periodic resync, which collects leftovers of gone groups;
//   - cluster.go: routes and firewall rules for the groups of other nodes;
//   - service.go: logs, exec and attach of the node's groups for the API;
//   - probe.go, volumes.go, files.go, groupdir.go, firewall.go, streams.go:
//     probes, volumes, per-group files, the firewall, exec and attach.
package agent

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/agent/network"
	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/types"
)

// ControlPlane is the agent's view of the control plane, shaped like a
// node's: it registers the node and keeps its lease, watches the groups
// bound to the node, and reports what it sees of them. The in-process
// agent gets one over the store (nodeplane.Local), a remote agent one
// over the API (nodeplane.Remote); both pass one conformance test.
type ControlPlane interface {
	// Register records the node (capacity, addresses, ...) and renews its
	// lease; the answer tells how often to renew.
	Register(ctx context.Context, n types.Node) (types.ClusterInfo, error)
	RenewLease(ctx context.Context) error
	// Assigned is the source of the groups bound to this node.
	Assigned() controller.Source[types.ContainerGroup]
	// LastStatus returns nil when no status was reported.
	LastStatus(ctx context.Context, key string) (*types.GroupStatus, error)
	// ReportStatus fails with errdefs.ErrFailedPrecondition once the
	// group is no longer this incarnation bound to this node.
	ReportStatus(ctx context.Context, key string, st *types.GroupStatus) error
	// ReportTornDown says nothing is left of a deleted group here; the
	// control plane then finalises the delete.
	ReportTornDown(ctx context.Context, key, uid string) error
}

// desiredGroups is what the agent knows of the groups bound to it: the
// informer over ControlPlane.Assigned, or a fixed set in tests.
type desiredGroups interface {
	Get(key string) (types.ContainerGroup, bool)
	List() []controller.Item[types.ContainerGroup]
}

// containerRuntime runs containers; runtime.Runtime, or fake.Runtime in
// tests.
type containerRuntime interface {
	Pull(ctx context.Context, ref string, auth []runtime.RegistryAuth) error
	Create(ctx context.Context, spec runtime.ContainerSpec) error
	Start(ctx context.Context, id string) error
	List(ctx context.Context) ([]runtime.Info, error)
	Wait(ctx context.Context, id string) (<-chan runtime.Exit, error)
	Remove(ctx context.Context, id string, grace time.Duration) error
	Exec(ctx context.Context, id string, spec runtime.ExecSpec) (uint32, error)
	// Sandboxes (sandboxed isolation): RemoveSandbox goes before the
	// group's network, Sandboxes lists the groups that have one.
	RemoveSandbox(ctx context.Context, group string) error
	Sandboxes(ctx context.Context) ([]string, error)
	// ContainerID names a container of a group incarnation; only the
	// runtime knows what its isolation level allows.
	ContainerID(uid, name string) string
	Describe() string
}

// groupNetwork attaches groups to the node's networks; network.Manager,
// or fake.Network in tests.
type groupNetwork interface {
	SetupIn(ctx context.Context, id string, p *network.Placement) (network.Attachment, error)
	Attached(id string) (network.Attachment, bool, error)
	Teardown(ctx context.Context, id string) error
	List() ([]string, error)
	// Subnet is the public bridge's subnet.
	Subnet() netip.Prefix
}

var (
	_ containerRuntime = (*runtime.Runtime)(nil)
	_ groupNetwork     = (*network.Manager)(nil)
)

// Options configure an Agent.
type Options struct {
	Plane ControlPlane
	// Node is what the agent registers of its node; its Name is required
	// when Plane is set.
	Node    types.Node
	Runtime containerRuntime
	Network groupNetwork
	// Firewall filters traffic to the groups; nil leaves it unfiltered
	// (tests of other parts).
	Firewall groupFirewall
	// Dir holds per-group files (hosts, resolv.conf) and container logs.
	Dir    string
	Logger *slog.Logger
	// Resync is how often every group is checked even without events.
	Resync time.Duration
	// StopGrace is how long a container gets between SIGTERM and SIGKILL.
	StopGrace time.Duration
	Workers   int
	// UserNS is the node's user namespace range (userns.go): group
	// volumes belong to its root. Nil when containers run without.
	UserNS *runtime.IDRange

	// The cluster around the node: its name, every group's endpoint and
	// every node. They feed the routes to groups on other nodes and the
	// firewall's view of the whole cluster; nil sources leave the agent
	// a single node's view (its own groups only).
	NodeName  string
	Endpoints controller.Source[types.Endpoint]
	Nodes     controller.Source[types.Node]
}

// retryDelay is how soon a group whose pass failed is tried again first;
// it doubles up to five times that while the pass keeps failing.
const retryDelay = 2 * time.Second

// Agent realises container groups on one node.
type Agent struct {
	opts Options
	log  *slog.Logger
	// ctl runs the passes over groups: one at a time per group, merged
	// when asked for again meanwhile, retried with back-off.
	ctl *controller.Controller
	now func() time.Time
	// groups are the groups bound to the node, fed by Plane.Assigned.
	groups   desiredGroups
	informer *controller.Informer[types.ContainerGroup]
	// statuses is what the agent last reported of each group.
	statuses statuses

	mu            sync.Mutex
	waiting       map[string]bool // container ids with an exit watcher
	pendingEvents map[string][]pendingEvent
	probes        probeSet

	// Firewall sync (firewall.go).
	fwMu    sync.Mutex
	fwKnown map[string]string // group UID -> IP covered by the applied rules
	fwCtl   *controller.Controller
}

// New returns an agent; Run starts it.
func New(opts Options) *Agent {
	if opts.Resync == 0 {
		opts.Resync = 10 * time.Second
	}
	if opts.StopGrace == 0 {
		opts.StopGrace = 10 * time.Second
	}
	if opts.Workers == 0 {
		opts.Workers = 4
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &Agent{
		opts:          opts,
		log:           opts.Logger,
		now:           time.Now,
		waiting:       map[string]bool{},
		pendingEvents: map[string][]pendingEvent{},
	}
	a.fwCtl = a.newFirewallController()
	a.ctl = controller.New("agent", controller.ReconcileFunc(a.pass), controller.Options{
		Workers: opts.Workers, Logger: opts.Logger, Backoff: controller.Backoff{Base: retryDelay, Max: 5 * retryDelay}})
	if opts.Plane != nil {
		a.informer = controller.NewInformer(opts.Plane.Assigned(), controller.InformerOptions{Name: "assigned-groups", Logger: opts.Logger})
		a.informer.OnChange(func(ch controller.Change[types.ContainerGroup]) { a.enqueue(ch.Key) })
		a.groups = a.informer
	}
	return a
}

// desired lists the groups bound to the node.
func (a *Agent) desired() []types.ContainerGroup {
	items := a.groups.List()
	out := make([]types.ContainerGroup, len(items))
	for i, it := range items {
		out[i] = it.Value
	}
	return out
}

// group returns the group at key if it is bound to the node, else nil.
func (a *Agent) group(key string) *types.ContainerGroup {
	g, ok := a.groups.Get(key)
	if !ok {
		return nil
	}
	return &g
}

// Run registers the node, keeps its lease and reconciles until ctx
// ends. Containers keep running when it returns: the next agent adopts
// them.
func (a *Agent) Run(ctx context.Context) error {
	defer a.ctl.Queue().ShutDown()
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(2)
	go func() {
		defer wg.Done()
		a.informer.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		a.holdLease(ctx)
	}()
	// Nothing is torn down before the first full listing of the groups
	// bound to the node: an agent that cannot reach the control plane
	// leaves its containers running.
	if err := a.informer.WaitSynced(ctx); err != nil {
		return nil
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.ctl.Run(ctx)
	}()
	// Rebuild the firewall before anything else, from what is on disk:
	// a restarted agent has its rules back before the first pass.
	if err := a.syncFirewall(ctx); err != nil {
		a.log.Warn("sync firewall at start", "error", err)
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		a.runFirewall(ctx)
	}()
	go func() {
		defer wg.Done()
		// Routes and firewall rules for the groups of the other nodes.
		if err := a.runCluster(ctx); err != nil {
			a.log.Warn("cluster network", "error", err)
		}
	}()
	a.resync(ctx)
	tick := time.NewTicker(a.opts.Resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			a.resync(ctx)
			if a.opts.Firewall != nil {
				a.opts.Firewall.Invalidate() // repair drift, e.g. a table deleted by hand
			}
			a.kickFirewall()
		}
	}
}

// holdLease registers the node, retrying until the control plane
// answers, then renews its lease as often as the control plane asks. A
// failed renewal is retried at the next tick: the lease's TTL is a few
// renewals long, so one lost request does not make the node NotReady.
func (a *Agent) holdLease(ctx context.Context) {
	n := a.opts.Node
	var info types.ClusterInfo
	for {
		var err error
		if info, err = a.opts.Plane.Register(ctx, n); err == nil {
			break
		}
		a.log.Warn("register node; retrying", "node", n.Name, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retryDelay):
		}
	}
	a.log.Info("node registered", "node", n.Name, "lease_renew_s", info.LeaseRenewSeconds)
	every := time.Duration(max(1, info.LeaseRenewSeconds)) * time.Second
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := a.opts.Plane.RenewLease(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("renew lease", "node", n.Name, "error", err)
			}
		}
	}
}

// pass reconciles one group for the controller. A pass that asks for
// another one later (a back-off running out) gets it then; a failed pass
// is retried with the controller's back-off. The firewall follows every
// pass: a group attached or released changes its rules.
func (a *Agent) pass(ctx context.Context, key string) (controller.Result, error) {
	requeue, err := a.reconcile(ctx, key)
	a.kickFirewall()
	return controller.Result{RequeueAfter: requeue}, err
}

// enqueue asks for a pass over the group at key.
func (a *Agent) enqueue(key string) { a.ctl.Enqueue(key) }

// utcNow is the agent's clock, in UTC as the instance view shows time.
func (a *Agent) utcNow() time.Time { return a.now().UTC() }
