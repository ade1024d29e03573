package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// Values of Options.UserNSRemap besides an explicit "HOSTID:SIZE".
const (
	// UserNSRemapAuto remaps to DefaultRemapRange when the kernel allows
	// user namespaces, and runs containers without one otherwise.
	UserNSRemapAuto = "auto"
	// UserNSRemapOff runs containers in the host's user namespace.
	UserNSRemapOff = "off"
)

// DefaultRemapRange is the node-wide range "auto" maps containers to:
// host ids 1073741824-1073807359 (0x40000000, 65536 ids). It lies above
// the subordinate ids useradd hands out (SUB_UID_MIN 100000 to
// SUB_UID_MAX 600100000, /etc/login.defs), so no user's rootless
// containers share it, and inside the ids systemd sets apart for container
// ranges (524288-1879048191), so no regular or system user owns it.
var DefaultRemapRange = IDRange{HostID: 1 << 30, Size: minRemapSize}

// minRemapSize is the least range that holds every id an image commonly
// uses, nobody (65534) included: a file owned by an id outside the range
// cannot be remapped.
const minRemapSize = 1 << 16

// IDRange maps the container's user and group ids 0..Size-1 to the host's
// HostID..HostID+Size-1: root in the container is HostID on the host.
type IDRange struct {
	HostID uint32
	Size   uint32
}

func (r IDRange) String() string { return fmt.Sprintf("%d:%d", r.HostID, r.Size) }

// mappings is the range as OCI id mappings (the same for users and groups).
func (r IDRange) mappings() []specs.LinuxIDMapping {
	return []specs.LinuxIDMapping{{ContainerID: 0, HostID: r.HostID, Size: r.Size}}
}

// ParseUserNSRemap checks a --userns-remap value: "auto", "off" or an
// explicit "HOSTID:SIZE". It returns the explicit range, nil for the
// others.
func ParseUserNSRemap(s string) (*IDRange, error) {
	switch s {
	case UserNSRemapAuto, UserNSRemapOff:
		return nil, nil
	}
	host, size, ok := strings.Cut(s, ":")
	if !ok {
		return nil, fmt.Errorf("user namespace remap %q: want %s, %s or HOSTID:SIZE: %w", s, UserNSRemapAuto, UserNSRemapOff, errdefs.ErrInvalidArgument)
	}
	h, herr := strconv.ParseUint(host, 10, 32)
	n, nerr := strconv.ParseUint(size, 10, 32)
	switch {
	case herr != nil || nerr != nil:
		return nil, fmt.Errorf("user namespace remap %q: HOSTID and SIZE must be decimal numbers: %w", s, errdefs.ErrInvalidArgument)
	case h == 0:
		// Container root would be host root: no remap at all.
		return nil, fmt.Errorf("user namespace remap %q: HOSTID must not be 0 (host root): %w", s, errdefs.ErrInvalidArgument)
	case n < minRemapSize:
		return nil, fmt.Errorf("user namespace remap %q: SIZE must be at least %d, so that every id of an image maps: %w", s, minRemapSize, errdefs.ErrInvalidArgument)
	case h+n-1 > 1<<32-2:
		// 4294967295 is the kernel's invalid id.
		return nil, fmt.Errorf("user namespace remap %q: the range ends past host id 4294967294: %w", s, errdefs.ErrInvalidArgument)
	}
	return &IDRange{HostID: uint32(h), Size: uint32(n)}, nil
}

// maxUserNamespacesPath is the sysctl that says whether the kernel allows
// user namespaces: missing without CONFIG_USER_NS, 0 when turned off.
var maxUserNamespacesPath = "/proc/sys/user/max_user_namespaces"

