// Package runtime runs Berth's containers on containerd (1.6 and later)
// through its Go client, with the runc-v2 shim or, under sandboxed
// isolation, in one gVisor sandbox per group with Berth's gVisor shim
// (sandbox.go).
//
// Containers live in their own containerd namespace and carry io.berth.*
// labels (labels.go); their output goes to a file written by the shim. All
// of it survives a restart of the agent and of containerd, so a new Runtime
// adopts whatever an earlier one started.
package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
)

// Defaults for Options.
const (
	DefaultSnapshotter  = "overlayfs"
	DefaultCgroupParent = "/berth"
)

// connectTimeout is how long New waits for containerd to serve.
const connectTimeout = 30 * time.Second

// Options configures a Runtime.
type Options struct {
	// Address is containerd's gRPC socket.
	Address string
	// Namespace is the containerd namespace; default "berth".
	Namespace string
	// InsecureRegistries are registry hosts ("host:port") reached over
	// plain HTTP. Loopback registries always are, as with Docker.
	InsecureRegistries []string
	// StateDir holds runc's state (StateDir/runc, passed to the shim as
	// runc's root). Put it on a tmpfs such as /run: runc state must not
	// survive a reboot.
	StateDir string
	// Snapshotter unpacks images and makes root filesystems; default
	// "overlayfs".
	Snapshotter string
	// CgroupParent is the cgroup under which every container gets
	// CgroupParent/<id>; default "/berth".
	CgroupParent string
	// PidsLimit bounds the processes of each container; default
	// DefaultPidsLimit.
	PidsLimit int64
	// UserNSRemap puts runc containers in a user namespace (userns.go):
	// UserNSRemapAuto, UserNSRemapOff or "HOSTID:SIZE"; empty is off.
	// Sandboxed isolation ignores it.
	UserNSRemap string

	// Isolation is the node's isolation level; default IsolationRunc.
	Isolation Isolation
	// The rest configures IsolationSandboxed. RunscPlatform is runsc's
	// platform, PlatformSystrap (default) or PlatformPtrace. RunscPath is
	// the runsc binary, default DefaultLibDir/runsc; ShimPath is Berth's
	// gVisor shim, default DefaultShimPath(). RunscDebugDir, when set,
	// receives the shim's and runsc's debug logs (they grow without
	// bound: for diagnosis only).
	RunscPlatform string
	RunscPath     string
	ShimPath      string
	RunscDebugDir string
}

// Runtime is a containerd client bound to Berth's namespace.
type Runtime struct {
	client *client.Client
	opts   Options
	// userns is the node's id range, nil without user namespaces;
	// remapMu serialises the making of remapped image copies (userns.go).
	userns  *IDRange
	remapMu sync.Mutex
}

// New connects to containerd, waiting up to 30 s for it to serve (the
// agent may start together with it).
func New(ctx context.Context, opts Options) (*Runtime, error) {
	if opts.Address == "" {
		return nil, fmt.Errorf("containerd address is required: %w", errdefs.ErrInvalidArgument)
	}
	if opts.StateDir == "" || !filepath.IsAbs(opts.StateDir) {
		return nil, fmt.Errorf("runtime state dir %q must be an absolute path: %w", opts.StateDir, errdefs.ErrInvalidArgument)
	}
	if opts.Namespace == "" {
		opts.Namespace = Namespace
	}
	if opts.Snapshotter == "" {
		opts.Snapshotter = DefaultSnapshotter
	}
	if opts.CgroupParent == "" {
		opts.CgroupParent = DefaultCgroupParent
	}
	if !filepath.IsAbs(opts.CgroupParent) {
		return nil, fmt.Errorf("cgroup parent %q must start with /: %w", opts.CgroupParent, errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(filepath.Join(opts.StateDir, "runc"), 0o700); err != nil {
		return nil, fmt.Errorf("create runtime state dir: %w", err)
	}
	r := &Runtime{opts: opts}
	switch opts.Isolation {
	case "":
		r.opts.Isolation = IsolationRunc
	case IsolationRunc:
	case IsolationSandboxed:
		if err := r.setupSandboxed(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("isolation %q: want %s or %s: %w", opts.Isolation, IsolationRunc, IsolationSandboxed, errdefs.ErrInvalidArgument)
	}
	if err := r.setupUserNS(ctx); err != nil {
		return nil, err
	}

	c, err := client.New(opts.Address,
		client.WithDefaultNamespace(opts.Namespace),
		// Set, so that the client never asks the daemon for a default.
		client.WithDefaultRuntime(runcRuntime),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", opts.Address, err)
	}
	if err := waitServing(ctx, c); err != nil {
		c.Close()
		return nil, fmt.Errorf("containerd at %s: %w", opts.Address, err)
	}
	r.client = c
	return r, nil
}

// waitServing polls the health service: right after containerd starts, its
// socket may be missing or not answer yet.
func waitServing(ctx context.Context, c *client.Client) error {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	var last error
	for {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		ok, err := c.IsServing(actx)
		acancel()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return fmt.Errorf("not serving after %s: %w: %w", connectTimeout, errdefs.ErrUnavailable, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Close closes the connection; containers keep running.
func (r *Runtime) Close() error {
	if r.opts.Isolation == IsolationSandboxed {
		r.releaseRunscMounts()
	}
	return r.client.Close()
}

// ctx puts Berth's namespace in ctx.
func (r *Runtime) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, r.opts.Namespace)
}

// runcRoot is runc's state root; the shim adds the namespace to it.
func (r *Runtime) runcRoot() string {
	return filepath.Join(r.opts.StateDir, "runc")
}

// ignoreNotFound turns "already gone" into success, for idempotent deletes.
func ignoreNotFound(err error) error {
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}
