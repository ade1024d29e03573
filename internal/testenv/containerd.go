package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Containerd is a private containerd daemon started for one test.
type Containerd struct {
	// Address is the gRPC unix socket to pass to client.New or to
	// berth server --containerd-address.
	Address string
	// Root and State are the daemon's root and state directories.
	Root  string
	State string
	// NetNSPath is the network namespace the daemon, and so its shims
	// and every container without a namespace of its own, runs in;
	// empty for the host's.
	NetNSPath string

	dir string // holds root, state, opt and the sockets

	config, logPath string
	cmd             *exec.Cmd
	done            chan struct{}
	killed          bool
}

// containerdConfig is containerd 1.6's config (version 2). CRI is disabled
// because Berth drives containerd through its client API only; opt gets its
// own path so nothing lands in /opt/containerd.
const containerdConfig = `version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`

// StartContainerd starts a containerd daemon with its own root, state and
// socket, waits until it serves, and registers a cleanup that kills every
// task, deletes every container in every namespace, stops the daemon and
// removes its directories and mounts.
func StartContainerd(t testing.TB) *Containerd {
	t.Helper()
	return startContainerd(t, "")
}

// StartContainerdIn is StartContainerd with the daemon in the network
// namespace at netnsPath (a Node's NetNSPath), entered with nsenter --net
// only: the daemon keeps the host's mount namespace, which its shims and
// the agent share with it. Start it after the namespace, so that it is
// stopped before the namespace goes.
func StartContainerdIn(t testing.TB, netnsPath string) *Containerd {
	t.Helper()
	if netnsPath == "" {
		t.Fatal("StartContainerdIn: no network namespace")
	}
	RequireBinary(t, "nsenter")
	return startContainerd(t, netnsPath)
}

func startContainerd(t testing.TB, netnsPath string) *Containerd {
	t.Helper()
	RequireRoot(t)
	RequireBinary(t, "containerd")

	logDir := t.TempDir()
	dir := shortTempDir(t, "bctd-")
	// Traversable, as /run/containerd and /var/lib/containerd are: runc
	// mounts the root filesystem of a container in a user namespace as
	// that namespace's root. (issue 7)
	if err := os.Chmod(dir, 0o711); err != nil {
		removeTree(t, dir)
		t.Fatalf("chmod containerd dir: %v", err)
	}
	c := &Containerd{
		Address:   filepath.Join(dir, "containerd.sock"),
		Root:      filepath.Join(dir, "root"),
		State:     filepath.Join(dir, "state"),
		NetNSPath: netnsPath,
		dir:       dir,
	}
	config := filepath.Join(dir, "config.toml")
	body := fmt.Sprintf(containerdConfig, c.Root, c.State, c.Address, c.Address+".ttrpc", filepath.Join(dir, "opt"))
	if err := os.WriteFile(config, []byte(body), 0o600); err != nil {
		removeTree(t, dir)
		t.Fatalf("write containerd config: %v", err)
	}

	c.config, c.logPath = config, filepath.Join(logDir, "containerd.log")
	if err := c.launch(); err != nil {
		removeTree(t, dir)
		t.Fatalf("start containerd: %v", err)
	}
	dumpLogOnFailure(t, "containerd", c.logPath)
	t.Cleanup(func() { c.stop(t) })
	if err := waitServing(c.Address, c.done, 30*time.Second); err != nil {
		t.Fatalf("containerd did not come up: %v", err)
	}
	return c
}