// userNSSupport tells whether the kernel lets the node create user
// namespaces, and if not, why.
func userNSSupport(sysctl string) (bool, string) {
	b, err := os.ReadFile(sysctl)
	if errors.Is(err, os.ErrNotExist) {
		return false, "the kernel has no user namespaces (" + sysctl + " is missing)"
	}
	if err != nil {
		return false, fmt.Sprintf("read %s: %v", sysctl, err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return false, fmt.Sprintf("%s: %q is not a number", sysctl, b)
	}
	if n <= 0 {
		return false, sysctl + " is 0"
	}
	return true, sysctl + " is " + strconv.FormatInt(n, 10)
}

// resolveUserNS turns the node's setting into the range containers get,
// nil for none, and says why. sandboxed isolation never remaps: gVisor's
// kernel stands between the container and the host's ids.
func resolveUserNS(setting string, isolation Isolation, sysctl string) (*IDRange, string, error) {
	if setting == "" {
		setting = UserNSRemapOff
	}
	explicit, err := ParseUserNSRemap(setting)
	if err != nil {
		return nil, "", err
	}
	if setting == UserNSRemapOff {
		return nil, "turned off", nil
	}
	if isolation == IsolationSandboxed {
		return nil, "not used under sandboxed isolation (gVisor has its own kernel)", nil
	}
	ok, why := userNSSupport(sysctl)
	if explicit != nil {
		if !ok {
			return nil, "", fmt.Errorf("user namespace remap %s asked for, but %s: %w", setting, why, errdefs.ErrFailedPrecondition)
		}
		return explicit, why, nil
	}
	if !ok {
		return nil, why, nil
	}
	r := DefaultRemapRange
	return &r, why, nil
}

// setupUserNS decides the node's user namespace once, at start, and logs
// the decision.
func (r *Runtime) setupUserNS(ctx context.Context) error {
	rng, why, err := resolveUserNS(r.opts.UserNSRemap, r.opts.Isolation, maxUserNamespacesPath)
	if err != nil {
		return err
	}
	r.userns = rng
	if rng == nil {
		slog.InfoContext(ctx, "containers run without a user namespace", "userns_remap", r.opts.UserNSRemap, "reason", why)
		return nil
	}
	slog.InfoContext(ctx, "containers run in a user namespace", "userns_remap", r.opts.UserNSRemap,
		"host_ids", fmt.Sprintf("%d-%d", rng.HostID, uint64(rng.HostID)+uint64(rng.Size)-1), "reason", why)
	setupKeyQuota(ctx)
	return nil
}

// UserNS is the range every container's ids map to, nil when containers
// run in the host's user namespace. Files a container must own (its
// group's volumes) belong on the host to its HostID.
func (r *Runtime) UserNS() *IDRange { return r.userns }

// remaps tells whether the container of spec runs in a user namespace:
// whenever the node remaps, unless it joins a group network namespace made
// without one (before the node remapped), since only the owner of a
// network namespace can mount a sysfs for it, and runc 1.1 could not exec
// into the container (see network.UserNS).
func (r *Runtime) remaps(spec ContainerSpec) bool {
	return r.userns != nil && (spec.UserNSPath != "" || spec.NetNSPath == "")
}

// userNSSpec puts the container in its group's user namespace, or in a new
// one when it has no group network, with the node's mapping.
func (r *Runtime) userNSSpec(ctx context.Context, spec ContainerSpec) []oci.SpecOpts {
	if !r.remaps(spec) {
		if r.userns != nil {
			slog.WarnContext(ctx, "container runs without a user namespace: its group's network namespace was made without one; recreate the group to remap it",
				"container_id", spec.ID)
		}
		return nil
	}
	m := r.userns.mappings()
	var opts []oci.SpecOpts
	if spec.UserNSPath != "" {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.UserNamespace, Path: spec.UserNSPath}))
	}
	// runc still needs the mapping of a namespace it joins: it is how it
	// knows which host ids own the container's devices and console.
	return append(opts, oci.WithUserNamespace(m, m))
}

// remapSuffix ends the key of the active snapshot in which the client
// chowns an image for a range, before committing it.
const remapSuffix = "-remap"

