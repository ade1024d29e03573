package runtime

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// ioDrainTimeout bounds how long Exec waits, after the process exited, for
// the last output to come through the FIFOs; the shim closes them once its
// console copy is done, which is at once unless a child of the process
// still holds the terminal.
const ioDrainTimeout = 2 * time.Second

// ExecSpec is a process that Exec runs in a container.
type ExecSpec struct {
	// ID names the process within the task; unique among its live execs.
	ID string
	// Args is the command and its arguments; Args[0] is looked up in the
	// container's PATH.
	Args []string
	// Rows and Cols size the process's terminal; 0 leaves runc's default.
	Rows, Cols uint16
	// Stdin feeds the terminal. Exec does not close it.
	Stdin io.Reader
	// Output receives the terminal's output (stdout and stderr together,
	// as a TTY merges them).
	Output io.Writer
}

// Exec runs spec in the running task of container id, always with a
// terminal, and returns its exit code once it exits. When ctx ends first
// the process is killed. Whatever happens, the exec process is deleted from
// containerd before Exec returns. A task that does not run is an
// errdefs.ErrFailedPrecondition error; an executable that cannot be
// started fails with the runtime's message.
func (r *Runtime) Exec(ctx context.Context, id string, spec ExecSpec) (code uint32, retErr error) {
	ctx = r.ctx(ctx)
	if spec.ID == "" || len(spec.Args) == 0 || spec.Args[0] == "" {
		return 0, fmt.Errorf("exec in %s: an exec id and a command are required: %w", id, errdefs.ErrInvalidArgument)
	}
	ctr, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("container %s: %w", id, err)
	}
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return 0, fmt.Errorf("container %s has no task: %w", id, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		return 0, fmt.Errorf("task of %s: %w", id, err)
	}
	st, err := task.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("status of %s: %w", id, err)
	}
	if st.Status != client.Running {
		return 0, fmt.Errorf("container %s is %s, not running: %w", id, st.Status, errdefs.ErrFailedPrecondition)
	}
	ociSpec, err := ctr.Spec(ctx)
	if err != nil {
		return 0, fmt.Errorf("spec of %s: %w", id, err)
	}
	proc := specs.Process{Cwd: "/"}
	if ociSpec.Process != nil {
		// The container's user, working directory, environment and
		// capabilities, as docker exec does.
		proc = *ociSpec.Process
		proc.Env = slices.Clone(proc.Env)
	}
	proc.Args = spec.Args
	proc.Terminal = true
	proc.ConsoleSize = nil
	// The terminal's size before the process runs: runc applies it, and
	// so, under gVisor, does Berth's runsc wrapper (shim/runsc), since
	// runsc itself ignores it.
	if spec.Rows > 0 && spec.Cols > 0 {
		proc.ConsoleSize = &specs.Box{Height: uint(spec.Rows), Width: uint(spec.Cols)}
	}
	if !slices.ContainsFunc(proc.Env, func(e string) bool { return strings.HasPrefix(e, "TERM=") }) {
		proc.Env = append(proc.Env, "TERM=xterm")
	}

	creator := cio.NewCreator(
		cio.WithStreams(spec.Stdin, spec.Output, nil),
		cio.WithTerminal,
		cio.WithFIFODir(filepath.Join(r.opts.StateDir, "fifo")),
	)
	p, err := task.Exec(ctx, spec.ID, &proc, creator)
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", id, err)
	}
	defer func() {
		// Runs on a detached context: a client that went away must not
		// leave the process in the shim.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if _, err := p.Delete(cctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			slog.WarnContext(ctx, "delete exec process", "container_id", id, "exec_id", spec.ID, "error", err)
			if retErr == nil {
				retErr = fmt.Errorf("delete exec process %s: %w", spec.ID, err)
			}
		}
	}()
	// Wait is set up before Start so that a quick exit is not missed.
	wctx, cancelWait := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWait()
	exited, err := p.Wait(wctx)
	if err != nil {
		return 0, fmt.Errorf("wait for exec in %s: %w", id, err)
	}
	// Started on a detached context: a client that goes away during the
	// start would leave the process started in the shim but not in the
	// shim's books (gVisor's), where no kill reaches it. Its departure is
	// handled below, once the process runs.
	sctx, cancelStart := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	err = p.Start(sctx)
	cancelStart()
	if err != nil {
		return 0, fmt.Errorf("start %q in %s: %w", spec.Args[0], id, err)
	}

	var es client.ExitStatus
	select {
	case es = <-exited:
	case <-ctx.Done():
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if err := p.Kill(kctx, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
			return 0, fmt.Errorf("kill exec %s: %w", spec.ID, err)
		}
		select {
		case <-exited:
		case <-kctx.Done():
		}
		return 0, ctx.Err()
	}
	if err := es.Error(); err != nil {
		return 0, fmt.Errorf("wait for exec in %s: %w", id, err)
	}
	drained := make(chan struct{})
	go func() {
		p.IO().Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(ioDrainTimeout):
	}
	return es.ExitCode(), nil
}