// launch starts the daemon process, appending to its log.
func (c *Containerd) launch() error {
	logFile, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open containerd log: %w", err)
	}
	defer logFile.Close()
	argv := []string{"containerd", "--config", c.config}
	if c.NetNSPath != "" {
		argv = nsenterArgs(c.NetNSPath, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = daemonAttrs()
	if err := startDaemon(cmd); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	c.cmd, c.done = cmd, done
	return nil
}

// Kill SIGKILLs the daemon, as a crash would: its shims and containers
// keep running, as they do when containerd dies.
func (c *Containerd) Kill(t testing.TB) {
	t.Helper()
	if c.cmd == nil {
		return
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	_ = c.cmd.Process.Kill()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("containerd %s did not die on SIGKILL", c.Address)
	}
	c.killed = true
}

// Restart starts the daemon again after Kill, on the same root and
// state: it finds the shims still running.
func (c *Containerd) Restart(t testing.TB) {
	t.Helper()
	if err := c.launch(); err != nil {
		t.Fatalf("restart containerd: %v", err)
	}
	c.killed = false
	if err := waitServing(c.Address, c.done, 30*time.Second); err != nil {
		t.Fatalf("containerd did not come up again: %v", err)
	}
}

// Client returns a containerd client for c that is closed when t ends.
// Callers choose the namespace through the context
// (namespaces.WithNamespace).
func (c *Containerd) Client(t testing.TB) *client.Client {
	t.Helper()
	cl, err := client.New(c.Address, client.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect to containerd: %v", err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// waitServing polls the health service until it reports SERVING, the daemon
// exits, or the timeout passes.
func waitServing(address string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("containerd exited during start-up")
		default:
		}
		if _, err := os.Stat(address); err == nil {
			ok, err := isServing(address)
			if ok {
				return nil
			}
			last = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("socket %s not serving after %s: %v", address, timeout, last)
}

func isServing(address string) (bool, error) {
	cl, err := client.New(address, client.WithTimeout(time.Second))
	if err != nil {
		return false, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return cl.IsServing(ctx)
}

// stop tears everything down in the only order that leaves nothing behind:
// shims outlive containerd, so tasks go first, through the API, while the
// daemon still runs.
func (c *Containerd) stop(t testing.TB) {
	cmd, done := c.cmd, c.done
	if c.killed { // killed by the test and not restarted: start it to purge
		if err := c.launch(); err == nil {
			cmd, done = c.cmd, c.done
			_ = waitServing(c.Address, done, 30*time.Second)
		}
	}
	select {
	case <-done:
		t.Errorf("containerd exited before the end of the test")
	default:
		if err := c.purge(); err != nil {
			t.Errorf("purge containerd %s: %v", c.Address, err)
		}
		if !stopProcess(cmd, done, 15*time.Second) {
			t.Errorf("containerd did not stop on SIGTERM within 15s; killed it")
		}
	}
	// Anything the API could not remove (or a daemon that died early) left
	// its shims running; find them by the address they were given.
	if leaked := killShims(c.Address); len(leaked) > 0 {
		t.Errorf("killed leaked containerd shims: %s", strings.Join(leaked, "; "))
	}
	// gVisor's sandboxes, gofers and waits outlive a killed shim; they name
	// a log under the daemon's state dir. (issue 7)
	if leaked := killRunsc(c.State); len(leaked) > 0 {
		t.Errorf("killed leaked runsc processes: %s", strings.Join(leaked, "; "))
	}
	if err := UnmountUnder(c.dir); err != nil {
		t.Errorf("unmount under %s: %v", c.dir, err)
	}
	removeTree(t, c.dir)
}

// purge kills every task and deletes every container, with its snapshot, in
// every namespace.
func (c *Containerd) purge() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := client.New(c.Address, client.WithTimeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer cl.Close()
	nss, err := cl.NamespaceService().List(ctx)
	if err != nil {
		return fmt.Errorf("list namespaces: %w", err)
	}
	var errs []error
	for _, ns := range nss {
		if err := purgeNamespace(namespaces.WithNamespace(ctx, ns), cl); err != nil {
			errs = append(errs, fmt.Errorf("namespace %s: %w", ns, err))
		}
	}
	return errors.Join(errs...)
}

func purgeNamespace(ctx context.Context, cl *client.Client) error {
	var errs []error
	resp, err := cl.TaskService().List(ctx, &tasksapi.ListTasksRequest{})
	if err != nil {
		return fmt.Errorf("list tasks: %w", err)
	}
	for _, task := range resp.Tasks {
		if err := killTask(ctx, cl.TaskService(), task.ID); err != nil {
			errs = append(errs, fmt.Errorf("task %s: %w", task.ID, err))
		}
	}
	ctrs, err := cl.Containers(ctx)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list containers: %w", err))...)
	}
	for _, ctr := range ctrs {
		err := ctr.Delete(ctx, client.WithSnapshotCleanup)
		if err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete container %s: %w", ctr.ID(), err))
		}
	}
	return errors.Join(errs...)
}

// killTask SIGKILLs every process of a task, waits for it to stop and
// deletes it. It uses the raw task service because the client's Task.Delete
// refuses tasks that were created but never started.
func killTask(ctx context.Context, ts tasksapi.TasksClient, id string) error {
	_, err := ts.Kill(ctx, &tasksapi.KillRequest{ContainerID: id, Signal: uint32(syscall.SIGKILL), All: true})
	if err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
		return fmt.Errorf("kill: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r, err := ts.Get(ctx, &tasksapi.GetRequest{ContainerID: id})
		if err != nil {
			if errdefs.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("get: %w", err)
		}
		if s := r.Process.Status; s == tasktypes.Status_STOPPED || s == tasktypes.Status_CREATED || s == tasktypes.Status_UNKNOWN {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := ts.Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: id}); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete: %w", err)
	}
	return nil
}

// killShims finds containerd shims started for the daemon at address (their
// command line carries "-address <address>"), force-deletes their containers
// with runc and kills them. It returns a description of each one found.
func killShims(address string) []string {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var found []string
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if !strings.Contains(filepath.Base(args[0]), "containerd-shim") || flagValue(args, "-address") != address {
			continue
		}
		var pid int
		if _, err := fmt.Sscanf(p, "/proc/%d/cmdline", &pid); err != nil {
			continue
		}
		ns, id := flagValue(args, "-namespace"), flagValue(args, "-id")
		if ns != "" && id != "" {
			// The runc-v2 shim keeps runc state under /run/containerd/runc/<ns>
			// whatever containerd's state dir is.
			_ = exec.Command("runc", "--root", filepath.Join("/run/containerd/runc", ns), "delete", "--force", id).Run()
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		found = append(found, fmt.Sprintf("pid %d namespace %s id %s", pid, ns, id))
	}
	return found
}

// killRunsc SIGKILLs the runsc processes (sandbox, gofer, wait) whose
// command line names a path below state, the state dir of a containerd
// whose shims started them, and returns a description of each. Processes
// of containers deleted just before get 5 s to finish exiting.
func killRunsc(state string) []string {
	deadline := time.Now().Add(5 * time.Second)
	for len(runscProcs(state)) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	var found []string
	for pid, line := range runscProcs(state) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		found = append(found, fmt.Sprintf("pid %d %.120s", pid, line))
	}
	return found
}

// runscProcs maps the pids of the runsc processes that name a path below
// state to their command lines.
func runscProcs(state string) map[int]string {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	found := map[int]string{}
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		line := strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
		if !strings.Contains(line, "runsc") || !strings.Contains(line, state+"/") {
			continue
		}
		var pid int
		if _, err := fmt.Sscanf(p, "/proc/%d/cmdline", &pid); err != nil {
			continue
		}
		found[pid] = line
	}
	return found
}

func flagValue(args []string, name string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == name {
			return args[i+1]
		}
	}
	return ""
}

// UnmountUnder lazily unmounts every mount point below dir, deepest first.
func UnmountUnder(dir string) error {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].Mountpoint) > len(mounts[j].Mountpoint) })
	var errs []error
	for _, m := range mounts {
		if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m.Mountpoint, err))
		}
	}
	return errors.Join(errs...)
}

// removeTree removes dir, reporting failure without stopping the cleanup.
func removeTree(t testing.TB, dir string) {
	if err := os.RemoveAll(dir); err != nil {
		t.Errorf("remove %s: %v", dir, err)
	}
}
