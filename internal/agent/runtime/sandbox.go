package runtime

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Isolation is how a node runs its container groups.
type Isolation string

const (
	// IsolationRunc runs every container as a runc container on the host
	// kernel.
	IsolationRunc Isolation = "runc"
	// IsolationSandboxed runs every group in one gVisor sandbox (runsc):
	// its containers share the sandbox's user-space kernel and network
	// stack, and only the sandbox touches the host kernel.
	IsolationSandboxed Isolation = "sandboxed"
)

// Platforms of runsc that Berth allows: the ones that work without
// hardware virtualisation.
const (
	PlatformSystrap = "systrap"
	PlatformPtrace  = "ptrace"
)

// Defaults for the sandboxed options.
const (
	// DefaultLibDir is where hack/setup.sh installs runsc.
	DefaultLibDir = "/usr/local/lib/berth"
	// ShimBinary is the file name of Berth's gVisor shim (shim/runsc).
	ShimBinary = "containerd-shim-runsc-v1"
	// SandboxOverheadBytes is added to a group's memory limit to bound
	// its sandbox: the sentry, the gofers and the pause process live in
	// the sandbox's cgroup together with the workload (about 32 MB were
	// measured for a small group).
	SandboxOverheadBytes = 64 << 20
	// SandboxOverheadPids is added to the node's per-container process
	// limit to bound a sandbox's host processes and threads: the Sentry's
	// and gofers' threads besides the stub processes of the workload.
	SandboxOverheadPids = 512
)

// runscRuntime is gVisor's containerd runtime, served by ShimBinary.
const runscRuntime = "io.containerd.runsc.v1"

// The annotations by which runsc puts containers into one sandbox: the
// ones containerd's CRI plugin sets for a pod.
const (
	annotationContainerType = "io.kubernetes.cri.container-type"
	annotationSandboxID     = "io.kubernetes.cri.sandbox-id"
	containerTypeSandbox    = "sandbox"
	containerTypeContainer  = "container"
)

// LabelSandbox marks a group's sandbox container; its value is the shim
// group (ContainerSpec.ShimGroup) the sandbox hosts. List does not return
// sandboxes: they are the runtime's own, created with the group's first
// container and removed by RemoveSandbox.
const LabelSandbox = "io.berth.sandbox"

// Labels of a container in a sandbox: the sandbox's id, and the sandbox
// cgroup's OOM kill count when the container started (see sandboxOOM).
const (
	labelInSandbox = "io.berth.sandbox-id"
	labelOOMBase   = "io.berth.sandbox-oom-base"
	// labelOOMKilled keeps sandboxOOM's verdict once the sandbox is gone.
	labelOOMKilled = "io.berth.oom-killed"
)

// pauseArg makes the shim binary the sandbox's placeholder process (see
// shim/runsc): it sleeps until signalled, so that no image is needed.
const (
	pausePath = "/pause"
	pauseArg  = "berth-pause"
)

// sandboxPrefix names sandbox containers: "sandbox-<shim group>". Berth's
// other container ids start with hex digits, so they never collide.
const sandboxPrefix = "sandbox-"

func sandboxID(group string) string { return sandboxPrefix + group }

// Describe says in words how the runtime isolates groups, for events.
func (r *Runtime) Describe() string {
	if r.opts.Isolation == IsolationSandboxed {
		return fmt.Sprintf("isolation: sandboxed (gVisor, %s)", r.opts.RunscPlatform)
	}
	if r.userns != nil {
		return "isolation: runc (hardened, user namespace " + r.userns.String() + ")"
	}
	return "isolation: runc (hardened)"
}

// Isolation is the node's isolation level.
func (r *Runtime) Isolation() Isolation { return r.opts.Isolation }

