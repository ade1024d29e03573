package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// cfsPeriod is the CFS period, in microseconds, that CPU limits are
// expressed against (the kernel's default).
const cfsPeriod = 100000

// cleanupTimeout bounds the rollback of a failed Create, which runs on a
// context detached from the caller's.
const cleanupTimeout = 30 * time.Second

// ContainerSpec is what Create makes.
type ContainerSpec struct {
	// ID is the containerd container id (letters, digits, "_", "-", ".").
	ID string
	// Image is the image as the user gave it; it must have been pulled.
	Image string
	// Args, when set, replace the image's entrypoint and command together
	// (ACI's "command").
	Args []string
	// Env holds "K=V" pairs applied over the image's environment.
	Env []string
	// CPU is a limit in cores, enforced as a CFS quota; 0 is no limit.
	CPU float64
	// MemoryBytes is the memory limit; 0 is no limit.
	MemoryBytes int64
	// NetNSPath is the network namespace to join; empty gives the
	// container a namespace of its own with only loopback.
	NetNSPath string
	// UserNSPath is the user namespace that NetNSPath belongs to, made
	// with it (network.Attachment). Under the node's user namespace
	// remapping the container joins it (userns.go); otherwise it is
	// ignored.
	UserNSPath string
	Hostname   string
	// Mounts are bind mounts (per-group /etc/hosts and resolv.conf,
	// volumes).
	Mounts []Mount
	// LogPath receives stdout and stderr, written by the shim, so that
	// output is kept while the agent or containerd is down. Empty discards.
	LogPath string
	// Labels are set on the container (see labels.go for Berth's keys).
	Labels map[string]string
	// ShimGroup, when set, makes one shim serve every container with the
	// same value (the containers of one group). Under sandboxed isolation
	// it is required, and every container with the same value runs in one
	// gVisor sandbox, made with the first of them (see ensureSandbox).
	ShimGroup string
	// GroupCPU and GroupMemoryBytes are the limits of the whole group.
	// Under sandboxed isolation they bound the group's sandbox, where the
	// host enforces them (plus SandboxOverheadBytes of memory); runsc does
	// not enforce a container's own limits on the host.
	GroupCPU         float64
	GroupMemoryBytes int64
}

// Mount is a bind mount into a container.
type Mount struct {
	Source      string
	Destination string
	ReadOnly    bool
}

