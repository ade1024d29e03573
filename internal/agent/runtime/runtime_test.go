package runtime_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"

	"github.com/berth-dev/berth/internal/agent/network"
	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/imagebuild"
	"github.com/berth-dev/berth/internal/testenv"
)

// env is a private containerd and registry, with the busybox image pushed,
// and a Runtime on them.
type env struct {
	ctd   *testenv.Containerd
	reg   *testenv.Registry
	image string
	opts  runtime.Options
	rt    *runtime.Runtime
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testenv.RequireRoot(t)
	// Created first so that it is removed last, after containerd has
	// deleted the containers whose runc state and cgroups live there.
	stateDir := t.TempDir()
	cgroupParent := "/berth-test-" + randHex(t, 4)
	t.Cleanup(func() { removeCgroups(t, cgroupParent) })

	ctd := testenv.StartContainerd(t)
	reg := testenv.StartRegistry(t)
	e := &env{
		ctd:   ctd,
		reg:   reg,
		image: testenv.PushBusyboxImage(t, reg),
		opts: runtime.Options{
			Address:            ctd.Address,
			InsecureRegistries: []string{reg.Addr},
			StateDir:           stateDir,
			CgroupParent:       cgroupParent,
		},
	}
	e.rt = e.newRuntime(t)
	if err := e.rt.Pull(context.Background(), e.image, nil); err != nil {
		t.Fatalf("Pull %s: %v", e.image, err)
	}
	return e
}

// newRuntime connects another Runtime, as an agent restart would.
func (e *env) newRuntime(t *testing.T) *runtime.Runtime {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	rt, err := runtime.New(ctx, e.opts)
	if err != nil {
		t.Fatalf("runtime.New: %v", err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

// raw returns a plain containerd client and a context in Berth's namespace,
// to check what the Runtime did behind its back.
func (e *env) raw(t *testing.T) (context.Context, *client.Client) {
	return namespaces.WithNamespace(context.Background(), runtime.Namespace), e.ctd.Client(t)
}

// spec is a busybox container running script, logging to a temp file.
func (e *env) spec(t *testing.T, script string) runtime.ContainerSpec {
	return runtime.ContainerSpec{
		ID:      "c-" + randHex(t, 8),
		Image:   e.image,
		Args:    []string{"/bin/sh", "-c", script},
		LogPath: filepath.Join(t.TempDir(), "c.log"),
	}
}

// removeCgroups removes the (by then empty) cgroup parent from every
// hierarchy.
func removeCgroups(t *testing.T, parent string) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("remove cgroup %s: %v", d, err)
		}
	}
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func randInt(t *testing.T, n int64) int {
	t.Helper()
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		t.Fatal(err)
	}
	return int(v.Int64())
}

// eventually polls cond every 50 ms until it holds or timeout passes.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}

func find(infos []runtime.Info, id string) (runtime.Info, bool) {
	i := slices.IndexFunc(infos, func(i runtime.Info) bool { return i.ID == id })
	if i < 0 {
		return runtime.Info{}, false
	}
	return infos[i], true
}

func waitExit(t *testing.T, ch <-chan runtime.Exit, timeout time.Duration) runtime.Exit {
	t.Helper()
	select {
	case ex, ok := <-ch:
		if !ok {
			t.Fatalf("Wait channel closed without an exit")
		}
		return ex
	case <-time.After(timeout):
		t.Fatalf("no exit within %s", timeout)
	}
	return runtime.Exit{}
}

