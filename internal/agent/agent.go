// Package agent is Berth's node agent: it realises the container groups of
// its node on containerd and CNI, and reports what it sees. Every pass is
// level-triggered: it compares the desired group with what runs and
// converges, so a missed event or a restart of the agent never loses work.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/agent/network"
	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/types"
)

// ControlPlane is how the agent reads desired state and reports status.
// The in-process agent gets a store-backed one; a remote agent will get one
// that speaks to the API.
type ControlPlane interface {
	ListGroups(ctx context.Context) ([]types.ContainerGroup, error)
	// GetGroup returns nil when the group does not exist.
	GetGroup(ctx context.Context, key string) (*types.ContainerGroup, error)
	// Changes yields the keys of groups that changed; "" asks for a full resync.
	Changes(ctx context.Context) <-chan string
	// GetStatus returns nil when no status was reported.
	GetStatus(ctx context.Context, key string) (*types.GroupStatus, error)
	PutStatus(ctx context.Context, key string, st *types.GroupStatus) error
	// RemoveGroup deletes this incarnation of the group and its status.
	RemoveGroup(ctx context.Context, g *types.ContainerGroup) error
}

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
	Isolation() runtime.Isolation
	Describe() string
}

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
	Plane   ControlPlane
	Runtime containerRuntime
	Network groupNetwork
	// Firewall filters traffic to the groups; nil leaves it unfiltered
	// (tests of other parts). (issue 5)
	Firewall groupFirewall
	// Dir holds per-group files (hosts, resolv.conf) and container logs.
	Dir    string
	Logger *slog.Logger
	// Resync is how often every group is checked even without events.
	Resync time.Duration
	// StopGrace is how long a container gets between SIGTERM and SIGKILL.
	StopGrace time.Duration
	Workers   int
	// UserNS is the node's user namespace range (issue 7, userns.go):
	// group volumes belong to its root. Nil when containers run without.
	UserNS *runtime.IDRange
}

// Agent realises container groups on one node.
type Agent struct {
	opts  Options
	log   *slog.Logger
	queue *queue
	now   func() time.Time

	mu            sync.Mutex
	waiting       map[string]bool // container ids with an exit watcher
	pendingEvents map[string][]pendingEvent
	probes        probeSet

	// Firewall sync (issue 5, firewall.go).
	fwMu    sync.Mutex
	fwKnown map[string]string // group UID -> IP covered by the applied rules
	fwKick  chan struct{}
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
	return &Agent{opts: opts, log: opts.Logger, queue: newQueue(), now: time.Now, waiting: map[string]bool{}, pendingEvents: map[string][]pendingEvent{}, fwKick: make(chan struct{}, 1)}
}

// Run reconciles until ctx ends. Containers keep running when it returns:
// the next agent adopts them.
func (a *Agent) Run(ctx context.Context) error {
	defer a.queue.close()
	var wg sync.WaitGroup
	for range a.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.work(ctx)
		}()
	}
	changes := a.opts.Plane.Changes(ctx)
	// Rebuild the firewall before anything else, from what is on disk:
	// a restarted agent has its rules back before the first pass.
	if err := a.syncFirewall(ctx); err != nil {
		a.log.Warn("sync firewall at start", "err", err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.runFirewall(ctx)
	}()
	a.resync(ctx)
	tick := time.NewTicker(a.opts.Resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			a.queue.close()
			wg.Wait()
			return nil
		case key, ok := <-changes:
			if !ok {
				changes = a.opts.Plane.Changes(ctx)
				continue
			}
			if key == "" {
				a.resync(ctx)
			} else {
				a.queue.add(key)
			}
		case <-tick.C:
			a.resync(ctx)
			if a.opts.Firewall != nil {
				a.opts.Firewall.Invalidate() // repair drift, e.g. a table deleted by hand
			}
			a.kickFirewall()
		}
	}
}

