package agent

import (
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/types"
)

func code(c int32) *int32 { return &c }

func TestContainerState(t *testing.T) {
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	end := start.Add(time.Minute)
	tests := []struct {
		name string
		info runtime.Info
		want types.ContainerState
	}{
		{"a running task is Running since it started",
			runtime.Info{Status: "running", StartedAt: start},
			types.ContainerState{State: "Running", StartTime: start}},
		{"a task that exited 0 is Terminated and Completed",
			runtime.Info{Status: "stopped", StartedAt: start, ExitedAt: end, ExitCode: 0},
			types.ContainerState{State: "Terminated", StartTime: start, FinishTime: end, ExitCode: code(0), DetailStatus: "Completed"}},
		{"a killed task is Terminated with 137 and Error",
			runtime.Info{Status: "stopped", StartedAt: start, ExitedAt: end, ExitCode: 137},
			types.ContainerState{State: "Terminated", StartTime: start, FinishTime: end, ExitCode: code(137), DetailStatus: "Error"}},
		{"a created task that has not started is Waiting",
			runtime.Info{Status: "created"},
			types.ContainerState{State: "Waiting"}},
		{"a container without task is Waiting",
			runtime.Info{Status: "unknown"},
			types.ContainerState{State: "Waiting"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := containerState(tt.info)
			if got.State != tt.want.State || !got.StartTime.Equal(tt.want.StartTime) || !got.FinishTime.Equal(tt.want.FinishTime) ||
				got.DetailStatus != tt.want.DetailStatus || (got.ExitCode == nil) != (tt.want.ExitCode == nil) ||
				(got.ExitCode != nil && *got.ExitCode != *tt.want.ExitCode) {
				t.Errorf("containerState() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestGroupState(t *testing.T) {
	running := types.ContainerStatus{Current: types.ContainerState{State: "Running"}}
	waiting := types.ContainerStatus{Current: types.ContainerState{State: "Waiting"}}
	ok := types.ContainerStatus{Current: types.ContainerState{State: "Terminated", ExitCode: code(0)}}
	bad := types.ContainerStatus{Current: types.ContainerState{State: "Terminated", ExitCode: code(2)}}
	tests := []struct {
		name       string
		policy     string
		containers []types.ContainerStatus
		want       string
	}{
		{"no containers reported yet is Pending", types.RestartAlways, nil, "Pending"},
		{"all running is Running", types.RestartNever, []types.ContainerStatus{running, running}, "Running"},
		{"one still waiting is Pending", types.RestartNever, []types.ContainerStatus{waiting, ok}, "Pending"},
		{"one running and one ended is Running", types.RestartNever, []types.ContainerStatus{running, bad}, "Running"},
		{"all ended well under Never is Succeeded", types.RestartNever, []types.ContainerStatus{ok, ok}, "Succeeded"},
		{"one failure under Never is Failed", types.RestartNever, []types.ContainerStatus{ok, bad}, "Failed"},
		{"all ended under Always is Running: they restart", types.RestartAlways, []types.ContainerStatus{ok}, "Running"},
		{"a failure under OnFailure is Running: it restarts", types.RestartOnFailure, []types.ContainerStatus{bad}, "Running"},
		{"success under OnFailure is Succeeded", types.RestartOnFailure, []types.ContainerStatus{ok}, "Succeeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := groupState(tt.policy, tt.containers); got != tt.want {
				t.Errorf("groupState() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRestartDue(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	ended := func(c int32, ago time.Duration) types.ContainerState {
		return types.ContainerState{State: "Terminated", ExitCode: code(c), FinishTime: now.Add(-ago)}
	}
	tests := []struct {
		name     string
		policy   string
		st       types.ContainerState
		restarts int32
		want     bool
		wait     time.Duration
	}{
		{"running never restarts", types.RestartAlways, types.ContainerState{State: "Running"}, 0, false, 0},
		{"Never does not restart a failure", types.RestartNever, ended(1, time.Hour), 0, false, 0},
		{"OnFailure does not restart success", types.RestartOnFailure, ended(0, time.Hour), 0, false, 0},
		{"OnFailure restarts a failure after the back-off", types.RestartOnFailure, ended(1, time.Minute), 0, true, 0},
		{"Always waits out the first 10 s back-off", types.RestartAlways, ended(0, 4*time.Second), 0, true, 6 * time.Second},
		{"the back-off doubles per restart", types.RestartAlways, ended(0, 0), 2, true, 40 * time.Second},
		{"the back-off is capped at 5 minutes", types.RestartAlways, ended(0, 0), 30, true, 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, wait := restartDue(tt.policy, tt.st, tt.restarts, now)
			if got != tt.want || wait != tt.wait {
				t.Errorf("restartDue() = %v, %v; want %v, %v", got, wait, tt.want, tt.wait)
			}
		})
	}
}