func TestRuntime_Pull(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	t.Run("the image is present and unpacked", func(t *testing.T) {
		rctx, cl := e.raw(t)
		img, err := cl.GetImage(rctx, e.image)
		if err != nil {
			t.Fatalf("GetImage: %v", err)
		}
		if ok, err := img.IsUnpacked(rctx, runtime.DefaultSnapshotter); err != nil || !ok {
			t.Errorf("IsUnpacked: got %v, %v; want true", ok, err)
		}
	})

	t.Run("pulling a present image again succeeds", func(t *testing.T) {
		if err := e.rt.Pull(ctx, e.image, nil); err != nil {
			t.Errorf("Pull: %v", err)
		}
	})

	t.Run("a missing tag is not found", func(t *testing.T) {
		err := e.rt.Pull(ctx, e.reg.Ref("berth/busybox:missing"), nil)
		if !errdefs.IsNotFound(err) {
			t.Errorf("got %v, want not found", err)
		}
	})

	t.Run("a missing repository is not found", func(t *testing.T) {
		err := e.rt.Pull(ctx, e.reg.Ref("berth/nothing:1"), nil)
		if !errdefs.IsNotFound(err) {
			t.Errorf("got %v, want not found", err)
		}
	})

	t.Run("an invalid reference is an invalid argument", func(t *testing.T) {
		if err := e.rt.Pull(ctx, "Not/Valid", nil); !errdefs.IsInvalidArgument(err) {
			t.Errorf("got %v, want invalid argument", err)
		}
	})

	t.Run("a registry that refuses connections is unavailable", func(t *testing.T) {
		// Port 1 on loopback: nothing listens there.
		if err := e.rt.Pull(ctx, "127.0.0.1:1/berth/busybox:1", nil); !errdefs.IsUnavailable(err) {
			t.Errorf("got %v, want unavailable", err)
		}
	})
}

func TestRuntime_PullWithAuth(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	user, pass := "berth", "s3cret-"+randHex(t, 4)
	reg := testenv.StartRegistryWithAuth(t, user, pass)
	img, err := imagebuild.BusyboxImage()
	if err != nil {
		t.Fatalf("BusyboxImage: %v", err)
	}
	ref := reg.Ref("private/busybox:1")
	testenv.PushImage(t, ref, img, &imagebuild.Basic{Username: user, Password: pass})

	t.Run("without credentials it is unauthenticated", func(t *testing.T) {
		if err := e.rt.Pull(ctx, ref, nil); !errdefs.IsUnauthorized(err) {
			t.Errorf("got %v, want unauthenticated", err)
		}
	})
	t.Run("with a wrong password it is unauthenticated", func(t *testing.T) {
		auth := []runtime.RegistryAuth{{Server: reg.Addr, Username: user, Password: "wrong"}}
		if err := e.rt.Pull(ctx, ref, auth); !errdefs.IsUnauthorized(err) {
			t.Errorf("got %v, want unauthenticated", err)
		}
	})
	t.Run("credentials for another registry are not sent", func(t *testing.T) {
		auth := []runtime.RegistryAuth{{Server: "other.example:5000", Username: user, Password: pass}}
		if err := e.rt.Pull(ctx, ref, auth); !errdefs.IsUnauthorized(err) {
			t.Errorf("got %v, want unauthenticated", err)
		}
	})
	t.Run("with the credentials it succeeds", func(t *testing.T) {
		auth := []runtime.RegistryAuth{{Server: "http://" + reg.Addr, Username: user, Password: pass}}
		if err := e.rt.Pull(ctx, ref, auth); err != nil {
			t.Errorf("Pull: %v", err)
		}
	})
}