// Create makes the container (a new snapshot of its image and its OCI
// spec) and its task, whose process waits to be started. An existing
// container with that id is an errdefs.ErrAlreadyExists error; a failed
// Create leaves nothing behind.
func (r *Runtime) Create(ctx context.Context, spec ContainerSpec) (retErr error) {
	ctx = r.ctx(ctx)
	if spec.ID == "" {
		return fmt.Errorf("container id is required: %w", errdefs.ErrInvalidArgument)
	}
	if spec.LogPath != "" && !filepath.IsAbs(spec.LogPath) {
		return fmt.Errorf("container %s: log path %q must be absolute: %w", spec.ID, spec.LogPath, errdefs.ErrInvalidArgument)
	}
	name, err := NormalizeImage(spec.Image)
	if err != nil {
		return fmt.Errorf("container %s: %w", spec.ID, err)
	}
	// Checked first so that the rollback below never touches a container
	// that was there before.
	if _, err := r.client.LoadContainer(ctx, spec.ID); err == nil {
		return fmt.Errorf("container %s: %w", spec.ID, errdefs.ErrAlreadyExists)
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("container %s: %w", spec.ID, err)
	}
	img, err := r.client.GetImage(ctx, name)
	if err != nil {
		return fmt.Errorf("container %s: image %s: %w", spec.ID, name, err)
	}
	// A snapshot by this key without its container is a leftover (of a
	// container deleted without its snapshot); it would make every new
	// Create fail.
	if err := r.removeSnapshot(ctx, spec.ID); err != nil {
		return fmt.Errorf("container %s: %w", spec.ID, err)
	}

	specOpts := append(r.specOpts(img, spec), r.userNSSpec(ctx, spec)...)
	runtimeOpt := client.WithRuntime(runcRuntime, &options.Options{Root: r.runcRoot()})
	var taskOpts []client.NewTaskOpts
	sandboxed := r.opts.Isolation == IsolationSandboxed
	if sandboxed {
		if spec.ShimGroup == "" {
			return fmt.Errorf("container %s: sandboxed isolation needs a shim group: %w", spec.ID, errdefs.ErrInvalidArgument)
		}
		if err := r.checkSandboxID(ctx, spec); err != nil {
			return err
		}
		sb, err := r.ensureSandbox(ctx, spec)
		if err != nil {
			return fmt.Errorf("container %s: %w", spec.ID, err)
		}
		specOpts = append(specOpts, sandboxedOpts(sb))
		spec.Labels = maps.Clone(spec.Labels)
		if spec.Labels == nil {
			spec.Labels = map[string]string{}
		}
		spec.Labels[labelInSandbox] = sb
		runtimeOpt = client.WithRuntime(runscRuntime, r.runscOptions())
		taskOpts = append(taskOpts, client.WithRuntimePath(r.opts.ShimPath))
	}

	ctr, err := r.newContainer(ctx, spec.ID, img, r.remaps(spec),
		runtimeOpt,
		client.WithContainerLabels(spec.Labels),
		client.WithNewSpec(specOpts...),
	)
	if err != nil {
		return fmt.Errorf("create container %s: %w", spec.ID, err)
	}
	defer func() {
		if retErr == nil {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if err := r.deleteContainer(cctx, ctr, 0); err != nil {
			slog.WarnContext(ctx, "roll back container create", "container_id", spec.ID, "error", err)
			retErr = errors.Join(retErr, fmt.Errorf("roll back: %w", err))
		}
	}()

	ioc := cio.NullIO
	if spec.LogPath != "" {
		ioc = cio.LogFile(spec.LogPath)
		if sandboxed {
			if ioc, err = newFileIO(spec.LogPath); err != nil {
				return fmt.Errorf("container %s: %w", spec.ID, err)
			}
		}
	}
	if _, err := ctr.NewTask(ctx, ioc, taskOpts...); err != nil {
		return fmt.Errorf("create task %s: %w", spec.ID, err)
	}
	return nil
}

// specOpts turns spec into OCI spec options, on top of the image config.
func (r *Runtime) specOpts(img oci.Image, spec ContainerSpec) []oci.SpecOpts {
	opts := []oci.SpecOpts{oci.WithImageConfig(img)}
	if len(spec.Args) > 0 {
		opts = append(opts, oci.WithProcessArgs(spec.Args...))
	}
	if len(spec.Env) > 0 {
		opts = append(opts, oci.WithEnv(spec.Env))
	}
	if spec.Hostname != "" {
		opts = append(opts, oci.WithHostname(spec.Hostname))
	}
	if spec.NetNSPath != "" {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: spec.NetNSPath}))
	}
	if spec.CPU > 0 {
		quota := int64(spec.CPU * cfsPeriod)
		// The kernel refuses quotas under 1 ms.
		quota = max(quota, 1000)
		opts = append(opts, oci.WithCPUCFS(quota, cfsPeriod))
	}
	if spec.MemoryBytes > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(spec.MemoryBytes)))
	}
	opts = append(opts, oci.WithCgroup(filepath.Join(r.opts.CgroupParent, spec.ID)))
	if len(spec.Mounts) > 0 {
		mounts := make([]specs.Mount, 0, len(spec.Mounts))
		for _, m := range spec.Mounts {
			mode := "rw"
			if m.ReadOnly {
				mode = "ro"
			}
			mounts = append(mounts, specs.Mount{
				Type:        "bind",
				Source:      m.Source,
				Destination: m.Destination,
				Options:     append([]string{"rbind", mode}, lockedFlags(m.Source)...),
			})
		}
		opts = append(opts, oci.WithMounts(mounts))
	}
	if spec.ShimGroup != "" && r.opts.Isolation != IsolationSandboxed {
		opts = append(opts, oci.WithAnnotations(map[string]string{AnnotationShimGroup: spec.ShimGroup}))
	}
	// Last, so that nothing above can widen what it allows.
	return append(opts, hardening(r.opts.PidsLimit)...)
}

// Start starts the task that Create made and records the start time in the
// io.berth.started-at label.
func (r *Runtime) Start(ctx context.Context, id string) error {
	ctx = r.ctx(ctx)
	ctr, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return fmt.Errorf("task of %s: %w", id, err)
	}
	labels := map[string]string{}
	if err := r.recordOOMBase(ctx, ctr, labels); err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	if err := task.Start(ctx); err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	labels[LabelStartedAt] = time.Now().UTC().Format(time.RFC3339Nano)
	if _, err := ctr.SetLabels(ctx, labels); err != nil {
		return fmt.Errorf("label %s as started: %w", id, err)
	}
	return nil
}

