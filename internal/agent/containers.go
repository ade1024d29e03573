package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/agent/network"
	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/types"
)

// failure is a deployment error the user has to fix: it fails the group
// instead of being retried.
type failure struct{ code, msg string }

func (f *failure) Error() string { return f.code + ": " + f.msg }

// pass is one pass over a group that is to run: what it wants, the status
// the pass updates, its network, and its containers of the current run.
type pass struct {
	key  string
	g    *types.ContainerGroup
	st   *types.GroupStatus
	att  network.Attachment
	byID map[string]runtime.Info
}

// ensure brings a group to its desired state and reports it; requeue is
// how soon a back-off runs out.
func (a *Agent) ensure(ctx context.Context, g *types.ContainerGroup, st *types.GroupStatus, current []runtime.Info) (requeue time.Duration, err error) {
	if st.ObservedGeneration == g.Generation && st.ProvisioningState == types.ProvisioningFailed {
		return 0, nil // a failed deployment stays failed until the user changes the group
	}
	if st.ObservedGeneration < g.Generation {
		st.ProvisioningState = types.ProvisioningCreating
		st.ErrorCode, st.ErrorMessage = "", ""
	}
	att, err := a.prepare(ctx, g, st)
	if err != nil {
		return 0, a.failed(ctx, g, st, err)
	}
	p := &pass{key: g.Key(), g: g, st: st, att: att, byID: map[string]runtime.Info{}}
	for _, info := range current {
		p.byID[info.ID] = info
	}

	requeue, err = a.syncInit(ctx, p)
	if err != nil {
		return 0, a.failed(ctx, g, st, err)
	}
	if st.InitCompleted < len(g.Spec.InitContainers) {
		st.State = types.GroupPending
		return requeue, a.report(ctx, p.key, st)
	}
	requeue, err = a.syncMain(ctx, p)
	if err != nil {
		return 0, a.failed(ctx, g, st, err)
	}
	st.State = groupState(g.Spec.RestartPolicy, mainStatuses(st))
	if st.ObservedGeneration < g.Generation || st.ObservedRestarts < g.Restarts || st.ProvisioningState != types.ProvisioningSucceeded {
		st.ProvisioningState = types.ProvisioningSucceeded
		st.ObservedGeneration = g.Generation
		st.ObservedRestarts = g.Restarts
		a.log.Info("group running", "group", p.key, "ip", st.IP)
	}
	return requeue, a.report(ctx, p.key, st)
}

// prepare makes what the group's containers share: the network (and the
// firewall rules for its address), the hosts and resolv.conf files, and
// the volumes.
func (a *Agent) prepare(ctx context.Context, g *types.ContainerGroup, st *types.GroupStatus) (network.Attachment, error) {
	att, err := a.opts.Network.SetupIn(ctx, g.UID, placement(g))
	if err != nil {
		return att, &failure{code: "NetworkSetupFailed", msg: fmt.Sprintf("Setting up the network of container group '%s' failed: %v", g.Name, err)}
	}
	// No container starts before the firewall knows the group's address.
	if !a.firewallCovers(g.UID, att.IP) {
		if err := a.syncFirewall(ctx); err != nil {
			return att, err
		}
	}
	st.IP = att.IP
	a.reportIsolation(st)
	if err := a.writeGroupFiles(g, att); err != nil {
		return att, err
	}
	return att, a.prepareVolumes(ctx, g)
}

// failed fails the group's deployment for a *failure and reports it; any
// other error is returned as it is, to be retried.
func (a *Agent) failed(ctx context.Context, g *types.ContainerGroup, st *types.GroupStatus, err error) error {
	var fe *failure
	if !errors.As(err, &fe) {
		return err
	}
	st.ProvisioningState = types.ProvisioningFailed
	st.ObservedGeneration = g.Generation
	st.ObservedRestarts = g.Restarts
	st.ErrorCode, st.ErrorMessage = fe.code, fe.msg
	st.State = types.GroupFailed
	a.groupEvent(st, eventWarning, "Failed", fe.msg)
	a.log.Warn("group deployment failed", "group", g.Key(), "code", fe.code, "error", fe.msg)
	return a.report(ctx, g.Key(), st)
}