func TestRuntime_Container(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rctx, cl := e.raw(t)

	net := newNetwork(t)
	groupID := randHex(t, 16)
	att, err := net.Setup(ctx, groupID)
	if err != nil {
		t.Fatalf("network Setup: %v", err)
	}

	shared := t.TempDir()
	if err := os.WriteFile(filepath.Join(shared, "note"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := e.spec(t, "echo hi; cat /mnt/shared/note; hostname; echo env=$GREETING; sleep 1000")
	spec.CPU = 0.5
	spec.MemoryBytes = 64 << 20
	spec.NetNSPath = att.NetNSPath
	spec.Hostname = "web-host"
	spec.Env = []string{"GREETING=hello", "PATH=/bin"}
	spec.Mounts = []runtime.Mount{{Source: shared, Destination: "/mnt/shared", ReadOnly: true}}
	spec.ShimGroup = groupID
	spec.Labels = map[string]string{
		runtime.LabelGroup:      "sub/rg/web",
		runtime.LabelGroupUID:   groupID,
		runtime.LabelContainer:  "web",
		runtime.LabelGeneration: "1",
	}

	if err := e.rt.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	infos, err := e.rt.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if got, ok := find(infos, spec.ID); !ok || got.Status != runtime.StatusCreated || !got.HasTask || !got.StartedAt.IsZero() {
		t.Errorf("after Create: got %+v, want a created task without start time", got)
	}

	before := time.Now()
	if err := e.rt.Start(ctx, spec.ID); err != nil {
		t.Fatalf("Start: %v", err)
	}
	after := time.Now()

	t.Run("the output reaches the log file", func(t *testing.T) {
		want := []string{"hi\n", "from the host\n", "web-host\n", "env=hello\n"}
		ok := eventually(10*time.Second, func() bool {
			log := readFile(t, spec.LogPath)
			return !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(log, w) })
		})
		if !ok {
			t.Errorf("log %s: got %q, want lines %q", spec.LogPath, readFile(t, spec.LogPath), want)
		}
	})

	var pid uint32
	t.Run("List shows it running with its labels and start time", func(t *testing.T) {
		infos, err := e.rt.List(ctx)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		got, ok := find(infos, spec.ID)
		if !ok {
			t.Fatalf("List: %s missing from %+v", spec.ID, infos)
		}
		if got.Status != runtime.StatusRunning || got.Pid == 0 || !got.HasTask {
			t.Errorf("got status %q pid %d task %v, want running with a pid", got.Status, got.Pid, got.HasTask)
		}
		for k, v := range spec.Labels {
			if got.Labels[k] != v {
				t.Errorf("label %s: got %q, want %q", k, got.Labels[k], v)
			}
		}
		if got.StartedAt.Before(before.Add(-time.Second)) || got.StartedAt.After(after.Add(time.Second)) {
			t.Errorf("got StartedAt %v, want between %v and %v", got.StartedAt, before, after)
		}
		if got.CreatedAt.IsZero() {
			t.Errorf("got zero CreatedAt")
		}
		one, err := e.rt.Get(ctx, spec.ID)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if one.Status != got.Status || one.Pid != got.Pid || !one.StartedAt.Equal(got.StartedAt) {
			t.Errorf("Get: got %+v, want %+v", one, got)
		}
		pid = got.Pid
	})

	t.Run("it runs in the group's network namespace", func(t *testing.T) {
		if pid == 0 {
			t.Skip("no pid")
		}
		var want, got syscall.Stat_t
		if err := syscall.Stat(att.NetNSPath, &want); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &got); err != nil {
			t.Fatal(err)
		}
		if got.Ino != want.Ino {
			t.Errorf("container netns inode %d, want %d (the group's)", got.Ino, want.Ino)
		}
	})

	t.Run("the cgroup enforces the CPU and memory limits", func(t *testing.T) {
		ctr, err := cl.LoadContainer(rctx, spec.ID)
		if err != nil {
			t.Fatalf("LoadContainer: %v", err)
		}
		s, err := ctr.Spec(rctx)
		if err != nil {
			t.Fatalf("Spec: %v", err)
		}
		cg := s.Linux.CgroupsPath
		if want := e.opts.CgroupParent + "/" + spec.ID; cg != want {
			t.Errorf("cgroupsPath %q, want %q", cg, want)
		}
		for file, want := range map[string]string{
			filepath.Join("/sys/fs/cgroup/cpu", cg, "cpu.cfs_quota_us"):         "50000",
			filepath.Join("/sys/fs/cgroup/cpu", cg, "cpu.cfs_period_us"):        "100000",
			filepath.Join("/sys/fs/cgroup/memory", cg, "memory.limit_in_bytes"): "67108864",
		} {
			if got := strings.TrimSpace(readFile(t, file)); got != want {
				t.Errorf("%s: got %q, want %q", file, got, want)
			}
		}
		procs := readFile(t, filepath.Join("/sys/fs/cgroup/memory", cg, "cgroup.procs"))
		if !slices.Contains(strings.Fields(procs), strconv.Itoa(int(pid))) {
			t.Errorf("pid %d not in the container's memory cgroup (procs %q)", pid, procs)
		}
	})

	t.Run("runc keeps its state under StateDir", func(t *testing.T) {
		dir := filepath.Join(e.opts.StateDir, "runc", runtime.Namespace, spec.ID)
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("runc state %s: %v", dir, err)
		}
	})

	t.Run("creating it again is already exists and leaves it running", func(t *testing.T) {
		err := e.rt.Create(ctx, spec)
		if !errdefs.IsAlreadyExists(err) {
			t.Errorf("got %v, want already exists", err)
		}
		got, err := e.rt.Get(ctx, spec.ID)
		if err != nil || got.Status != runtime.StatusRunning {
			t.Errorf("Get: got %+v, %v; want it still running", got, err)
		}
	})

	t.Run("Remove leaves no container, task, snapshot or cgroup", func(t *testing.T) {
		// sh as PID 1 ignores SIGTERM: this also covers the SIGKILL.
		start := time.Now()
		if err := e.rt.Remove(ctx, spec.ID, 500*time.Millisecond); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		if d := time.Since(start); d < 500*time.Millisecond {
			t.Errorf("Remove took %s, want the grace period before SIGKILL", d)
		}
		if _, err := cl.LoadContainer(rctx, spec.ID); !errdefs.IsNotFound(err) {
			t.Errorf("LoadContainer: got %v, want not found", err)
		}
		if _, err := cl.TaskService().Get(rctx, &tasksapi.GetRequest{ContainerID: spec.ID}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
			t.Errorf("task Get: got %v, want not found", err)
		}
		if _, err := cl.SnapshotService(runtime.DefaultSnapshotter).Stat(rctx, spec.ID); !errdefs.IsNotFound(err) {
			t.Errorf("snapshot Stat: got %v, want not found", err)
		}
		for _, c := range []string{"cpu", "memory"} {
			dir := filepath.Join("/sys/fs/cgroup", c, e.opts.CgroupParent, spec.ID)
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("cgroup %s: got %v, want it gone", dir, err)
			}
		}
		infos, err := e.rt.List(ctx)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if _, ok := find(infos, spec.ID); ok {
			t.Errorf("List still has %s", spec.ID)
		}
		if _, err := e.rt.Get(ctx, spec.ID); !errdefs.IsNotFound(err) {
			t.Errorf("Get: got %v, want not found", err)
		}
	})

	t.Run("removing it again succeeds", func(t *testing.T) {
		if err := e.rt.Remove(ctx, spec.ID, time.Second); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
}

func TestRuntime_ExitCode(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	spec := e.spec(t, "echo bye; exit 3")
	if err := e.rt.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = e.rt.Remove(context.Background(), spec.ID, 0) })

	// Waiting before Start is how the agent never misses a quick exit.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	exited, err := e.rt.Wait(wctx, spec.ID)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if err := e.rt.Start(ctx, spec.ID); err != nil {
		t.Fatalf("Start: %v", err)
	}
	ex := waitExit(t, exited, 20*time.Second)
	if ex.Code != 3 || ex.At.IsZero() {
		t.Errorf("Wait: got %+v, want code 3 with a time", ex)
	}

	got, err := e.rt.Get(ctx, spec.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.Status != runtime.StatusStopped || got.ExitCode != 3 || got.ExitedAt.IsZero() || got.StartedAt.IsZero() {
		t.Errorf("Get: got %+v, want stopped with code 3, exit and start times", got)
	}
	if !got.ExitedAt.Equal(ex.At) {
		t.Errorf("ExitedAt %v, want Wait's %v", got.ExitedAt, ex.At)
	}

	again, err := e.rt.Wait(ctx, spec.ID)
	if err != nil {
		t.Fatalf("Wait after exit: %v", err)
	}
	if ex := waitExit(t, again, 5*time.Second); ex.Code != 3 {
		t.Errorf("Wait after exit: got %+v, want code 3", ex)
	}
	if !strings.Contains(readFile(t, spec.LogPath), "bye") {
		t.Errorf("log: got %q, want bye", readFile(t, spec.LogPath))
	}

	if err := e.rt.Remove(ctx, spec.ID, time.Second); err != nil {
		t.Errorf("Remove of an exited container: %v", err)
	}
}

