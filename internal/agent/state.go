package agent

import (
	"time"

	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/types"
)

// containerState maps what containerd reports for one container to ACI's
// instance-view state.
func containerState(info runtime.Info) types.ContainerState {
	switch info.Status {
	case "running":
		return types.ContainerState{State: types.ContainerRunning, StartTime: info.StartedAt}
	case "stopped":
		code := int32(info.ExitCode)
		detail := "Completed"
		if code != 0 {
			detail = "Error"
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

// restartDue tells whether an ended container should run again under the
// group's restart policy, and after which back-off: 10 s doubling per
// restart up to 5 minutes, as ACI and Kubernetes do.
func restartDue(policy string, st types.ContainerState, restarts int32, now time.Time) (restart bool, wait time.Duration) {
	if st.State != types.ContainerTerminated {
		return false, 0
	}
	failed := st.ExitCode != nil && *st.ExitCode != 0
	if policy == types.RestartNever || (policy == types.RestartOnFailure && !failed) {
		return false, 0
	}
	backoff := 10 * time.Second
	for i := int32(0); i < restarts && backoff < 5*time.Minute; i++ {
		backoff *= 2
	}
	backoff = min(backoff, 5*time.Minute)
	if elapsed := now.Sub(st.FinishTime); elapsed < backoff {
		return true, backoff - elapsed
	}
	return true, 0
}