// setupSandboxed checks the gVisor binaries and writes the shim's config
// and the pause root filesystem into the state dir.
func (r *Runtime) setupSandboxed() error {
	switch r.opts.RunscPlatform {
	case "":
		r.opts.RunscPlatform = PlatformSystrap
	case PlatformSystrap, PlatformPtrace:
	default:
		return fmt.Errorf("runsc platform %q: want %s or %s: %w", r.opts.RunscPlatform, PlatformSystrap, PlatformPtrace, errdefs.ErrInvalidArgument)
	}
	if r.opts.RunscPath == "" {
		r.opts.RunscPath = filepath.Join(DefaultLibDir, "runsc")
	}
	if r.opts.ShimPath == "" {
		r.opts.ShimPath = DefaultShimPath()
	}
	for _, p := range []struct {
		what string
		path *string
		hint string
	}{
		{"runsc", &r.opts.RunscPath, "run hack/setup.sh"},
		{"the gVisor shim", &r.opts.ShimPath, "run make build"},
	} {
		// containerd and the shim run them from other directories.
		abs, err := filepath.Abs(*p.path)
		if err == nil {
			*p.path = abs
			err = executable(abs)
		}
		if err != nil {
			return fmt.Errorf("sandboxed isolation needs %s at %s (%s): %w: %w", p.what, *p.path, p.hint, err, errdefs.ErrFailedPrecondition)
		}
	}

	dir := filepath.Join(r.opts.StateDir, "runsc")
	// The pause root: read-only and empty but for the mount points runsc
	// mounts over (the shim binary at /pause, and /proc, /dev, /sys).
	for _, d := range []string{"rootfs/proc", "rootfs/dev", "rootfs/sys", "rootfs/tmp", "root"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("create runsc state dir: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "rootfs", pausePath), nil, 0o755); err != nil {
		return fmt.Errorf("create pause mount point: %w", err)
	}
	if err := r.linkRunscWrapper(); err != nil {
		return err
	}
	return os.WriteFile(r.runscConfigPath(), []byte(r.runscConfig()), 0o600)
}

// runscWrapperName is the link to the shim binary that the shim's config
// names as its runsc: run by that name, the binary wraps the real runsc,
// the link runsc next to it (shim/runsc/wrapper.go), so that an exec's
// terminal has its size when the process starts.
const runscWrapperName = "berth-runsc"

func (r *Runtime) runscWrapperPath() string {
	return filepath.Join(r.opts.StateDir, "runsc", "bin", runscWrapperName)
}

// linkRunscWrapper (re)creates the wrapper's link to the shim binary and
// its link to the real runsc, each replaced atomically.
func (r *Runtime) linkRunscWrapper() error {
	dir := filepath.Dir(r.runscWrapperPath())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create runsc wrapper dir: %w", err)
	}
	for name, target := range map[string]string{runscWrapperName: r.opts.ShimPath, "runsc": r.opts.RunscPath} {
		link := filepath.Join(dir, name)
		tmp := link + ".tmp"
		_ = os.Remove(tmp)
		if err := os.Symlink(target, tmp); err != nil {
			return fmt.Errorf("link runsc wrapper: %w", err)
		}
		if err := os.Rename(tmp, link); err != nil {
			return fmt.Errorf("link runsc wrapper: %w", err)
		}
	}
	return nil
}

// DefaultShimPath is the gVisor shim next to the running executable (bin/
// of a build tree), else the one in DefaultLibDir.
func DefaultShimPath() string {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), ShimBinary)
		if executable(p) == nil {
			return p
		}
	}
	return filepath.Join(DefaultLibDir, ShimBinary)
}

func executable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return errors.New("not an executable file")
	}
	return nil
}

func (r *Runtime) runscConfigPath() string {
	return filepath.Join(r.opts.StateDir, "runsc", "config.toml")
}

// runscConfig is the gVisor shim's configuration (its runtime options
// point at it): which runsc (the shim's wrapper of it), its state root,
// and runsc's global flags.
// network=sandbox gives the group gVisor's own network stack on the
// group's CNI interface, instead of the host's (hostinet).
func (r *Runtime) runscConfig() string {
	dir := filepath.Join(r.opts.StateDir, "runsc")
	var b strings.Builder
	fmt.Fprintf(&b, "binary_name = %q\n", r.runscWrapperPath())
	fmt.Fprintf(&b, "root = %q\n", filepath.Join(dir, "root"))
	if r.opts.RunscDebugDir != "" {
		fmt.Fprintf(&b, "log_level = \"debug\"\nlog_path = %q\n", filepath.Join(r.opts.RunscDebugDir, "shim-%ID%.log"))
	}
	b.WriteString("[runsc_config]\n")
	fmt.Fprintf(&b, "platform = %q\n", r.opts.RunscPlatform)
	b.WriteString("network = \"sandbox\"\n")
	if r.opts.RunscDebugDir != "" {
		fmt.Fprintf(&b, "debug = \"true\"\ndebug-log = %q\n", r.opts.RunscDebugDir+"/")
	}
	return b.String()
}

