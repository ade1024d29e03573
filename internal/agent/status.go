package agent

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/types"
)

// Event types, as ACI reports them.
const (
	eventNormal  = "Normal"
	eventWarning = "Warning"
)

// EventIsolation names the group event that tells the isolation level
// of the group's containers.
const EventIsolation = "Isolation"

const msgBackOff = "Back-off restarting failed container"

// Detail statuses of a terminated container.
const (
	detailCompleted = "Completed"
	detailError     = "Error"
	// detailKilled: the agent stopped it (a stop, restart or update).
	detailKilled = "Killed"
	// detailUnhealthy: the agent killed it for its liveness probe.
	detailUnhealthy = "Unhealthy"
	detailOOMKilled = "OOMKilled"
)

// exitKilled is the exit code of a process killed by SIGKILL (128+9),
// which ACI also reports for an OOM kill.
const exitKilled int32 = 137

// statuses is the agent's memory of the status it last reported for each
// group: a pass starts from it, not from what the control plane holds.
// It keeps copies, so that a pass that fails half-way leaves the memory as
// the last report made it.
type statuses struct {
	mu sync.Mutex
	m  map[string]*types.GroupStatus
}

// get returns a copy of the status last put for key.
func (s *statuses) get(key string) (*types.GroupStatus, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.m[key]
	if !ok {
		return nil, false
	}
	return cloneStatus(st), true
}

// put remembers a copy of st as the status of key.
func (s *statuses) put(key string, st *types.GroupStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*types.GroupStatus{}
	}
	s.m[key] = cloneStatus(st)
}

// forget drops what is known of key.
func (s *statuses) forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
}

// cloneStatus is a deep copy of st.
func cloneStatus(st *types.GroupStatus) *types.GroupStatus {
	out := *st
	out.Events = slices.Clone(st.Events)
	out.Containers = slices.Clone(st.Containers)
	for i := range out.Containers {
		c := &out.Containers[i]
		c.Events = slices.Clone(c.Events)
		c.Current = cloneState(c.Current)
		if c.Previous != nil {
			prev := cloneState(*c.Previous)
			c.Previous = &prev
		}
	}
	return &out
}

func cloneState(s types.ContainerState) types.ContainerState {
	if s.ExitCode != nil {
		code := *s.ExitCode
		s.ExitCode = &code
	}
	return s
}

// lastStatus is the status a pass over g starts from: the last one
// reported for this incarnation, or a new one. A group the agent has not
// reported since it started is read from the control plane once.
func (a *Agent) lastStatus(ctx context.Context, g *types.ContainerGroup) (*types.GroupStatus, error) {
	st, ok := a.statuses.get(g.Key())
	if !ok {
		var err error
		if st, err = a.opts.Plane.LastStatus(ctx, g.Key()); err != nil {
			return nil, err
		}
	}
	if st == nil || st.UID != g.UID {
		st = &types.GroupStatus{UID: g.UID, ProvisioningState: types.ProvisioningCreating}
	}
	return st, nil
}

// report stamps st and reports it; the agent remembers it once the
// control plane has it.
func (a *Agent) report(ctx context.Context, key string, st *types.GroupStatus) error {
	a.takeEvents(key, st)
	st.UpdatedAt = a.utcNow()
	for i := range st.Containers {
		st.Containers[i].Events = lastEvents(st.Containers[i].Events)
	}
	st.Events = lastEvents(st.Events)
	if err := a.opts.Plane.ReportStatus(ctx, key, st); err != nil {
		if errdefs.IsFailedPrecondition(err) {
			// The group left the node (moved or deleted) since this pass
			// read it; the informer's event brings the pass that stops it.
			a.statuses.forget(key)
			a.log.Info("group no longer bound to the node; report dropped", "group", key)
			return nil
		}
		return err
	}
	a.statuses.put(key, st)
	return nil
}

// tornDown reports that nothing of this incarnation of g is left on the
// node, which finishes its delete.
func (a *Agent) tornDown(ctx context.Context, g *types.ContainerGroup) error {
	if err := a.opts.Plane.ReportTornDown(ctx, g.Key(), g.UID); err != nil {
		return err
	}
	a.statuses.forget(g.Key())
	return nil
}

// lastEvents keeps instance views small: the newest 50 events.
func lastEvents(ev []types.Event) []types.Event {
	const keep = 50
	if len(ev) > keep {
		return ev[len(ev)-keep:]
	}
	return ev
}

