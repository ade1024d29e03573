package runtime_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/agent/network"
	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/containerd/containerd/v2/core/images"
)

// hostIDs reads the real uid and gid of pid from the host's /proc.
func hostIDs(t *testing.T, pid uint32) (uid, gid string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "Uid:" {
			uid = f[1]
		}
		if len(f) >= 2 && f[0] == "Gid:" {
			gid = f[1]
		}
	}
	return uid, gid
}

// TestRuntime_UserNS runs a container of a group (its network namespace,
// a CPU and memory limit, bind mounts) in the node's user namespace: root
// inside is an unprivileged id on the host, and everything else still
// works.
func TestRuntime_UserNS(t *testing.T) {
	e := newEnv(t)
	e.opts.UserNSRemap = runtime.UserNSRemapAuto
	rt := e.newRuntime(t)
	rng := rt.UserNS()
	if rng == nil {
		t.Skip("the kernel does not allow user namespaces")
	}
	if *rng != runtime.DefaultRemapRange {
		t.Fatalf("auto chose %v, want %v", *rng, runtime.DefaultRemapRange)
	}
	host := int(rng.HostID)
	ctx := context.Background()
	net := newNetworkWith(t, &network.UserNS{HostID: rng.HostID, Size: rng.Size})
	groupID := randHex(t, 16)
	att, err := net.Setup(ctx, groupID)
	if err != nil {
		t.Fatalf("network Setup: %v", err)
	}
	if att.UserNSPath == "" {
		t.Fatalf("network Setup: no user namespace in %+v", att)
	}

	// Bind sources as the agent makes them: one owned by the range's
	// root (a volume), one the host's root owns (like /etc/hosts).
	// Right under /tmp: t.TempDir's parent is closed to others, the
	// range's root included, and runc mounts as that root.
	base, err := os.MkdirTemp("/tmp", "userns-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	owned, hostOwned := filepath.Join(base, "owned"), filepath.Join(base, "host")
	for _, d := range []string{owned, hostOwned} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(owned, host, host); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostOwned, "index.html"), []byte("served from a user namespace\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	spec := e.spec(t, strings.Join([]string{
		"echo uid=$(id -u) gid=$(id -g)",
		"echo owner=$(stat -c %u:%g /bin/busybox)",
		"touch /owned/made-inside && echo owned-write=ok",
		"touch /host/nope 2>/dev/null && echo host-write=ok || echo host-write=refused",
		"echo ifaces=$(ls /sys/class/net | tr '\\n' ,)",
		"echo addr=$(ip -4 -o addr show eth0 | awk '{print $4}')",
		"httpd -f -p 8080 -h /host",
	}, "; "))
	spec.CPU = 0.5
	spec.MemoryBytes = 64 << 20
	spec.NetNSPath = att.NetNSPath
	spec.UserNSPath = att.UserNSPath
	spec.ShimGroup = groupID
	spec.Mounts = []runtime.Mount{
		{Source: owned, Destination: "/owned"},
		{Source: hostOwned, Destination: "/host"},
	}

	start := time.Now()
	if err := rt.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = rt.Remove(context.Background(), spec.ID, 0) })
	if err := rt.Start(ctx, spec.ID); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("first container (chowned image copy made): created and started in %s", time.Since(start))

	// Up to the address line, the last before httpd: the subtests read
	// the lines after the first four.
	wantLog := []string{"uid=0 gid=0\n", "owner=0:0\n", "owned-write=ok\n", "host-write=refused\n", "addr="}
	ok := eventually(10*time.Second, func() bool {
		log := readFile(t, spec.LogPath)
		for _, w := range wantLog {
			if !strings.Contains(log, w) {
				return false
			}
		}
		return true
	})
	log := readFile(t, spec.LogPath)
	if !ok {
		t.Fatalf("log: got %q, want lines %q", log, wantLog)
	}
	t.Logf("container log: %q", log)

	t.Run("root inside is the range's root on the host", func(t *testing.T) {
		infos, err := rt.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		info, ok := find(infos, spec.ID)
		if !ok || info.Pid == 0 {
			t.Fatalf("List: %+v", infos)
		}
		uid, gid := hostIDs(t, info.Pid)
		if uid != strconv.Itoa(host) || gid != strconv.Itoa(host) {
			t.Errorf("host ids of pid %d: uid %s gid %s, want %d", info.Pid, uid, gid, host)
		}
	})

	t.Run("a file made inside is owned by the range on the host", func(t *testing.T) {
		fi, err := os.Stat(filepath.Join(owned, "made-inside"))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != host || int(st.Gid) != host {
			t.Errorf("owner %d:%d, want %d:%d", st.Uid, st.Gid, host, host)
		}
		if _, err := os.Stat(filepath.Join(hostOwned, "nope")); err == nil {
			t.Error("the container wrote into a directory of the host's root")
		}
	})

	t.Run("the group network works", func(t *testing.T) {
		// A sysfs of the group's own network namespace, not the host's.
		if !strings.Contains(log, "ifaces=eth0,lo,\n") {
			t.Errorf("the container's /sys/class/net is not its own: %q", log)
		}
		if !strings.Contains(log, "addr="+att.IP+"/") {
			t.Errorf("the container's eth0 lacks %s: %q", att.IP, log)
		}
		url := "http://" + att.IP + ":8080/index.html"
		var body []byte
		ok := eventually(10*time.Second, func() bool {
			c := http.Client{Timeout: time.Second}
			resp, err := c.Get(url)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			body, _ = io.ReadAll(resp.Body)
			return resp.StatusCode == http.StatusOK
		})
		if !ok || string(body) != "served from a user namespace\n" {
			t.Errorf("GET %s: %q", url, body)
		}
	})

	t.Run("the remapped root may own as many keys as root", func(t *testing.T) {
		// Every container's session keyring belongs to the remapped root:
		// the kernel's default quota (200 keys) would cap the node.
		for name, min := range map[string]int{"maxkeys": 1000000, "maxbytes": 25000000} {
			got, err := strconv.Atoi(strings.TrimSpace(readFile(t, "/proc/sys/kernel/keys/"+name)))
			if err != nil || got < min {
				t.Errorf("kernel.keys.%s = %d (%v), want at least %d", name, got, err, min)
			}
		}
	})

	t.Run("cgroup limits apply", func(t *testing.T) {
		p := filepath.Join("/sys/fs/cgroup/memory", e.opts.CgroupParent, spec.ID, "memory.limit_in_bytes")
		if got := strings.TrimSpace(readFile(t, p)); got != strconv.Itoa(64<<20) {
			t.Errorf("%s = %q, want %d", p, got, 64<<20)
		}
		p = filepath.Join("/sys/fs/cgroup/cpu", e.opts.CgroupParent, spec.ID, "cpu.cfs_quota_us")
		if got := strings.TrimSpace(readFile(t, p)); got != "50000" {
			t.Errorf("%s = %q, want 50000", p, got)
		}
	})

	t.Run("exec joins the user namespace", func(t *testing.T) {
		var out bytes.Buffer
		code, err := rt.Exec(ctx, spec.ID, runtime.ExecSpec{ID: "e-" + randHex(t, 4), Args: []string{"sh", "-c", "id -u; touch /host/x"}, Output: &out})
		if err != nil {
			t.Fatalf("Exec: %v", err)
		}
		if code == 0 || !strings.HasPrefix(out.String(), "0\r\n") || !strings.Contains(out.String(), "Permission denied") {
			t.Errorf("exec: code %d, output %q; want uid 0 and a refused write", code, out.String())
		}
	})

	t.Run("a second container reuses the chowned image", func(t *testing.T) {
		s2 := e.spec(t, "id -u; sleep 1000")
		s2.NetNSPath = att.NetNSPath
		s2.UserNSPath = att.UserNSPath
		s2.ShimGroup = groupID
		start := time.Now()
		if err := rt.Create(ctx, s2); err != nil {
			t.Fatalf("Create: %v", err)
		}
		t.Cleanup(func() { _ = rt.Remove(context.Background(), s2.ID, 0) })
		if err := rt.Start(ctx, s2.ID); err != nil {
			t.Fatalf("Start: %v", err)
		}
		t.Logf("second container: created and started in %s", time.Since(start))
		if !eventually(10*time.Second, func() bool { return readFile(t, s2.LogPath) == "0\n" }) {
			t.Errorf("log %q, want 0", readFile(t, s2.LogPath))
		}
	})
}