func TestRuntime_WaitEndsWithContext(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	spec := e.spec(t, "sleep 1000")
	if err := e.rt.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = e.rt.Remove(context.Background(), spec.ID, 0) })
	if err := e.rt.Start(ctx, spec.ID); err != nil {
		t.Fatalf("Start: %v", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	exited, err := e.rt.Wait(wctx, spec.ID)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	cancel()
	select {
	case ex, ok := <-exited:
		if ok {
			t.Errorf("got exit %+v, want the channel closed", ex)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("channel still open 5s after the context ended")
	}

	if _, err := e.rt.Wait(ctx, "no-such-container"); !errdefs.IsNotFound(err) {
		t.Errorf("Wait of a missing container: got %v, want not found", err)
	}
}

func TestRuntime_Adopt(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// The container exits 5 once the host creates the file "stop".
	shared := t.TempDir()
	spec := e.spec(t, "while [ ! -e /mnt/shared/stop ]; do sleep 0.1; done; exit 5")
	spec.Mounts = []runtime.Mount{{Source: shared, Destination: "/mnt/shared"}}
	spec.Labels = map[string]string{runtime.LabelContainer: "job"}

	first := e.newRuntime(t)
	if err := first.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := first.Start(ctx, spec.ID); err != nil {
		t.Fatalf("Start: %v", err)
	}
	started, err := first.Get(ctx, spec.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	second := e.newRuntime(t)
	infos, err := second.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	got, ok := find(infos, spec.ID)
	if !ok || got.Status != runtime.StatusRunning || got.Pid != started.Pid || got.Labels[runtime.LabelContainer] != "job" {
		t.Fatalf("List after reconnect: got %+v, want it running with pid %d", got, started.Pid)
	}

	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	exited, err := second.Wait(wctx, spec.ID)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	select {
	case ex := <-exited:
		t.Fatalf("got exit %+v before the container was told to stop", ex)
	case <-time.After(300 * time.Millisecond):
	}
	if err := os.WriteFile(filepath.Join(shared, "stop"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if ex := waitExit(t, exited, 20*time.Second); ex.Code != 5 {
		t.Errorf("Wait: got %+v, want code 5", ex)
	}
	if err := second.Remove(ctx, spec.ID, time.Second); err != nil {
		t.Errorf("Remove: %v", err)
	}
}

func TestRuntime_CreateFailures(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rctx, cl := e.raw(t)

	t.Run("an image that was not pulled is not found", func(t *testing.T) {
		spec := e.spec(t, "true")
		spec.Image = e.reg.Ref("berth/unpulled:1")
		if err := e.rt.Create(ctx, spec); !errdefs.IsNotFound(err) {
			t.Errorf("got %v, want not found", err)
		}
	})

	t.Run("an invalid id is an invalid argument and leaves nothing", func(t *testing.T) {
		spec := e.spec(t, "true")
		spec.ID = "bad/id"
		if err := e.rt.Create(ctx, spec); !errdefs.IsInvalidArgument(err) {
			t.Errorf("got %v, want invalid argument", err)
		}
	})

	t.Run("a task that cannot be created is rolled back", func(t *testing.T) {
		spec := e.spec(t, "true")
		// runc cannot bind-mount a source that does not exist.
		spec.Mounts = []runtime.Mount{{Source: "/nonexistent-" + randHex(t, 4), Destination: "/x"}}
		if err := e.rt.Create(ctx, spec); err == nil {
			t.Fatalf("Create: got nil error, want the mount to fail")
		}
		if _, err := cl.LoadContainer(rctx, spec.ID); !errdefs.IsNotFound(err) {
			t.Errorf("LoadContainer: got %v, want not found", err)
		}
		if _, err := cl.SnapshotService(runtime.DefaultSnapshotter).Stat(rctx, spec.ID); !errdefs.IsNotFound(err) {
			t.Errorf("snapshot Stat: got %v, want not found", err)
		}
	})

	t.Run("removing a container that never existed succeeds", func(t *testing.T) {
		if err := e.rt.Remove(ctx, "never-"+randHex(t, 4), time.Second); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})

	t.Run("a leftover snapshot does not block Create", func(t *testing.T) {
		spec := e.spec(t, "sleep 1000")
		sn := cl.SnapshotService(runtime.DefaultSnapshotter)
		// gc.root keeps containerd's garbage collector from taking it first.
		if _, err := sn.Prepare(rctx, spec.ID, "", snapshots.WithLabels(map[string]string{"containerd.io/gc.root": "x"})); err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		if err := e.rt.Create(ctx, spec); err != nil {
			t.Fatalf("Create: %v", err)
		}
		if err := e.rt.Remove(ctx, spec.ID, 0); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		if _, err := sn.Stat(rctx, spec.ID); !errdefs.IsNotFound(err) {
			t.Errorf("snapshot Stat: got %v, want not found", err)
		}
	})

	t.Run("a container without a task is unknown and removable", func(t *testing.T) {
		// What a reboot leaves: containerd's metadata, no task.
		id := "notask-" + randHex(t, 4)
		if _, err := cl.NewContainer(rctx, id, client.WithNewSpec(), client.WithContainerLabels(map[string]string{runtime.LabelContainer: "x"})); err != nil {
			t.Fatalf("NewContainer: %v", err)
		}
		got, err := e.rt.Get(ctx, id)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if got.Status != runtime.StatusUnknown || got.HasTask || got.Pid != 0 || got.Labels[runtime.LabelContainer] != "x" {
			t.Errorf("Get: got %+v, want unknown without task", got)
		}
		infos, err := e.rt.List(ctx)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if l, ok := find(infos, id); !ok || l.Status != runtime.StatusUnknown || l.HasTask {
			t.Errorf("List: got %+v (found %v), want unknown without task", l, ok)
		}
		if _, err := e.rt.Wait(ctx, id); !errdefs.IsNotFound(err) {
			t.Errorf("Wait: got %v, want not found", err)
		}
		if err := e.rt.Remove(ctx, id, time.Second); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		if _, err := cl.LoadContainer(rctx, id); !errdefs.IsNotFound(err) {
			t.Errorf("LoadContainer: got %v, want not found", err)
		}
	})

	t.Run("a created, never started container is removed at once", func(t *testing.T) {
		spec := e.spec(t, "sleep 1000")
		if err := e.rt.Create(ctx, spec); err != nil {
			t.Fatalf("Create: %v", err)
		}
		start := time.Now()
		if err := e.rt.Remove(ctx, spec.ID, 10*time.Second); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Remove took %s, want no grace period for a task that never started", d)
		}
		if _, err := cl.LoadContainer(rctx, spec.ID); !errdefs.IsNotFound(err) {
			t.Errorf("LoadContainer: got %v, want not found", err)
		}
	})
}

func TestNew_InvalidOptions(t *testing.T) {
	ctx := context.Background()
	for name, opts := range map[string]runtime.Options{
		"a missing address":        {StateDir: t.TempDir()},
		"a missing state dir":      {Address: "/run/x.sock"},
		"a relative state dir":     {Address: "/run/x.sock", StateDir: "state"},
		"a relative cgroup parent": {Address: "/run/x.sock", StateDir: t.TempDir(), CgroupParent: "berth"},
	} {
		t.Run(name+" is refused", func(t *testing.T) {
			if _, err := runtime.New(ctx, opts); !errdefs.IsInvalidArgument(err) {
				t.Errorf("got %v, want invalid argument", err)
			}
		})
	}
}

// newNetwork is a network Manager on a bridge and /24 of its own, removed
// when t ends.
func newNetwork(t *testing.T) *network.Manager { return newNetworkWith(t, nil) }

// newNetworkWith is newNetwork whose namespaces belong to user namespaces
// mapped by userns (none when nil).
func newNetworkWith(t *testing.T, userns *network.UserNS) *network.Manager {
	t.Helper()
	bridge := "bt" + randHex(t, 3)
	opts := network.Options{
		Dir:    t.TempDir(),
		Bridge: bridge,
		Subnet: fmt.Sprintf("10.%d.%d.0/24", 231+randInt(t, 20), randInt(t, 256)),
		UserNS: userns,
	}
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join("/sys/class/net", bridge)); err == nil {
			if err := deleteLink(bridge); err != nil {
				t.Errorf("delete bridge %s: %v", bridge, err)
			}
		}
	})
	m, err := network.New(opts)
	if err != nil {
		t.Fatalf("network.New: %v", err)
	}
	t.Cleanup(func() {
		ids, _ := m.List()
		for _, id := range ids {
			if err := m.Teardown(context.Background(), id); err != nil {
				t.Errorf("network Teardown %s: %v", id, err)
			}
		}
	})
	return m
}

func deleteLink(name string) error {
	out, err := exec.Command("ip", "link", "del", name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}
