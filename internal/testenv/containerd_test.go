package testenv_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/moby/sys/mountinfo"

	"github.com/berth-dev/berth/internal/testenv"
)

func TestStartContainerd(t *testing.T) {
	testenv.RequireRoot(t)
	var ctd *testenv.Containerd
	t.Run("the daemon serves its socket", func(t *testing.T) {
		ctd = testenv.StartContainerd(t)
		v, err := ctd.Client(t).Version(context.Background())
		if err != nil {
			t.Fatalf("Version: %v", err)
		}
		if v.Version == "" {
			t.Errorf("got empty version")
		}
		if len(ctd.Address) >= 108 {
			t.Errorf("socket path %q is too long for a unix socket", ctd.Address)
		}
	})
	if ctd == nil {
		t.FailNow()
	}
	t.Run("cleanup removed its socket and directories", func(t *testing.T) {
		for _, p := range []string{ctd.Address, ctd.Root, ctd.State, filepath.Dir(ctd.Address)} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("%s still exists (stat error %v)", p, err)
			}
		}
	})
}

// TestStartContainerd_CleanupKillsTasks runs a real container and checks
// that the cleanup leaves no process, shim or mount behind: shims outlive
// containerd, so this is the part that matters.
func TestStartContainerd_CleanupKillsTasks(t *testing.T) {
	testenv.RequireRoot(t)
	ns := "testenv-" + randomHex(t, 4)
	t.Cleanup(func() { removeNamespaceLeftovers(t, ns) })

	var (
		ctd      *testenv.Containerd
		taskPID  uint32
		shimPIDs []int
	)
	t.Run("a container runs", func(t *testing.T) {
		reg := testenv.StartRegistry(t)
		ref := testenv.PushBusyboxImage(t, reg)
		ctd = testenv.StartContainerd(t)
		cl := ctd.Client(t)
		ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), time.Minute)
		defer cancel()

		resolver := docker.NewResolver(docker.ResolverOptions{
			Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchLocalhost)),
		})
		img, err := cl.Pull(ctx, ref, client.WithResolver(resolver), client.WithPullUnpack, client.WithPullSnapshotter("overlayfs"))
		if err != nil {
			t.Fatalf("pull %s: %v", ref, err)
		}
		ctr, err := cl.NewContainer(ctx, "sleeper",
			client.WithImage(img),
			client.WithSnapshotter("overlayfs"),
			client.WithNewSnapshot("sleeper-snap", img),
			client.WithNewSpec(oci.WithImageConfig(img)),
		)
		if err != nil {
			t.Fatalf("create container: %v", err)
		}
		logPath := filepath.Join(t.TempDir(), "sleeper.log")
		task, err := ctr.NewTask(ctx, cio.LogFile(logPath))
		if err != nil {
			t.Fatalf("create task: %v", err)
		}
		if err := task.Start(ctx); err != nil {
			t.Fatalf("start task: %v", err)
		}
		taskPID = task.Pid()
		waitFor(t, 10*time.Second, func() bool {
			b, _ := os.ReadFile(logPath)
			return strings.Contains(string(b), "busybox: started")
		}, "the busybox image to print its start line")
		shimPIDs = shimsOf(ctd.Address)
		if len(shimPIDs) == 0 {
			t.Errorf("found no shim for %s", ctd.Address)
		}
	})
	if ctd == nil || taskPID == 0 {
		t.FailNow()
	}

	t.Run("cleanup left no process, shim or mount", func(t *testing.T) {
		if alive(int(taskPID)) {
			t.Errorf("container process %d still runs", taskPID)
		}
		for _, pid := range shimPIDs {
			if alive(pid) {
				t.Errorf("shim %d still runs", pid)
			}
		}
		dir := filepath.Dir(ctd.Address)
		mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mounts {
			t.Errorf("still mounted: %s", m.Mountpoint)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s still exists", dir)
		}
	})
}

// waitFor polls cond every 50ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// alive reports whether pid exists and is not a zombie (PID 1 here does not
// reap orphans, so dead processes can linger as zombies).
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// shimsOf returns the PIDs of shims started by the containerd at address.
func shimsOf(address string) []int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []int
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if !strings.Contains(args[0], "containerd-shim") {
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-address" && args[i+1] == address {
				pid, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(p, "/proc/"), "/cmdline"))
				if err == nil {
					pids = append(pids, pid)
				}
			}
		}
	}
	return pids
}

// removeNamespaceLeftovers removes what a containerd namespace leaves on
// the host once its containers are gone: the empty per-namespace parent
// cgroups in every v1 hierarchy and the runc-v2 shim's runc state dir,
// which does not follow containerd's state dir.
func removeNamespaceLeftovers(t *testing.T, ns string) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", ns))
	dirs = append(dirs, filepath.Join("/run/containerd/runc", ns))
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
			t.Errorf("remove %s: %v", d, err)
		}
	}
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