// TestRuntime_UserNSLeftover: a chowned copy of an image cut short (the
// agent died during the chown) does not block later containers.
func TestRuntime_UserNSLeftover(t *testing.T) {
	// A first container makes the copy; its name is the one a later
	// container looks for.
	e, rt, copyKey := remappedCopy(t)
	ctx := context.Background()
	rctx, cl := e.raw(t)
	sn := cl.SnapshotService(runtime.DefaultSnapshotter)
	parent, err := sn.Stat(rctx, copyKey)
	if err != nil {
		t.Fatal(err)
	}
	// As if the agent had died between Prepare and Commit of the copy.
	if err := sn.Remove(rctx, copyKey); err != nil {
		t.Fatalf("remove the copy %s: %v", copyKey, err)
	}
	if _, err := sn.Prepare(rctx, copyKey+"-remap", parent.Parent); err != nil {
		t.Fatalf("make a half-made copy: %v", err)
	}

	spec := e.spec(t, "id -u; sleep 1000")
	if err := rt.Create(ctx, spec); err != nil {
		t.Fatalf("Create after a half-made copy: %v", err)
	}
	t.Cleanup(func() { _ = rt.Remove(context.Background(), spec.ID, 0) })
	if err := rt.Start(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	if !eventually(10*time.Second, func() bool { return readFile(t, spec.LogPath) == "0\n" }) {
		t.Errorf("log %q, want 0", readFile(t, spec.LogPath))
	}
	if _, err := sn.Stat(rctx, copyKey+"-remap"); err == nil {
		t.Error("the half-made copy is still there")
	}
}

// TestRuntime_UserNSCopyOutlivesContainers: the chowned copy of an image
// lives as long as the image, so that a group created after the last
// container of the image was deleted does not pay for the copy again.
func TestRuntime_UserNSCopyOutlivesContainers(t *testing.T) {
	e, _, copyKey := remappedCopy(t)
	rctx, cl := e.raw(t)
	sn := cl.SnapshotService(runtime.DefaultSnapshotter)

	// A synchronous image delete runs containerd's garbage collector at
	// once: delete a second name of the same image.
	img, err := cl.ImageService().Get(rctx, e.image)
	if err != nil {
		t.Fatal(err)
	}
	img.Name, img.Labels = "gc-trigger-"+randHex(t, 4), nil
	if _, err := cl.ImageService().Create(rctx, img); err != nil {
		t.Fatal(err)
	}
	if err := cl.ImageService().Delete(rctx, img.Name, images.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Stat(rctx, copyKey); err != nil {
		t.Fatalf("the chowned copy %s did not outlive its last container: %v", copyKey, err)
	}

	// Once the image goes, its copy goes with it.
	if err := cl.ImageService().Delete(rctx, e.image, images.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Stat(rctx, copyKey); err == nil {
		t.Errorf("the chowned copy %s outlived its image", copyKey)
	}
}

// remappedCopy starts a runtime that remaps, creates and removes one
// container, and returns the key of the chowned image copy it sat on.
func remappedCopy(t *testing.T) (*env, *runtime.Runtime, string) {
	t.Helper()
	e := newEnv(t)
	e.opts.UserNSRemap = runtime.UserNSRemapAuto
	rt := e.newRuntime(t)
	if rt.UserNS() == nil {
		t.Skip("the kernel does not allow user namespaces")
	}
	ctx := context.Background()
	rctx, cl := e.raw(t)
	spec := e.spec(t, "sleep 1000")
	if err := rt.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	info, err := cl.SnapshotService(runtime.DefaultSnapshotter).Stat(rctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Remove(ctx, spec.ID, 0); err != nil {
		t.Fatal(err)
	}
	return e, rt, info.Parent
}