// newContainer is client.NewContainer with the container's root
// filesystem as a snapshot of img named id. Under a user namespace the
// snapshot's parent is a copy of the image chowned into the node's range,
// made by the client on first use of the image and shared by every
// container of it after (overlayfs has no idmapped mounts on containerd
// 1.6, hence a copy). Two Creates making the same copy at once would
// collide on its key, so copies are made one at a time.
func (r *Runtime) newContainer(ctx context.Context, id string, img client.Image, remap bool, opts ...client.NewContainerOpts) (client.Container, error) {
	if !remap {
		return r.client.NewContainer(ctx, id, append([]client.NewContainerOpts{
			client.WithImage(img),
			client.WithSnapshotter(r.opts.Snapshotter),
			client.WithNewSnapshot(id, img),
		}, opts...)...)
	}
	r.remapMu.Lock()
	defer r.remapMu.Unlock()
	m := r.userns.mappings()
	all := append([]client.NewContainerOpts{
		client.WithImage(img),
		client.WithSnapshotter(r.opts.Snapshotter),
		client.WithUserNSRemappedSnapshot(id, img, m, m),
	}, opts...)
	ctr, err := r.client.NewContainer(ctx, id, all...)
	if errdefs.IsAlreadyExists(err) {
		// A copy whose chown was cut short (the agent died) is left active
		// under its key and blocks every later one: remove it and retry
		// once.
		removed, rerr := r.removeRemapLeftovers(ctx)
		if rerr != nil || removed == 0 {
			return nil, errors.Join(err, rerr)
		}
		ctr, err = r.client.NewContainer(ctx, id, all...)
	}
	if err != nil {
		return nil, err
	}
	if err := r.keepRemappedCopy(ctx, img, id); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		return nil, errors.Join(err, r.deleteContainer(cctx, ctr, 0))
	}
	return ctr, nil
}

// labelRemappedCopy, on an image, references its chowned copy for the
// node's range as containerd's garbage collector reads references: the
// copy then lives as long as the image, not only while a container uses
// it, so that a group created after the last one was deleted does not
// pay for the copy again. One label per snapshotter: a changed range
// replaces the reference, and the old copy goes.
const labelRemappedCopy = "containerd.io/gc.ref.snapshot.%s/berth-userns"

// keepRemappedCopy labels img with the chowned copy that container id's
// snapshot sits on, unless it already is.
func (r *Runtime) keepRemappedCopy(ctx context.Context, img client.Image, id string) error {
	info, err := r.client.SnapshotService(r.opts.Snapshotter).Stat(ctx, id)
	if err != nil {
		return fmt.Errorf("snapshot of %s: %w", id, err)
	}
	key := fmt.Sprintf(labelRemappedCopy, r.opts.Snapshotter)
	meta := img.Metadata()
	if info.Parent == "" || meta.Labels[key] == info.Parent {
		return nil
	}
	if meta.Labels == nil {
		meta.Labels = map[string]string{}
	}
	meta.Labels[key] = info.Parent
	if _, err := r.client.ImageService().Update(ctx, meta, "labels."+key); err != nil {
		return fmt.Errorf("image %s: reference its remapped copy: %w", img.Name(), err)
	}
	return nil
}

// removeRemapLeftovers removes the half-made chowned copies of images; it
// runs under remapMu, when no copy is being made.
func (r *Runtime) removeRemapLeftovers(ctx context.Context) (int, error) {
	sn := r.client.SnapshotService(r.opts.Snapshotter)
	var keys []string
	err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind == snapshots.KindActive && strings.HasSuffix(info.Name, remapSuffix) {
			keys = append(keys, info.Name)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list snapshots: %w", err)
	}
	for _, k := range keys {
		slog.WarnContext(ctx, "remove a half-made remapped image snapshot", "snapshot", k)
		if err := sn.Remove(ctx, k); err != nil && !errdefs.IsNotFound(err) {
			return 0, fmt.Errorf("remove snapshot %s: %w", k, err)
		}
	}
	return len(keys), nil
}
