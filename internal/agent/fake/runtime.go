package fake

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/agent/runtime"
)

// Runtime is an in-memory container runtime with the semantics of
// runtime.Runtime that the agent relies on: Create needs a pulled image and
// refuses an existing id, Wait yields an exit once (at once for a
// container that has exited), Remove is idempotent, and List reports
// labels, states, exit codes and times. Containers run until the test
// ends them with Exit or OOMKill. It is safe for concurrent use.
type Runtime struct {
	mu         sync.Mutex
	now        func() time.Time
	isolation  runtime.Isolation
	containers map[string]*container
	sandboxes  map[string]bool
	pulled     map[string]bool
	pullErrs   map[string]error
	createErrs map[string]error
	execs      map[string]execResult
	pulls      []string
	removed    []string
	sbRemoved  []string
	execCalls  []ExecCall
}

type execResult struct {
	code   uint32
	output string
}

// ExecCall is one Exec the runtime ran.
type ExecCall struct {
	Container string
	Args      []string
}

type container struct {
	spec      runtime.ContainerSpec
	status    runtime.Status
	exitCode  uint32
	oom       bool
	createdAt time.Time
	startedAt time.Time
	exitedAt  time.Time
	waiters   []*waiter
}

// waiter is one Wait: it yields one exit, or none when its context ends.
type waiter struct {
	once sync.Once
	ch   chan runtime.Exit
	done chan struct{}
}

func (w *waiter) finish(ex *runtime.Exit) {
	w.once.Do(func() {
		if ex != nil {
			w.ch <- *ex
		}
		close(w.ch)
		close(w.done)
	})
}

// NewRuntime returns an empty runtime under runc isolation that tells time
// by now (time.Now when nil).
func NewRuntime(now func() time.Time) *Runtime {
	if now == nil {
		now = time.Now
	}
	return &Runtime{
		now:        now,
		isolation:  runtime.IsolationRunc,
		containers: map[string]*container{},
		sandboxes:  map[string]bool{},
		pulled:     map[string]bool{},
		pullErrs:   map[string]error{},
		createErrs: map[string]error{},
		execs:      map[string]execResult{},
	}
}

// SetIsolation sets the isolation level; under IsolationSandboxed, Create
// makes a sandbox per shim group, as runtime.Runtime does.
func (r *Runtime) SetIsolation(iso runtime.Isolation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.isolation = iso
}

// FailPull makes pulls of ref fail with err; nil lets them succeed again.
func (r *Runtime) FailPull(ref string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		delete(r.pullErrs, ref)
		return
	}
	r.pullErrs[ref] = err
}

// FailCreate makes Create of container id fail with err; nil lets it
// succeed again.
func (r *Runtime) FailCreate(id string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		delete(r.createErrs, id)
		return
	}
	r.createErrs[id] = err
}

// SetExec makes every exec in container id print output and exit with
// code (0 and nothing until set).
func (r *Runtime) SetExec(id string, code uint32, output string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.execs[id] = execResult{code: code, output: output}
}

// Exit ends the running (or created) container id with code.
func (r *Runtime) Exit(id string, code uint32) error { return r.exit(id, code, false) }

// OOMKill ends container id as the kernel's OOM killer does: code 137,
// and Info.OOMKilled set, as runtime.Runtime finds it in the cgroup.
func (r *Runtime) OOMKill(id string) error { return r.exit(id, 137, true) }

func (r *Runtime) exit(id string, code uint32, oom bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	if c.status == runtime.StatusStopped {
		return fmt.Errorf("container %s has exited already: %w", id, errdefs.ErrFailedPrecondition)
	}
	c.status, c.exitCode, c.oom, c.exitedAt = runtime.StatusStopped, code, oom, r.now().UTC()
	c.notify()
	return nil
}

// notify hands the exit to every Wait.
func (c *container) notify() {
	ex := runtime.Exit{Code: c.exitCode, At: c.exitedAt}
	for _, w := range c.waiters {
		w.finish(&ex)
	}
	c.waiters = nil
}

// Spec returns what container id was created from.
func (r *Runtime) Spec(id string) (runtime.ContainerSpec, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return runtime.ContainerSpec{}, false
	}
	return c.spec, true
}

// Get returns what List says of container id.
func (r *Runtime) Get(id string) (runtime.Info, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return runtime.Info{}, false
	}
	return c.info(id), true
}

// IDs returns the ids of the containers there are, sorted.
func (r *Runtime) IDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.containers))
}

// Pulls returns the references pulled, in order, failed pulls included.
func (r *Runtime) Pulls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.pulls)
}

// Removed returns the ids that Remove removed, in order.
func (r *Runtime) Removed() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.removed)
}

// RemovedSandboxes returns the groups whose sandbox RemoveSandbox removed,
// in order.
func (r *Runtime) RemovedSandboxes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sbRemoved)
}

// Execs returns the execs run, in order.
func (r *Runtime) Execs() []ExecCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.execCalls)
}

// AddSandbox adds the sandbox of a shim group, as a crash may leave one.
func (r *Runtime) AddSandbox(group string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sandboxes[group] = true
}

// Pull makes ref available to Create, unless FailPull made it fail.
func (r *Runtime) Pull(_ context.Context, ref string, _ []runtime.RegistryAuth) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pulls = append(r.pulls, ref)
	if err := r.pullErrs[ref]; err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	r.pulled[ref] = true
	return nil
}