// runscOptions are the shim's runtime options: the path of its config.
func (r *Runtime) runscOptions() *runtimeoptions.Options {
	return &runtimeoptions.Options{TypeUrl: "io.containerd.runsc.v1.options", ConfigPath: r.runscConfigPath()}
}

// ensureSandbox makes sure the sandbox of spec's shim group runs and
// returns its id. A new sandbox joins spec's network namespace and is
// limited to the group's resources plus SandboxOverheadBytes. One that is
// not running (it died, or never started) is replaced.
func (r *Runtime) ensureSandbox(ctx context.Context, spec ContainerSpec) (string, error) {
	id := sandboxID(spec.ShimGroup)
	if ctr, err := r.client.LoadContainer(ctx, id); err == nil {
		info, err := r.Get(ctx, id)
		if err != nil {
			return "", err
		}
		if info.Status == StatusRunning && alive(info.Pid) {
			return id, nil
		}
		// Created but not started is left by an interrupted Create; a
		// stopped one died (killed, or out of memory), and with it every
		// container of the group. Either way a new sandbox replaces it,
		// on the network the old one gives back.
		slog.InfoContext(ctx, "replacing sandbox", "sandbox_id", id, "status", info.Status, "exit_code", info.ExitCode)
		if err := r.deleteSandbox(ctx, ctr); err != nil {
			return "", err
		}
	} else if !errdefs.IsNotFound(err) {
		return "", fmt.Errorf("sandbox %s: %w", id, err)
	}
	memory := spec.GroupMemoryBytes
	if memory > 0 {
		memory += SandboxOverheadBytes
	}
	labels := map[string]string{LabelSandbox: spec.ShimGroup}
	if spec.NetNSPath != "" {
		addrs, err := netnsAddrs(ctx, spec.NetNSPath)
		if err != nil {
			return "", fmt.Errorf("sandbox of group %s: %w", spec.ShimGroup, err)
		}
		routes, err := netnsRoutes(ctx, spec.NetNSPath)
		if err != nil {
			return "", fmt.Errorf("sandbox of group %s: %w", spec.ShimGroup, err)
		}
		labels[labelSandboxNetNS], labels[labelSandboxAddrs], labels[labelSandboxRoutes] = spec.NetNSPath, addrs, routes
	}
	for _, k := range []string{LabelGroup, LabelGroupUID} {
		if v, ok := spec.Labels[k]; ok {
			labels[k] = v
		}
	}
	rootfs := filepath.Join(r.opts.StateDir, "runsc", "rootfs")
	opts := []oci.SpecOpts{
		oci.WithRootFSPath(rootfs),
		oci.WithRootFSReadonly(),
		oci.WithProcessArgs(pausePath, pauseArg),
		oci.WithProcessCwd("/"),
		oci.WithMounts([]specs.Mount{{Type: "bind", Source: r.opts.ShimPath, Destination: pausePath, Options: []string{"rbind", "ro"}}}),
		oci.WithCgroup(filepath.Join(r.opts.CgroupParent, id)),
		oci.WithAnnotations(map[string]string{annotationContainerType: containerTypeSandbox, annotationSandboxID: id}),
	}
	if spec.NetNSPath != "" {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: spec.NetNSPath}))
	}
	if spec.Hostname != "" {
		opts = append(opts, oci.WithHostname(spec.Hostname))
	}
	if spec.GroupCPU > 0 {
		opts = append(opts, oci.WithCPUCFS(max(int64(spec.GroupCPU*cfsPeriod), 1000), cfsPeriod))
	}
	if memory > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(memory)))
	}
	// The workload's processes are the sandbox's tasks, not the host's:
	// the host sees the Sentry's threads and, under systrap, one stub
	// process per address space. Bounding them bounds what a fork bomb
	// in the group can take from the host's process table.
	opts = append(opts, oci.WithPidsLimit(cmp.Or(r.opts.PidsLimit, DefaultPidsLimit)+SandboxOverheadPids))
	ctr, err := r.client.NewContainer(ctx, id,
		client.WithRuntime(runscRuntime, r.runscOptions()),
		client.WithContainerLabels(labels),
		client.WithNewSpec(opts...),
	)
	if err != nil {
		return "", fmt.Errorf("create sandbox %s: %w", id, err)
	}
	task, err := ctr.NewTask(ctx, cio.NullIO, client.WithRuntimePath(r.opts.ShimPath))
	if err == nil {
		err = task.Start(ctx)
	}
	if err != nil {
		err = fmt.Errorf("start sandbox %s: %w", id, err)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		return "", errors.Join(err, r.deleteSandbox(cctx, ctr))
	}
	return id, nil
}