// containerEvent records an event of a container at the agent's clock.
func (a *Agent) containerEvent(cs *types.ContainerStatus, typ, name, msg string) {
	cs.Events = types.AddEvent(cs.Events, a.utcNow(), name, msg, typ)
}

// groupEvent records an event of the group at the agent's clock.
func (a *Agent) groupEvent(st *types.GroupStatus, typ, name, msg string) {
	st.Events = types.AddEvent(st.Events, a.utcNow(), name, msg, typ)
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
	a.groupEvent(st, eventNormal, EventIsolation, a.opts.Runtime.Describe())
}

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

// observe maps what the runtime reports, noting an out-of-memory kill the
// way ACI does: exit code 137 and an event, once per kill.
func (a *Agent) observe(info runtime.Info, cs *types.ContainerStatus) types.ContainerState {
	state := containerState(info)
	if state.State == types.ContainerTerminated && *state.ExitCode == exitKilled && info.OOMKilled {
		state.DetailStatus = detailOOMKilled
		if cs.Current.State != types.ContainerTerminated || cs.Current.DetailStatus != detailOOMKilled || !cs.Current.FinishTime.Equal(state.FinishTime) {
			a.containerEvent(cs, eventWarning, "OOMKilled", "Container "+cs.Name+" exceeded its memory limit and was killed")
		}
	}
	return state
}

// killedState is the state of a container the agent killed, which ends
// as SIGKILL ends a process.
func (a *Agent) killedState(started time.Time, detail string) types.ContainerState {
	code := exitKilled
	return types.ContainerState{State: types.ContainerTerminated, StartTime: started, FinishTime: a.utcNow(), ExitCode: &code, DetailStatus: detail}
}

// containerState maps what containerd reports for one container to ACI's
// instance-view state.
func containerState(info runtime.Info) types.ContainerState {
	switch info.Status {
	case runtime.StatusRunning:
		return types.ContainerState{State: types.ContainerRunning, StartTime: info.StartedAt}
	case runtime.StatusStopped:
		code := int32(info.ExitCode)
		detail := detailCompleted
		if code != 0 {
			detail = detailError
		}
		return types.ContainerState{
			State:        types.ContainerTerminated,
			StartTime:    info.StartedAt,
			FinishTime:   info.ExitedAt,
			ExitCode:     &code,
			DetailStatus: detail,
		}
	default:
		return types.ContainerState{State: types.ContainerWaiting}
	}
}

// groupState derives the group's instance-view state from its containers,
// the way ACI does: Running while any container runs or will be restarted,
// and, once all have ended for good, Succeeded only if every one exited 0.
func groupState(policy string, containers []types.ContainerStatus) string {
	if len(containers) == 0 {
		return types.GroupPending
	}
	running, failed, ended := false, false, 0
	for _, c := range containers {
		switch c.Current.State {
		case types.ContainerRunning:
			running = true
		case types.ContainerTerminated:
			ended++
			if c.Current.ExitCode != nil && *c.Current.ExitCode != 0 {
				failed = true
			}
		}
	}
	switch {
	case running:
		return types.GroupRunning
	case ended < len(containers):
		return types.GroupPending
	case policy == types.RestartAlways || (policy == types.RestartOnFailure && failed):
		// The containers will be started again.
		return types.GroupRunning
	case failed:
		return types.GroupFailed
	default:
		return types.GroupSucceeded
	}
}

// Back-off between restarts of a container: 10 s doubling per restart up
// to 5 minutes, as ACI and Kubernetes do.
const (
	backoffBase = 10 * time.Second
	backoffMax  = 5 * time.Minute
)

// restartDue tells whether an ended container should run again under the
// group's restart policy, and after which back-off.
func restartDue(policy string, st types.ContainerState, restarts int32, now time.Time) (restart bool, wait time.Duration) {
	if st.State != types.ContainerTerminated {
		return false, 0
	}
	failed := st.ExitCode != nil && *st.ExitCode != 0
	if policy == types.RestartNever || (policy == types.RestartOnFailure && !failed) {
		return false, 0
	}
	backoff := backoffBase
	for i := int32(0); i < restarts && backoff < backoffMax; i++ {
		backoff *= 2
	}
	backoff = min(backoff, backoffMax)
	if elapsed := now.Sub(st.FinishTime); elapsed < backoff {
		return true, backoff - elapsed
	}
	return true, 0
}