// resync queues every desired group and every group something is left of,
// so leftovers without a desired group get collected.
func (a *Agent) resync(ctx context.Context) {
	// The node's inventory first, the desired groups second. A group's
	// node-local state (netns, sandbox, files, logs) is made only once the
	// group is in the store, so whatever the inventory holds belongs to a
	// group that the later listing shows, unless that group is really gone.
	// The other order would collect the namespace of a group created
	// between the two listings, in the middle of its setup.
	infos, err := a.opts.Runtime.List(ctx)
	if err != nil {
		a.log.Warn("list containers", "err", err)
		return
	}
	sandboxes, err := a.opts.Runtime.Sandboxes(ctx)
	if err != nil {
		a.log.Warn("list sandboxes", "err", err)
	}
	netnsIDs, err := a.opts.Network.List()
	if err != nil {
		a.log.Warn("list network namespaces", "err", err)
	}
	groupDirs := dirNames(filepath.Join(a.opts.Dir, "groups"))
	logDirs := dirNames(filepath.Join(a.opts.Dir, "logs"))

	groups, err := a.opts.Plane.ListGroups(ctx)
	if err != nil {
		a.log.Warn("list groups", "err", err)
		return
	}
	live := map[string]bool{}
	for _, g := range groups {
		live[g.UID] = true
		a.queue.add(g.Key())
	}
	for _, info := range infos {
		if k := info.Labels[runtime.LabelGroup]; k != "" {
			a.queue.add(k)
		}
		if uid := info.Labels[runtime.LabelGroupUID]; uid != "" {
			live[uid] = true // its netns goes when its container goes
		}
	}
	// A sandbox, netns or log dir whose group is gone, and that no
	// container uses: left by a crash between teardown steps. A sandbox
	// goes first: it holds the netns.
	for _, uid := range sandboxes {
		if !live[uid] {
			a.log.Info("collecting sandbox without group", "uid", uid)
			if err := a.opts.Runtime.RemoveSandbox(ctx, uid); err != nil {
				a.log.Warn("collect sandbox", "uid", uid, "err", err)
			}
		}
	}
	for _, id := range netnsIDs {
		if !live[id] {
			a.log.Info("collecting network namespace without group", "uid", id)
			if err := a.opts.Network.Teardown(ctx, id); err != nil {
				a.log.Warn("collect network namespace", "uid", id, "err", err)
			}
		}
	}
	for _, uid := range groupDirs {
		if !live[uid] {
			if err := a.removeGroupDir(uid); err != nil {
				a.log.Warn("collect group files", "uid", uid, "err", err)
			}
		}
	}
	for _, uid := range logDirs {
		if !live[uid] {
			_ = os.RemoveAll(filepath.Join(a.opts.Dir, "logs", uid))
		}
	}
}