// RemoveSandbox removes the sandbox of a shim group, after whatever
// containers still run in it (runsc kills them all with the sandbox, but
// their tasks would be left behind). A group without a sandbox is fine,
// whatever the isolation: a node switched to runc still cleans up the
// sandboxes it made before.
func (r *Runtime) RemoveSandbox(ctx context.Context, group string) error {
	ctx = r.ctx(ctx)
	id := sandboxID(group)
	ctr, err := r.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", id, err)
	}
	members, err := r.client.ContainerService().List(ctx, fmt.Sprintf("labels.%q==%q", labelInSandbox, id))
	if err != nil {
		return fmt.Errorf("list containers of sandbox %s: %w", id, err)
	}
	for _, c := range members {
		if err := r.Remove(ctx, c.ID, 0); err != nil {
			return err
		}
	}
	return r.deleteSandbox(ctx, ctr)
}

// deleteSandbox deletes a sandbox container and gives its network
// namespace back the addresses runsc took (see netns.go).
func (r *Runtime) deleteSandbox(ctx context.Context, ctr client.Container) error {
	labels, err := ctr.Labels(ctx)
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", ctr.ID(), err)
	}
	if err := r.keepOOMVerdicts(ctx, ctr.ID()); err != nil {
		return err
	}
	if err := r.deleteContainer(ctx, ctr, 0); err != nil {
		return err
	}
	if err := restoreAddrs(ctx, labels[labelSandboxNetNS], labels[labelSandboxAddrs], labels[labelSandboxRoutes]); err != nil {
		return fmt.Errorf("sandbox %s: restore network addresses: %w", ctr.ID(), err)
	}
	return nil
}

// Sandboxes returns the shim groups that have a sandbox.
func (r *Runtime) Sandboxes(ctx context.Context) ([]string, error) {
	ctx = r.ctx(ctx)
	ctrs, err := r.client.ContainerService().List(ctx, fmt.Sprintf("labels.%q", LabelSandbox))
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	out := make([]string, 0, len(ctrs))
	for _, c := range ctrs {
		out = append(out, c.Labels[LabelSandbox])
	}
	return out, nil
}

