package runtime

import (
	"context"
	"fmt"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
)

// Status is the state of a container's task.
type Status string

const (
	// StatusCreated: the task exists and was never started.
	StatusCreated Status = "created"
	// StatusRunning: the task runs.
	StatusRunning Status = "running"
	// StatusStopped: the task exited; Info has its exit code and time.
	StatusStopped Status = "stopped"
	// StatusUnknown: the container has no task (HasTask is false: it was
	// never created, or was lost with containerd's state, e.g. on a
	// reboot), or the task is paused or in a state containerd cannot tell.
	StatusUnknown Status = "unknown"
)

// Info is a container and its task as containerd sees them.
type Info struct {
	ID     string
	Labels map[string]string
	Status Status
	// HasTask tells a container without a task from one whose task is in an
	// unknown state.
	HasTask bool
	// OOMKilled tells, for a stopped container, that the kernel's OOM
	// killer killed one of its processes, in the container's own memory
	// cgroup or in its sandbox's (see oomVerdict); ExitCode is then 137.
	OOMKilled bool
	// Pid is the task's init process; 0 without a task.
	Pid uint32
	// ExitCode and ExitedAt are set when Status is "stopped". A process
	// killed by a signal exits with 128+signal (137 for SIGKILL).
	ExitCode uint32
	ExitedAt time.Time
	// StartedAt comes from the io.berth.started-at label; zero if the
	// container was never started.
	StartedAt time.Time
	CreatedAt time.Time
}

// Exit is how a task ended.
type Exit struct {
	Code uint32
	At   time.Time
}

// List returns every container in the namespace with the state of its
// task, in two calls to containerd whatever their number. Sandbox
// containers are not listed (see LabelSandbox).
func (r *Runtime) List(ctx context.Context) ([]Info, error) {
	ctx = r.ctx(ctx)
	ctrs, err := r.client.ContainerService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	resp, err := r.client.TaskService().List(ctx, &tasksapi.ListTasksRequest{})
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", errgrpc.ToNative(err))
	}
	tasks := make(map[string]*tasktypes.Process, len(resp.Tasks))
	for _, t := range resp.Tasks {
		tasks[t.ID] = t
	}
	infos := make([]Info, 0, len(ctrs))
	for _, c := range ctrs {
		if _, ok := c.Labels[LabelSandbox]; ok {
			continue
		}
		infos = append(infos, r.oomVerdict(info(c, tasks[c.ID])))
	}
	return infos, nil
}

// Get is List for one container; a missing one is errdefs.ErrNotFound.
func (r *Runtime) Get(ctx context.Context, id string) (Info, error) {
	ctx = r.ctx(ctx)
	c, err := r.client.ContainerService().Get(ctx, id)
	if err != nil {
		return Info{}, fmt.Errorf("container %s: %w", id, err)
	}
	resp, err := r.client.TaskService().Get(ctx, &tasksapi.GetRequest{ContainerID: id})
	if err != nil {
		// The task service is the raw gRPC client: its errors need
		// translating before they can be classified.
		err = errgrpc.ToNative(err)
		if errdefs.IsNotFound(err) {
			return info(c, nil), nil
		}
		return Info{}, fmt.Errorf("task of %s: %w", id, err)
	}
	return r.oomVerdict(info(c, resp.Process)), nil
}

func info(c containers.Container, p *tasktypes.Process) Info {
	i := Info{ID: c.ID, Labels: c.Labels, Status: StatusUnknown, CreatedAt: c.CreatedAt}
	if s := c.Labels[LabelStartedAt]; s != "" {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			i.StartedAt = t
		}
	}
	if p == nil {
		return i
	}
	i.HasTask = true
	i.Pid = p.Pid
	switch p.Status {
	case tasktypes.Status_CREATED:
		i.Status = StatusCreated
	case tasktypes.Status_RUNNING:
		i.Status = StatusRunning
	case tasktypes.Status_STOPPED:
		i.Status = StatusStopped
		i.ExitCode = p.ExitStatus
		if p.ExitedAt != nil {
			i.ExitedAt = p.ExitedAt.AsTime()
		}
	}
	return i
}

// Wait returns a channel that yields the exit of the task of id once, then
// closes; it works as well for a task that an earlier Runtime (before an
// agent restart) started, and yields at once for one that has exited
// already. The channel closes without a value when ctx ends or the wait
// breaks (containerd went away): the caller should look again with List.
func (r *Runtime) Wait(ctx context.Context, id string) (<-chan Exit, error) {
	ctx = r.ctx(ctx)
	ctr, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("task of %s: %w", id, err)
	}
	statusC, err := task.Wait(ctx)
	if err != nil {
		return nil, fmt.Errorf("wait for %s: %w", id, err)
	}
	out := make(chan Exit, 1)
	go func() {
		defer close(out)
		select {
		case st, ok := <-statusC:
			if !ok || st.Error() != nil {
				return
			}
			out <- Exit{Code: st.ExitCode(), At: st.ExitTime()}
		case <-ctx.Done():
		}
	}()
	return out, nil
}