// syncInit runs the init containers one after the other, each to success,
// before any main container starts: it moves st.InitCompleted on past
// the ones that succeeded and starts (or restarts) the next. It returns
// how soon a back-off runs out.
func (a *Agent) syncInit(ctx context.Context, p *pass) (time.Duration, error) {
	g, st := p.g, p.st
	if run := runKey(g); st.InitRun != run {
		st.InitRun, st.InitCompleted = run, 0
	}
	for st.InitCompleted < len(g.Spec.InitContainers) {
		c := &g.Spec.InitContainers[st.InitCompleted]
		cs := a.containerStatus(st, c.Name, true)
		id := a.opts.Runtime.ContainerID(g.UID, c.Name)
		info, exists := p.byID[id]
		if !exists {
			return 0, a.run(ctx, p, c, cs, initResources(g))
		}
		cs.Current = a.observe(info, cs)
		if cs.Current.State != types.ContainerTerminated {
			a.watch(ctx, p.key, id)
			return 0, nil
		}
		if *cs.Current.ExitCode == 0 {
			if err := a.opts.Runtime.Remove(ctx, id, a.opts.StopGrace); err != nil {
				return 0, err
			}
			st.InitCompleted++
			continue
		}
		restart, wait := restartDue(g.Spec.RestartPolicy, cs.Current, cs.RestartCount, a.now())
		if !restart {
			return 0, &failure{code: "InitContainerFailed", msg: fmt.Sprintf("The init container '%s' of container group '%s' exited with code %d.", c.Name, g.Name, *cs.Current.ExitCode)}
		}
		if wait > 0 {
			a.containerEvent(cs, eventWarning, "BackOff", msgBackOff)
			return wait, nil
		}
		if err := a.opts.Runtime.Remove(ctx, id, a.opts.StopGrace); err != nil {
			return 0, err
		}
		cs.RestartCount++
		return 0, a.run(ctx, p, c, cs, initResources(g))
	}
	return 0, nil
}

// syncMain runs the main containers, restarting them under the group's
// restart policy. It returns how soon the first back-off runs out.
func (a *Agent) syncMain(ctx context.Context, p *pass) (time.Duration, error) {
	var requeue time.Duration
	for i := range p.g.Spec.Containers {
		wait, err := a.syncContainer(ctx, p, &p.g.Spec.Containers[i])
		if err != nil {
			return 0, err
		}
		if wait > 0 && (requeue == 0 || wait < requeue) {
			requeue = wait
		}
	}
	return requeue, nil
}

// syncContainer brings one main container to what its state and the
// restart policy call for: left alone while it runs (or ended for good),
// restarted once its back-off ran out, started when it is not there. It
// returns how long the back-off still runs.
func (a *Agent) syncContainer(ctx context.Context, p *pass, c *types.Container) (time.Duration, error) {
	policy := p.g.Spec.RestartPolicy
	cs := a.containerStatus(p.st, c.Name, false)
	id := a.opts.Runtime.ContainerID(p.g.UID, c.Name)
	info, exists := p.byID[id]
	if exists {
		cs.Current = a.observe(info, cs)
		if a.unhealthy(id) && cs.Current.State == types.ContainerRunning {
			// A failed liveness probe kills the container; the restart
			// policy decides what follows.
			if err := a.killUnhealthy(ctx, c, cs, id); err != nil {
				return 0, err
			}
			if policy == types.RestartNever {
				cs.Ready = false
				return 0, nil
			}
			exists = false
		}
	}
	switch {
	case exists:
		restart, wait := restartDue(policy, cs.Current, cs.RestartCount, a.now())
		if !restart {
			running := cs.Current.State == types.ContainerRunning
			cs.Ready = running && a.ready(id, c)
			if running {
				a.ensureProbes(ctx, p.key, id, c, p.st.IP)
			}
			a.watch(ctx, p.key, id)
			return 0, nil
		}
		cs.Ready = false
		if wait > 0 {
			a.containerEvent(cs, eventWarning, "BackOff", msgBackOff)
			return wait, nil
		}
		a.stopProbes(id)
		if err := a.opts.Runtime.Remove(ctx, id, a.opts.StopGrace); err != nil {
			return 0, err
		}
		cs.RestartCount++
	case cs.Current.State == types.ContainerTerminated && cs.Current.DetailStatus == detailUnhealthy:
		// Killed for its liveness probe, by this pass or an earlier one.
		restart, wait := restartDue(policy, cs.Current, cs.RestartCount, a.now())
		if !restart {
			return 0, nil
		}
		if wait > 0 {
			return wait, nil
		}
		cs.RestartCount++
	}
	if err := a.run(ctx, p, c, cs, c.Resources.Effective()); err != nil {
		return 0, err
	}
	cs.Ready = a.ready(id, c)
	a.ensureProbes(ctx, p.key, id, c, p.st.IP)
	return 0, nil
}