// checkSandboxID refuses an id that is a prefix of another in the same
// sandbox, or has one as its prefix: runsc finds containers by id prefix,
// and would refuse every command on the shorter one as ambiguous.
func (r *Runtime) checkSandboxID(ctx context.Context, spec ContainerSpec) error {
	sb := sandboxID(spec.ShimGroup)
	members, err := r.client.ContainerService().List(ctx, fmt.Sprintf("labels.%q==%q", labelInSandbox, sb))
	if err != nil {
		return fmt.Errorf("container %s: list containers of sandbox %s: %w", spec.ID, sb, err)
	}
	ids := []string{sb}
	for _, c := range members {
		ids = append(ids, c.ID)
	}
	for _, id := range ids {
		if strings.HasPrefix(id, spec.ID) || strings.HasPrefix(spec.ID, id) {
			return fmt.Errorf("container %s: id clashes with %s in the same gVisor sandbox (runsc matches ids by prefix): %w", spec.ID, id, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// sandboxedOpts are the spec options that put a container into sandbox
// sb.
func sandboxedOpts(sb string) oci.SpecOpts {
	return oci.WithAnnotations(map[string]string{annotationContainerType: containerTypeContainer, annotationSandboxID: sb})
}

// fileIO hands the gVisor shim plain files for stdout and stderr: it has
// no file:// (cio.LogFile) support, and opens a regular file at a plain
// path for appending, where runc's shim would expect a FIFO. The shim
// writes them itself, so output is kept while the agent is away.
type fileIO struct{ path string }

// newFileIO creates path (the shim does not) and returns its IO creator.
func newFileIO(path string) (cio.Creator, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create log file: %w", err)
	}
	f.Close()
	return func(string) (cio.IO, error) { return fileIO{path: path}, nil }, nil
}

func (f fileIO) Config() cio.Config { return cio.Config{Stdout: f.path, Stderr: f.path} }
func (fileIO) Cancel()              {}
func (fileIO) Wait()                {}
func (fileIO) Close() error         { return nil }

// releaseRunscMounts unmounts the empty network namespace that runsc keeps
// mounted in its root for its gofers, once no sandbox is left, so that a
// stopped node leaves no mount behind. runsc makes it again when needed.
func (r *Runtime) releaseRunscMounts() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if sbs, err := r.Sandboxes(ctx); err != nil || len(sbs) > 0 {
		return
	}
	paths, _ := filepath.Glob(filepath.Join(r.opts.StateDir, "runsc", "root", "*", "null-netns"))
	for _, p := range paths {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			slog.Warn("unmount runsc network namespace", "path", p, "error", err)
		}
	}
}

// recordOOMBase adds to labels the OOM kill count of ctr's sandbox before
// ctr starts; nothing for a container outside a sandbox.
func (r *Runtime) recordOOMBase(ctx context.Context, ctr client.Container, labels map[string]string) error {
	// The labels LoadContainer fetched: no call to containerd.
	info, err := ctr.Info(ctx, client.WithoutRefreshedMetadata)
	if err != nil {
		return err
	}
	if sb := info.Labels[labelInSandbox]; sb != "" {
		labels[labelOOMBase] = strconv.FormatInt(r.oomKills(sb), 10)
	}
	return nil
}

// sandboxOOM sets i.OOMKilled for a container of a sandbox that ended
// after the OOM killer struck in the sandbox's cgroup, which is where the
// host enforces memory. The kernel kills the biggest process there: either
// the workload's own (under systrap each of its address spaces is a host
// process), and the container exits 137, or the sandbox itself, and every
// container of the group exits 128, runsc's code for a lost sandbox; that
// is reported as 137 too, as a group over its memory is under runc. The
// count is compared with the one when the container started, so that an
// earlier kill in the group does not count.
func (r *Runtime) sandboxOOM(i Info) Info {
	sb, base := i.Labels[labelInSandbox], i.Labels[labelOOMBase]
	if sb == "" || base == "" || i.Status != StatusStopped || (i.ExitCode != 137 && i.ExitCode != sandboxLostCode) {
		return i
	}
	if i.Labels[labelOOMKilled] == "true" {
		i.OOMKilled, i.ExitCode = true, 137
		return i
	}
	n, err := strconv.ParseInt(base, 10, 64)
	if err == nil && r.oomKills(sb) > n {
		i.OOMKilled, i.ExitCode = true, 137
	}
	return i
}

// keepOOMVerdicts labels the stopped containers of sandbox sb that the OOM
// killer ended, before the sandbox's cgroup, which holds the count, goes
// with it: a dead sandbox is replaced while the agent may not yet have
// looked at every container of the group.
func (r *Runtime) keepOOMVerdicts(ctx context.Context, sb string) error {
	members, err := r.client.ContainerService().List(ctx, fmt.Sprintf("labels.%q==%q", labelInSandbox, sb))
	if err != nil {
		return fmt.Errorf("list containers of sandbox %s: %w", sb, err)
	}
	for _, c := range members {
		i, err := r.Get(ctx, c.ID)
		if err != nil || !i.OOMKilled || c.Labels[labelOOMKilled] != "" {
			continue
		}
		if _, err := r.client.ContainerService().Update(ctx, withLabel(c, labelOOMKilled, "true"), "labels."+labelOOMKilled); err != nil {
			return fmt.Errorf("label %s: %w", c.ID, err)
		}
	}
	return nil
}

// sandboxLostCode is the exit code runsc gives the containers of a sandbox
// that died.
const sandboxLostCode = 128

// withLabel returns c with one more label.
func withLabel(c containers.Container, k, v string) containers.Container {
	c.Labels = maps.Clone(c.Labels)
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	c.Labels[k] = v
	return c
}

// alive tells whether process pid runs: it exists and is no zombie (a
// killed sandbox is one until the shim reaps it).
func alive(pid uint32) bool {
	if pid == 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) state ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	state := b[i+2]
	return state != 'Z' && state != 'X'
}