// dirNames lists the entries of dir; a missing dir has none.
func dirNames(dir string) []string {
	entries, _ := os.ReadDir(dir)
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func (a *Agent) work(ctx context.Context) {
	for {
		key, ok := a.queue.get()
		if !ok {
			return
		}
		if err := a.reconcile(ctx, key); err != nil && ctx.Err() == nil {
			a.log.Warn("reconcile failed; retrying", "group", key, "err", err)
			a.after(ctx, 2*time.Second, key)
		}
		a.kickFirewall()
		a.queue.done(key)
	}
}

// after queues key again once d has passed.
func (a *Agent) after(ctx context.Context, d time.Duration, key string) {
	time.AfterFunc(d, func() {
		if ctx.Err() == nil {
			a.queue.add(key)
		}
	})
}

// runKey names one run of a group: a new generation (an update or a
// start) or a restart request begins a new run with fresh containers.
func runKey(g *types.ContainerGroup) string {
	return fmt.Sprintf("%d.%d", g.Generation, g.Restarts)
}

// reconcile converges one group.
func (a *Agent) reconcile(ctx context.Context, key string) error {
	g, err := a.opts.Plane.GetGroup(ctx, key)
	if err != nil {
		return err
	}
	infos, err := a.opts.Runtime.List(ctx)
	if err != nil {
		return err
	}
	var mine []runtime.Info
	for _, info := range infos {
		if info.Labels[runtime.LabelGroup] == key {
			mine = append(mine, info)
		}
	}
	if g == nil || g.Deleting {
		if err := a.teardown(ctx, mine, ""); err != nil {
			return err
		}
		if g != nil {
			// A group that failed before any container existed still holds
			// its network namespace and IP.
			if err := a.releaseGroup(ctx, g.UID); err != nil {
				return err
			}
			a.log.Info("group deleted", "group", key)
			return a.opts.Plane.RemoveGroup(ctx, g)
		}
		return nil
	}

	st, err := a.opts.Plane.GetStatus(ctx, key)
	if err != nil {
		return err
	}
	if st == nil || st.UID != g.UID {
		st = &types.GroupStatus{UID: g.UID, ProvisioningState: types.ProvisioningCreating}
	}
	// Containers of an older incarnation, an older run, or of a stopped
	// group go; the group's network stays unless the group stopped.
	var stale, current []runtime.Info
	for _, info := range mine {
		if g.Stopped || info.Labels[runtime.LabelGroupUID] != g.UID || info.Labels[runtime.LabelRun] != runKey(g) {
			stale = append(stale, info)
			if info.Labels[runtime.LabelGroupUID] == g.UID {
				a.killing(st, info)
			}
		} else {
			current = append(current, info)
		}
	}
	if err := a.teardown(ctx, stale, g.UID); err != nil {
		return err
	}
	if g.Stopped {
		return a.stopped(ctx, g, st)
	}
	return a.ensure(ctx, g, st, current)
}

// killing records that a container of the group is being stopped.
func (a *Agent) killing(st *types.GroupStatus, info runtime.Info) {
	name := info.Labels[runtime.LabelContainer]
	cs := st.Container(name)
	if cs == nil {
		return
	}
	if cs.Current.State == types.ContainerRunning {
		cs.Events = types.AddEvent(cs.Events, a.now().UTC(), "Killing", "Killing container with id "+info.ID+".", "Normal")
		prev := cs.Current
		cs.Previous = &prev
		code := int32(137)
		cs.Current = types.ContainerState{State: types.ContainerTerminated, StartTime: prev.StartTime, FinishTime: a.now().UTC(), ExitCode: &code, DetailStatus: "Killed"}
	}
	cs.Ready = false
}

// stopped frees a stopped group's node resources (network and volumes;
// logs stay) and reports it Stopped.
func (a *Agent) stopped(ctx context.Context, g *types.ContainerGroup, st *types.GroupStatus) error {
	if err := a.opts.Runtime.RemoveSandbox(ctx, g.UID); err != nil {
		return fmt.Errorf("remove sandbox of %s: %w", g.UID, err)
	}
	if err := a.opts.Network.Teardown(ctx, g.UID); err != nil {
		return fmt.Errorf("tear down network of %s: %w", g.UID, err)
	}
	if err := a.removeGroupDir(g.UID); err != nil {
		return err
	}
	if st.State == types.GroupStopped {
		return nil
	}
	st.State = types.GroupStopped
	st.IP = ""
	st.InitRun = ""
	st.Events = types.AddEvent(st.Events, a.now().UTC(), "Stopped", "Stopped container group", "Normal")
	a.log.Info("group stopped", "group", g.Key())
	return a.report(ctx, g.Key(), st)
}

// teardown removes containers and, for every group incarnation they
// belonged to other than keep, the network namespace and files.
func (a *Agent) teardown(ctx context.Context, infos []runtime.Info, keep string) error {
	uids := map[string]bool{}
	var errs []error
	for _, info := range infos {
		uids[info.Labels[runtime.LabelGroupUID]] = true
		a.stopProbes(info.ID)
		if err := a.opts.Runtime.Remove(ctx, info.ID, a.opts.StopGrace); err != nil {
			errs = append(errs, fmt.Errorf("remove container %s: %w", info.ID, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for uid := range uids {
		if uid == keep {
			continue
		}
		if err := a.releaseGroup(ctx, uid); err != nil {
			return err
		}
	}
	return nil
}

// releaseGroup frees what a group incarnation holds besides containers.
func (a *Agent) releaseGroup(ctx context.Context, uid string) error {
	if uid == "" {
		return nil
	}
	// The sandbox holds the network namespace's addresses: it goes first.
	if err := a.opts.Runtime.RemoveSandbox(ctx, uid); err != nil {
		return fmt.Errorf("remove sandbox of %s: %w", uid, err)
	}
	if err := a.opts.Network.Teardown(ctx, uid); err != nil {
		return fmt.Errorf("tear down network of %s: %w", uid, err)
	}
	if err := a.removeGroupDir(uid); err != nil {
		return err
	}
	return os.RemoveAll(filepath.Join(a.opts.Dir, "logs", uid))
}

func (a *Agent) groupDir(uid string) string { return filepath.Join(a.opts.Dir, "groups", uid) }

// LogPath is where a container's output goes.
func (a *Agent) LogPath(uid, container string) string {
	return filepath.Join(a.opts.Dir, "logs", uid, container+".log")
}

// containerID names a container in containerd: unique per group
// incarnation and within containerd's 76-character limit.
func containerID(uid, name string) string {
	return uid[:12] + "-" + name
}

// containerID is the package's containerID, except under sandboxed
// isolation: runsc finds a container by id prefix and takes "…-web" for
// "…-web2" as well, so there ids end in "_s", which no other id of the
// group can continue (names hold no "_"), and lose two digits of the uid
// to stay within the limit.
func (a *Agent) containerID(uid, name string) string {
	if a.opts.Runtime.Isolation() == runtime.IsolationSandboxed {
		return uid[:10] + "-" + name + "_s"
	}
	return containerID(uid, name)
}

// ensure brings a group to its desired state and reports it.
func (a *Agent) ensure(ctx context.Context, g *types.ContainerGroup, st *types.GroupStatus, current []runtime.Info) error {
	key := g.Key()
	if st.ObservedGeneration == g.Generation && st.ProvisioningState == types.ProvisioningFailed {
		return nil // a failed deployment stays failed until the user changes the group
	}
	if st.ObservedGeneration < g.Generation {
		st.ProvisioningState = types.ProvisioningCreating
		st.ErrorCode, st.ErrorMessage = "", ""
	}
	byID := map[string]runtime.Info{}
	for _, info := range current {
		byID[info.ID] = info
	}

	fail := func(code, msg string) error {
		st.ProvisioningState = types.ProvisioningFailed
		st.ObservedGeneration = g.Generation
		st.ObservedRestarts = g.Restarts
		st.ErrorCode, st.ErrorMessage = code, msg
		st.State = types.GroupFailed
		st.Events = types.AddEvent(st.Events, a.now().UTC(), "Failed", msg, "Warning")
		a.log.Warn("group deployment failed", "group", key, "code", code, "err", msg)
		return a.report(ctx, key, st)
	}

	att, err := a.opts.Network.SetupIn(ctx, g.UID, placement(g))
	if err != nil {
		return fail("NetworkSetupFailed", fmt.Sprintf("Setting up the network of container group '%s' failed: %v", g.Name, err))
	}
	// No container starts before the firewall knows the group's address.
	if !a.firewallCovers(g.UID, att.IP) {
		if err := a.syncFirewall(ctx); err != nil {
			return err
		}
	}
	st.IP = att.IP
	a.reportIsolation(st)
	if err := a.writeGroupFiles(g, att); err != nil {
		return err
	}
	if err := a.prepareVolumes(ctx, g); err != nil {
		var fe *failure
		if errors.As(err, &fe) {
			return fail(fe.code, fe.msg)
		}
		return err
	}

	var requeue time.Duration
	wake := func(d time.Duration) {
		if d > 0 && (requeue == 0 || d < requeue) {
			requeue = d
		}
	}

	// Init containers run one after the other, each to success, before any
	// main container starts.
	run := runKey(g)
	if st.InitRun != run {
		st.InitRun, st.InitCompleted = run, 0
	}
	for st.InitCompleted < len(g.Spec.InitContainers) {
		c := &g.Spec.InitContainers[st.InitCompleted]
		cs := a.containerStatus(st, c.Name, true)
		id := a.containerID(g.UID, c.Name)
		info, exists := byID[id]
		if !exists {
			if err := a.startContainer(ctx, g, c, cs, att, initResources(g)); err != nil {
				return a.startFailed(err, fail)
			}
			a.watch(ctx, key, id)
			break
		}
		cs.Current = a.observe(info, cs)
		if cs.Current.State != types.ContainerTerminated {
			a.watch(ctx, key, id)
			break
		}
		if *cs.Current.ExitCode == 0 {
			if err := a.opts.Runtime.Remove(ctx, id, a.opts.StopGrace); err != nil {
				return err
			}
			st.InitCompleted++
			continue
		}
		restart, wait := restartDue(g.Spec.RestartPolicy, cs.Current, cs.RestartCount, a.now())
		if !restart {
			return fail("InitContainerFailed", fmt.Sprintf("The init container '%s' of container group '%s' exited with code %d.", c.Name, g.Name, *cs.Current.ExitCode))
		}
		if wait > 0 {
			cs.Events = types.AddEvent(cs.Events, a.now().UTC(), "BackOff", "Back-off restarting failed container", "Warning")
			wake(wait)
			break
		}
		if err := a.opts.Runtime.Remove(ctx, id, a.opts.StopGrace); err != nil {
			return err
		}
		cs.RestartCount++
		if err := a.startContainer(ctx, g, c, cs, att, initResources(g)); err != nil {
			return a.startFailed(err, fail)
		}
		a.watch(ctx, key, id)
		break
	}
	if st.InitCompleted < len(g.Spec.InitContainers) {
		st.State = types.GroupPending
		wake(requeue)
		if requeue > 0 {
			a.after(ctx, requeue, key)
		}
		return a.report(ctx, key, st)
	}

	for i := range g.Spec.Containers {
		c := &g.Spec.Containers[i]
		cs := a.containerStatus(st, c.Name, false)
		id := a.containerID(g.UID, c.Name)
		info, exists := byID[id]
		if exists {
			cs.Current = a.observe(info, cs)
			if a.unhealthy(id) && cs.Current.State == types.ContainerRunning {
				// A failed liveness probe kills the container; the restart
				// policy decides what follows.
				cs.Events = types.AddEvent(cs.Events, a.now().UTC(), "Killing", "Container "+c.Name+" failed liveness probe, will be restarted", "Normal")
				a.stopProbes(id)
				if err := a.opts.Runtime.Remove(ctx, id, a.opts.StopGrace); err != nil {
					return err
				}
				code := int32(137)
				cs.Current = types.ContainerState{State: types.ContainerTerminated, StartTime: cs.Current.StartTime, FinishTime: a.now().UTC(), ExitCode: &code, DetailStatus: "Unhealthy"}
				exists = false
				if g.Spec.RestartPolicy == types.RestartNever {
					cs.Ready = false
					continue
				}
			}
		}
		if exists {
			restart, wait := restartDue(g.Spec.RestartPolicy, cs.Current, cs.RestartCount, a.now())
			if !restart {
				cs.Ready = cs.Current.State == types.ContainerRunning && a.ready(id, c)
				if cs.Current.State == types.ContainerRunning {
					a.ensureProbes(ctx, key, id, c, st.IP)
				}
				a.watch(ctx, key, id)
				continue
			}
			cs.Ready = false
			if wait > 0 {
				cs.Events = types.AddEvent(cs.Events, a.now().UTC(), "BackOff", "Back-off restarting failed container", "Warning")
				wake(wait)
				continue
			}
			a.stopProbes(id)
			if err := a.opts.Runtime.Remove(ctx, id, a.opts.StopGrace); err != nil {
				return err
			}
			cs.RestartCount++
		} else if cs.Current.State == types.ContainerTerminated && cs.Current.DetailStatus == "Unhealthy" {
			if restart, wait := restartDue(g.Spec.RestartPolicy, cs.Current, cs.RestartCount, a.now()); !restart {
				continue
			} else if wait > 0 {
				wake(wait)
				continue
			}
			cs.RestartCount++
		}
		if err := a.startContainer(ctx, g, c, cs, att, c.Resources.Effective()); err != nil {
			return a.startFailed(err, fail)
		}
		cs.Ready = a.ready(id, c)
		a.ensureProbes(ctx, key, id, c, st.IP)
		a.watch(ctx, key, id)
	}

	st.State = groupState(g.Spec.RestartPolicy, mainStatuses(st))
	if st.ObservedGeneration < g.Generation || st.ObservedRestarts < g.Restarts || st.ProvisioningState != types.ProvisioningSucceeded {
		st.ProvisioningState = types.ProvisioningSucceeded
		st.ObservedGeneration = g.Generation
		st.ObservedRestarts = g.Restarts
		a.log.Info("group running", "group", key, "ip", st.IP)
	}
	if requeue > 0 {
		a.after(ctx, requeue, key)
	}
	return a.report(ctx, key, st)
}

// reportIsolation records, once per group incarnation, the isolation
// level its containers run under as an event of the group (ACI's model has
// no field for it), so that `berth container show` tells it.
func (a *Agent) reportIsolation(st *types.GroupStatus) {
	for _, e := range st.Events {
		if e.Name == EventIsolation {
			return
		}
	}
	st.Events = types.AddEvent(st.Events, a.now().UTC(), EventIsolation, a.opts.Runtime.Describe(), "Normal")
}

// EventIsolation names the group event that tells the isolation level
// of the group's containers.
const EventIsolation = "Isolation"

// containerStatus returns the status entry of a container, adding it.
func (a *Agent) containerStatus(st *types.GroupStatus, name string, init bool) *types.ContainerStatus {
	if cs := st.Container(name); cs != nil {
		return cs
	}
	st.Containers = append(st.Containers, types.ContainerStatus{Name: name, Init: init, Current: types.ContainerState{State: types.ContainerWaiting}})
	return &st.Containers[len(st.Containers)-1]
}

// mainStatuses are the statuses of the main containers, which alone decide
// the group's state.
func mainStatuses(st *types.GroupStatus) []types.ContainerStatus {
	var out []types.ContainerStatus
	for _, c := range st.Containers {
		if !c.Init {
			out = append(out, c)
		}
	}
	return out
}

// observe maps what containerd reports, noting an out-of-memory kill the
// way ACI does: exit code 137 and an event.
func (a *Agent) observe(info runtime.Info, cs *types.ContainerStatus) types.ContainerState {
	state := containerState(info)
	if state.State == types.ContainerTerminated && *state.ExitCode == 137 && (info.OOMKilled || oomKilled(info.ID)) {
		state.DetailStatus = "OOMKilled"
		if cs.Current.State != types.ContainerTerminated || cs.Current.DetailStatus != "OOMKilled" || !cs.Current.FinishTime.Equal(state.FinishTime) {
			cs.Events = types.AddEvent(cs.Events, a.now().UTC(), "OOMKilled",
				"Container "+cs.Name+" exceeded its memory limit and was killed", "Warning")
		}
	}
	return state
}

// initResources is what an init container may use: the group's limits.
func initResources(g *types.ContainerGroup) types.ResourceList {
	var total types.ResourceList
	for _, c := range g.Spec.Containers {
		l := c.Resources.Effective()
		total.CPU += l.CPU
		total.MemoryGB += l.MemoryGB
	}
	return total
}

// startFailed fails the group for a user error and retries anything else.
func (a *Agent) startFailed(err error, fail func(code, msg string) error) error {
	var fe *failure
	if errors.As(err, &fe) {
		return fail(fe.code, fe.msg)
	}
	return err
}

// failure is a deployment error the user has to fix: it fails the group
// instead of being retried.
type failure struct{ code, msg string }

func (f *failure) Error() string { return f.code + ": " + f.msg }

func (a *Agent) startContainer(ctx context.Context, g *types.ContainerGroup, c *types.Container, cs *types.ContainerStatus, att network.Attachment, lim types.ResourceList) error {
	now := func() time.Time { return a.now().UTC() }
	if cs.Current.State == types.ContainerTerminated {
		prev := cs.Current
		cs.Previous = &prev
	}
	cs.Current = types.ContainerState{State: types.ContainerWaiting}
	cs.Events = types.AddEvent(cs.Events, now(), "Pulling", fmt.Sprintf("pulling image %q", c.Image), "Normal")
	if err := a.pull(ctx, c.Image, g.Spec.Registries); err != nil {
		msg := fmt.Sprintf("The image '%s' in container group '%s' is not accessible. Please check the image and registry credential. (%v)", c.Image, g.Name, err)
		cs.Events = types.AddEvent(cs.Events, now(), "Failed", msg, "Warning")
		return &failure{code: "InaccessibleImage", msg: msg}
	}
	cs.Events = types.AddEvent(cs.Events, now(), "Pulled", fmt.Sprintf("Successfully pulled image %q", c.Image), "Normal")

	id := a.containerID(g.UID, c.Name)
	env := make([]string, 0, len(c.Env))
	for _, e := range c.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	logPath := a.LogPath(g.UID, c.Name)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return err
	}
	dir := a.groupDir(g.UID)
	group := initResources(g) // the group's total, which bounds a sandbox
	spec := runtime.ContainerSpec{
		ID:          id,
		Image:       c.Image,
		Args:        c.Command,
		Env:         env,
		CPU:         lim.CPU,
		MemoryBytes: int64(lim.MemoryGB * (1 << 30)),
		NetNSPath:   att.NetNSPath,
		UserNSPath:  att.UserNSPath,
		Hostname:    g.Name,
		Mounts: append([]runtime.Mount{
			{Source: filepath.Join(dir, "hosts"), Destination: "/etc/hosts", ReadOnly: true},
			{Source: filepath.Join(dir, "resolv.conf"), Destination: "/etc/resolv.conf", ReadOnly: true},
		}, a.containerMounts(g, c)...),
		LogPath:          logPath,
		GroupCPU:         group.CPU,
		GroupMemoryBytes: int64(group.MemoryGB * (1 << 30)),
		Labels: map[string]string{
			runtime.LabelGroup:      g.Key(),
			runtime.LabelGroupUID:   g.UID,
			runtime.LabelContainer:  c.Name,
			runtime.LabelGeneration: fmt.Sprint(g.Generation),
			runtime.LabelRun:        runKey(g),
		},
		ShimGroup: g.UID,
	}
	if err := a.opts.Runtime.Create(ctx, spec); err != nil {
		if errdefs.IsAlreadyExists(err) {
			// Left by an interrupted pass: start over from a clean container.
			if err := a.opts.Runtime.Remove(ctx, id, a.opts.StopGrace); err != nil {
				return err
			}
			err = a.opts.Runtime.Create(ctx, spec)
		}
		if err != nil {
			return &failure{code: "ContainerCreateFailed", msg: fmt.Sprintf("Creating container '%s' in container group '%s' failed: %v", c.Name, g.Name, err)}
		}
	}
	cs.Events = types.AddEvent(cs.Events, now(), "Created", "Created container", "Normal")
	if err := a.opts.Runtime.Start(ctx, id); err != nil {
		return &failure{code: "ContainerStartFailed", msg: fmt.Sprintf("Starting container '%s' in container group '%s' failed: %v", c.Name, g.Name, err)}
	}
	cs.Events = types.AddEvent(cs.Events, now(), "Started", "Started container", "Normal")
	cs.Current = types.ContainerState{State: types.ContainerRunning, StartTime: now()}
	return nil
}

// pull retries transient registry failures a few times; a missing image or
// refused credentials fail at once.
func (a *Agent) pull(ctx context.Context, image string, creds []types.RegistryCredential) error {
	auth := make([]runtime.RegistryAuth, 0, len(creds))
	for _, c := range creds {
		auth = append(auth, runtime.RegistryAuth{Server: c.Server, Username: c.Username, Password: c.Password})
	}
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * time.Second):
			}
		}
		err = a.opts.Runtime.Pull(ctx, image, auth)
		if err == nil || errdefs.IsNotFound(err) || errdefs.IsUnauthorized(err) || errdefs.IsPermissionDenied(err) {
			return err
		}
	}
	return err
}

// watch makes sure an exit of container id queues its group.
func (a *Agent) watch(ctx context.Context, key, id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.waiting[id] {
		return
	}
	ch, err := a.opts.Runtime.Wait(ctx, id)
	if err != nil {
		a.log.Warn("watch container", "container", id, "err", err)
		return
	}
	a.waiting[id] = true
	go func() {
		select {
		case <-ch:
		case <-ctx.Done():
		}
		a.mu.Lock()
		delete(a.waiting, id)
		a.mu.Unlock()
		if ctx.Err() == nil {
			a.queue.add(key)
		}
	}()
}

func (a *Agent) report(ctx context.Context, key string, st *types.GroupStatus) error {
	a.takeEvents(key, st)
	st.UpdatedAt = a.now().UTC()
	for i := range st.Containers {
		st.Containers[i].Events = lastEvents(st.Containers[i].Events)
	}
	st.Events = lastEvents(st.Events)
	return a.opts.Plane.PutStatus(ctx, key, st)
}

// lastEvents keeps instance views small: the newest 50 events.
func lastEvents(ev []types.Event) []types.Event {
	const keep = 50
	if len(ev) > keep {
		return ev[len(ev)-keep:]
	}
	return ev
}