// killUnhealthy removes a container whose liveness probe failed.
func (a *Agent) killUnhealthy(ctx context.Context, c *types.Container, cs *types.ContainerStatus, id string) error {
	a.containerEvent(cs, eventNormal, "Killing", "Container "+c.Name+" failed liveness probe, will be restarted")
	a.stopProbes(id)
	if err := a.opts.Runtime.Remove(ctx, id, a.opts.StopGrace); err != nil {
		return err
	}
	cs.Current = a.killedState(cs.Current.StartTime, detailUnhealthy)
	return nil
}

// run starts container c and watches for its exit.
func (a *Agent) run(ctx context.Context, p *pass, c *types.Container, cs *types.ContainerStatus, lim types.ResourceList) error {
	if err := a.startContainer(ctx, p.g, c, cs, p.att, lim); err != nil {
		return err
	}
	a.watch(ctx, p.key, a.opts.Runtime.ContainerID(p.g.UID, c.Name))
	return nil
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

// startContainer pulls the image, then creates and starts the container,
// recording each step as an event; a user error is a *failure.
func (a *Agent) startContainer(ctx context.Context, g *types.ContainerGroup, c *types.Container, cs *types.ContainerStatus, att network.Attachment, lim types.ResourceList) error {
	if cs.Current.State == types.ContainerTerminated {
		prev := cs.Current
		cs.Previous = &prev
	}
	cs.Current = types.ContainerState{State: types.ContainerWaiting}
	a.containerEvent(cs, eventNormal, "Pulling", fmt.Sprintf("pulling image %q", c.Image))
	if err := a.pull(ctx, c.Image, g.Spec.Registries); err != nil {
		msg := fmt.Sprintf("The image '%s' in container group '%s' is not accessible. Please check the image and registry credential. (%v)", c.Image, g.Name, err)
		a.containerEvent(cs, eventWarning, "Failed", msg)
		return &failure{code: "InaccessibleImage", msg: msg}
	}
	a.containerEvent(cs, eventNormal, "Pulled", fmt.Sprintf("Successfully pulled image %q", c.Image))

	paths := a.containerPaths(g.UID, c.Name)
	if err := os.MkdirAll(filepath.Dir(paths.log), 0o700); err != nil {
		return err
	}
	spec := containerSpec(g, c, att, lim, paths)
	if err := a.opts.Runtime.Create(ctx, spec); err != nil {
		if errdefs.IsAlreadyExists(err) {
			// Left by an interrupted pass: start over from a clean container.
			if err := a.opts.Runtime.Remove(ctx, spec.ID, a.opts.StopGrace); err != nil {
				return err
			}
			err = a.opts.Runtime.Create(ctx, spec)
		}
		if err != nil {
			return &failure{code: "ContainerCreateFailed", msg: fmt.Sprintf("Creating container '%s' in container group '%s' failed: %v", c.Name, g.Name, err)}
		}
	}
	a.containerEvent(cs, eventNormal, "Created", "Created container")
	if err := a.opts.Runtime.Start(ctx, spec.ID); err != nil {
		return &failure{code: "ContainerStartFailed", msg: fmt.Sprintf("Starting container '%s' in container group '%s' failed: %v", c.Name, g.Name, err)}
	}
	a.containerEvent(cs, eventNormal, "Started", "Started container")
	cs.Current = types.ContainerState{State: types.ContainerRunning, StartTime: a.utcNow()}
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
		a.log.Warn("watch container", "container_id", id, "error", err)
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
			a.enqueue(key)
		}
	}()
}