// Create makes a container whose task waits to be started.
func (r *Runtime) Create(_ context.Context, spec runtime.ContainerSpec) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if spec.ID == "" {
		return fmt.Errorf("container id is required: %w", errdefs.ErrInvalidArgument)
	}
	if _, ok := r.containers[spec.ID]; ok {
		return fmt.Errorf("container %s: %w", spec.ID, errdefs.ErrAlreadyExists)
	}
	if !r.pulled[spec.Image] {
		return fmt.Errorf("container %s: image %s: %w", spec.ID, spec.Image, errdefs.ErrNotFound)
	}
	if err := r.createErrs[spec.ID]; err != nil {
		return fmt.Errorf("create container %s: %w", spec.ID, err)
	}
	if r.isolation == runtime.IsolationSandboxed {
		if spec.ShimGroup == "" {
			return fmt.Errorf("container %s: sandboxed isolation needs a shim group: %w", spec.ID, errdefs.ErrInvalidArgument)
		}
		r.sandboxes[spec.ShimGroup] = true
	}
	spec.Labels = maps.Clone(spec.Labels)
	r.containers[spec.ID] = &container{spec: spec, status: runtime.StatusCreated, createdAt: r.now().UTC()}
	return nil
}

// Start runs a created container.
func (r *Runtime) Start(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	if c.status != runtime.StatusCreated {
		return fmt.Errorf("start %s: task is %s: %w", id, c.status, errdefs.ErrFailedPrecondition)
	}
	c.status, c.startedAt = runtime.StatusRunning, r.now().UTC()
	return nil
}

// List returns every container, in id order.
func (r *Runtime) List(context.Context) ([]runtime.Info, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]runtime.Info, 0, len(r.containers))
	for _, id := range slices.Sorted(maps.Keys(r.containers)) {
		out = append(out, r.containers[id].info(id))
	}
	return out, nil
}

func (c *container) info(id string) runtime.Info {
	i := runtime.Info{
		ID:        id,
		Labels:    maps.Clone(c.spec.Labels),
		Status:    c.status,
		HasTask:   true,
		StartedAt: c.startedAt,
		CreatedAt: c.createdAt,
	}
	switch c.status {
	case runtime.StatusRunning:
		i.Pid = 1
	case runtime.StatusStopped:
		i.ExitCode, i.ExitedAt, i.OOMKilled = c.exitCode, c.exitedAt, c.oom
	}
	return i
}

// Wait yields the exit of container id once, then closes; at once for one
// that has exited. It closes without a value when ctx ends.
func (r *Runtime) Wait(ctx context.Context, id string) (<-chan runtime.Exit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	w := &waiter{ch: make(chan runtime.Exit, 1), done: make(chan struct{})}
	if c.status == runtime.StatusStopped {
		w.finish(&runtime.Exit{Code: c.exitCode, At: c.exitedAt})
		return w.ch, nil
	}
	c.waiters = append(c.waiters, w)
	go func() {
		select {
		case <-ctx.Done():
			w.finish(nil)
		case <-w.done:
		}
	}()
	return w.ch, nil
}

// Remove kills container id (its waiters see 137) and deletes it; a
// missing one counts as removed.
func (r *Runtime) Remove(_ context.Context, id string, _ time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return nil
	}
	if c.status != runtime.StatusStopped {
		c.status, c.exitCode, c.exitedAt = runtime.StatusStopped, 137, r.now().UTC()
		c.notify()
	}
	delete(r.containers, id)
	r.removed = append(r.removed, id)
	return nil
}

// Exec runs nothing: it prints and returns what SetExec set for the
// container.
func (r *Runtime) Exec(_ context.Context, id string, spec runtime.ExecSpec) (uint32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return 0, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	if c.status != runtime.StatusRunning {
		return 0, fmt.Errorf("container %s does not run: %w", id, errdefs.ErrFailedPrecondition)
	}
	r.execCalls = append(r.execCalls, ExecCall{Container: id, Args: slices.Clone(spec.Args)})
	res := r.execs[id]
	if spec.Output != nil && res.output != "" {
		if _, err := io.WriteString(spec.Output, res.output); err != nil {
			return 0, err
		}
	}
	return res.code, nil
}

// RemoveSandbox removes the sandbox of group; a missing one counts as
// removed.
func (r *Runtime) RemoveSandbox(_ context.Context, group string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sandboxes[group] {
		delete(r.sandboxes, group)
		r.sbRemoved = append(r.sbRemoved, group)
	}
	return nil
}

// Sandboxes lists the groups that have a sandbox, sorted.
func (r *Runtime) Sandboxes(context.Context) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.sandboxes)), nil
}

// Isolation is the isolation level SetIsolation set.
func (r *Runtime) Isolation() runtime.Isolation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.isolation
}

// Describe says it is a fake.
func (r *Runtime) Describe() string { return "isolation: fake (" + string(r.Isolation()) + ")" }

// ContainerID names a container differently from runtime.Runtime, so that
// a caller that makes ids itself instead of asking shows up in tests.
func (r *Runtime) ContainerID(uid, name string) string { return "fake-" + uid + "-" + name }