// Remove stops the task of id (SIGTERM to all its processes, SIGKILL after
// grace), deletes it, and deletes the container with its snapshot. Whatever
// is already gone counts as removed.
func (r *Runtime) Remove(ctx context.Context, id string, grace time.Duration) error {
	ctx = r.ctx(ctx)
	ctr, err := r.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return r.removeSnapshot(ctx, id)
	}
	if err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	return r.deleteContainer(ctx, ctr, grace)
}

// deleteContainer stops and deletes the task of ctr and deletes ctr with
// its snapshot.
func (r *Runtime) deleteContainer(ctx context.Context, ctr client.Container, grace time.Duration) error {
	if err := r.removeTask(ctx, ctr, grace); err != nil {
		return fmt.Errorf("remove task %s: %w", ctr.ID(), err)
	}
	if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete container %s: %w", ctr.ID(), err)
	}
	return nil
}

func (r *Runtime) removeTask(ctx context.Context, ctr client.Container, grace time.Duration) error {
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return ignoreNotFound(err)
	}
	st, err := task.Status(ctx)
	if err != nil {
		return ignoreNotFound(err)
	}
	if st.Status == client.Created && r.isRunsc(ctx, ctr) {
		// runsc can neither signal a container that never started nor
		// delete it (the shim waits for output that never ends): start it
		// to kill it at once. gVisor's shim turns a failed start of a
		// subcontainer into an exit.
		if err := task.Start(ctx); err != nil {
			slog.DebugContext(ctx, "start runsc task to remove it", "container_id", ctr.ID(), "error", err)
		}
		grace = 0
		if st, err = task.Status(ctx); err != nil {
			return ignoreNotFound(err)
		}
	}
	if st.Status != client.Stopped {
		if st.Status == client.Created {
			// Nothing of the user's runs yet: no point in a grace period.
			grace = 0
		}
		// Wait is set up before the signal so that the exit is not missed.
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		exited, err := task.Wait(wctx)
		if err != nil {
			return ignoreNotFound(err)
		}
		if err := stop(ctx, task, exited, grace); err != nil {
			return err
		}
	}
	if _, err := task.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete: %w", err)
	}
	return nil
}

// isRunsc tells whether ctr runs on gVisor's shim.
func (r *Runtime) isRunsc(ctx context.Context, ctr client.Container) bool {
	info, err := ctr.Info(ctx, client.WithoutRefreshedMetadata)
	return err == nil && info.Runtime.Name == runscRuntime
}

// stop sends SIGTERM, then SIGKILL once grace has passed, until exited
// yields.
func stop(ctx context.Context, task client.Task, exited <-chan client.ExitStatus, grace time.Duration) error {
	if grace > 0 {
		if err := task.Kill(ctx, syscall.SIGTERM, client.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("kill: %w", err)
		}
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-exited:
			return nil
		case <-timer.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := task.Kill(ctx, syscall.SIGKILL, client.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("kill: %w", err)
	}
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// removeSnapshot removes the snapshot that Create names after the
// container; a missing one is fine.
func (r *Runtime) removeSnapshot(ctx context.Context, key string) error {
	if err := r.client.SnapshotService(r.opts.Snapshotter).Remove(ctx, key); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove snapshot %s: %w", key, err)
	}
	return nil
}

// lockedFlags returns the nosuid, nodev and noexec flags of the
// filesystem at path as bind mount options. runc remounts a read-only
// bind mount, and in a user namespace the kernel refuses a remount that
// drops a flag of the mount it copies (a secret volume's tmpfs is nosuid
// and nodev): runc 1.1 does not keep them by itself. They only narrow
// what the mount allows.
func lockedFlags(path string) []string {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return nil // the create fails on the missing source, with its error
	}
	var out []string
	for _, f := range []struct {
		flag int64
		opt  string
	}{{unix.ST_NOSUID, "nosuid"}, {unix.ST_NODEV, "nodev"}, {unix.ST_NOEXEC, "noexec"}} {
		if st.Flags&f.flag != 0 {
			out = append(out, f.opt)
		}
	}
	return out
}
