package e2e

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerinstance/armcontainerinstance/v2"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testenv"
	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// securityPidsLimit is the server's --pids-limit in TestSecurity: low,
// so that the test can reach it quickly.
const securityPidsLimit = 40

// sh runs script with /bin/sh -c in a container through an exec session
// and returns what it printed and its exit code.
func (e *env) sh(ctx context.Context, t *testing.T, group, container, script string) (string, int) {
	t.Helper()
	out, code, err := e.execOut(ctx, group, container, script)
	if err != nil {
		t.Fatalf("exec %q: %v", script, err)
	}
	return out, code
}

// shellQuote quotes s as one shell word.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// TestSecurity: what a workload cannot do, under each isolation level:
// hardened runc, and gVisor sandboxes. Each case runs a command in a real
// container and checks that it was refused.
//
// `make test` runs the end-to-end suite once per level (see
// testenv.DefaultIsolation), so each run checks its own level.
func TestSecurity(t *testing.T) {
	level := testenv.DefaultIsolation()
	t.Run(level, func(t *testing.T) {
		t.Parallel()
		securitySuite(t, level)
	})
}

func securitySuite(t *testing.T, level string) {
	// One host port is allowed to groups; another, as every port by
	// default, is not.
	allowedPort, deniedPort := freePort(t), freePort(t)
	e := newEnvOpts(t, testenv.ServerOptions{Isolation: level, ExtraArgs: []string{
		"--pids-limit", strconv.Itoa(securityPidsLimit), "--allow-host-port", "tcp:" + strconv.Itoa(allowedPort)}})
	busybox := testenv.PushBusyboxImage(t, e.reg)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	sleeper := []*string{to.Ptr("/bin/sh"), to.Ptr("-c"), to.Ptr("trap 'exit 0' TERM; while true; do sleep 1; done")}
	// Group "victim" keeps a secret in its emptyDir volume; "intruder"
	// tries to get at it and at the host.
	victim := busyboxGroup(busybox, "app", "Always", []*string{to.Ptr("/bin/sh"), to.Ptr("-c"),
		to.Ptr("echo victim-secret > /data/secret; trap 'exit 0' TERM; while true; do sleep 1; done")})
	victim.Properties.Volumes = []*armcontainerinstance.Volume{{Name: to.Ptr("data"), EmptyDir: map[string]any{}}}
	victim.Properties.Containers[0].Properties.VolumeMounts = []*armcontainerinstance.VolumeMount{{Name: to.Ptr("data"), MountPath: to.Ptr("/data")}}
	if _, err := e.create(ctx, t, "victim", victim); err != nil {
		t.Fatal(err)
	}
	if _, err := e.create(ctx, t, "intruder", busyboxGroup(busybox, "app", "Always", sleeper)); err != nil {
		t.Fatal(err)
	}
	e.waitRunning(ctx, t, "victim")
	e.waitRunning(ctx, t, "intruder")
	if out, code := e.sh(ctx, t, "victim", "app", "cat /data/secret"); code != 0 || !strings.Contains(out, "victim-secret") {
		t.Fatalf("victim's own volume: exit %d, %q", code, out)
	}

	t.Run("host processes are not visible", func(t *testing.T) {
		// The host runs containerd and berth server; the container must
		// see neither, nor more processes than its own few.
		out, code := e.sh(ctx, t, "intruder", "app", "ls /proc | grep -c '^[0-9]'; cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
		lines := strings.SplitN(strings.TrimSpace(out), "\n", 2)
		n, err := strconv.Atoi(strings.TrimSpace(lines[0]))
		if code != 0 || err != nil || len(lines) < 2 {
			t.Fatalf("exit %d, output %q", code, out)
		}
		host, _ := filepath.Glob("/proc/[0-9]*")
		if n > 10 || n >= len(host) {
			t.Errorf("the container sees %d processes (the host has %d)", n, len(host))
		}
		if !strings.Contains(lines[1], "while true") {
			t.Errorf("the container's own command is not among its processes: %q", lines[1])
		}
		for _, hostOnly := range []string{"containerd", "berth server", "docker-registry"} {
			if strings.Contains(lines[1], hostOnly) {
				t.Errorf("the container sees the host's %s: %q", hostOnly, lines[1])
			}
		}
	})

	if level == "sandboxed" {
		t.Run("the kernel is gVisor's, not the host's", func(t *testing.T) {
			var host unix.Utsname
			if err := unix.Uname(&host); err != nil {
				t.Fatal(err)
			}
			out, code := e.sh(ctx, t, "intruder", "app", "uname -r; dmesg | head -3")
			if code != 0 || strings.Contains(out, unix.ByteSliceToString(host.Release[:])) || !strings.Contains(out, "gVisor") {
				t.Errorf("exit %d, output %q (host kernel %s)", code, out, unix.ByteSliceToString(host.Release[:]))
			}
		})
	}

	t.Run("another group's volume is out of reach", func(t *testing.T) {
		// The victim's volume lives under the server's data dir on the host;
		// neither that path nor the secret exists in the intruder's view.
		out, code := e.sh(ctx, t, "intruder", "app",
			"ls "+shellQuote(e.srv.DataDir)+" 2>&1; grep -rs victim-secret /tmp /data /mnt /var /srv /home /root 2>&1; echo done")
		if code != 0 || !strings.Contains(out, "No such file or directory") || strings.Contains(out, "victim-secret") {
			t.Errorf("exit %d, output %q", code, out)
		}
	})

	t.Run("mounting a filesystem is refused", func(t *testing.T) {
		out, code := e.sh(ctx, t, "intruder", "app", "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m")
		if code == 0 || !strings.Contains(strings.ToLower(out), "permission denied") && !strings.Contains(out, "Operation not permitted") {
			t.Errorf("mount: exit %d, output %q", code, out)
		}
	})

	t.Run("loading a kernel module is refused", func(t *testing.T) {
		// A page of zeros gets past busybox's own checks to init_module,
		// where the kernel (capability and seccomp) refuses it.
		out, code := e.sh(ctx, t, "intruder", "app", "dd if=/dev/zero of=/tmp/x.ko bs=4096 count=1 2>/dev/null && insmod /tmp/x.ko")
		if code == 0 || !strings.Contains(out, "Operation not permitted") {
			t.Errorf("insmod: exit %d, output %q", code, out)
		}
	})

	t.Run("the network cannot be changed", func(t *testing.T) {
		// Each change is refused (runc: EPERM; gVisor refuses the
		// interface ioctl as unsupported), and nothing changed after.
		out, _ := e.sh(ctx, t, "intruder", "app",
			"ip link set lo down; ip addr add 192.0.2.10/32 dev eth0; ip route add 198.51.100.0/24 dev eth0; echo ---; ip link show lo; ip addr; ip route")
		refused, after, _ := strings.Cut(out, "---")
		if n := strings.Count(refused, "ip: "); n != 3 {
			t.Errorf("%d of 3 changes refused: %q", n, refused)
		}
		if !strings.Contains(after, "UP") || strings.Contains(after, "192.0.2.10") || strings.Contains(after, "198.51.100.") {
			t.Errorf("the network changed: %q", after)
		}
	})

	t.Run("dangerous capabilities are not held", func(t *testing.T) {
		out, code := e.sh(ctx, t, "intruder", "app", "grep CapEff /proc/self/status")
		fields := strings.Fields(out)
		if code != 0 || len(fields) < 2 {
			t.Fatalf("exit %d, output %q", code, out)
		}
		capEff, err := strconv.ParseUint(fields[1], 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		for name, bit := range map[string]uint{"CAP_NET_ADMIN": 12, "CAP_SYS_MODULE": 16, "CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21} {
			if capEff&(1<<bit) != 0 {
				t.Errorf("the container holds %s (CapEff %s)", name, fields[1])
			}
		}
	})

	t.Run("the host is out of reach but for allowed ports", func(t *testing.T) {
		// Two services of the host, on its address on the group bridge:
		// each greets whoever connects and counts them.
		gw := netip.MustParsePrefix(e.srv.Subnet).Masked().Addr().Next().String()
		var accepted [2]atomic.Int32
		for i, port := range []int{allowedPort, deniedPort} {
			ln, err := net.Listen("tcp", net.JoinHostPort(gw, strconv.Itoa(port)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					accepted[i].Add(1)
					_, _ = c.Write([]byte("host-service\n"))
					c.Close()
				}
			}()
		}
		out, _ := e.sh(ctx, t, "intruder", "app", "nc -w 3 "+gw+" "+strconv.Itoa(allowedPort)+" </dev/null")
		if !strings.Contains(out, "host-service") || accepted[0].Load() == 0 {
			t.Errorf("allowed host port %d: output %q, accepted %d", allowedPort, out, accepted[0].Load())
		}
		out, code := e.sh(ctx, t, "intruder", "app", "nc -w 3 "+gw+" "+strconv.Itoa(deniedPort)+" </dev/null")
		if code == 0 || strings.Contains(out, "host-service") || accepted[1].Load() != 0 {
			t.Errorf("host port %d: exit %d, output %q, accepted %d; want the connection dropped", deniedPort, code, out, accepted[1].Load())
		}
	})

	// Last: it fills the container's process table for a while.
	t.Run("the process limit holds", func(t *testing.T) {
		if level == "sandboxed" {
			sandboxedPidsLimit(ctx, t, e)
			return
		}
		id := e.containerID(ctx, t, "intruder", "app")
		cg := filepath.Join("/sys/fs/cgroup/pids/berth", id)
		if b, err := os.ReadFile(filepath.Join(cg, "pids.max")); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(securityPidsLimit) {
			t.Fatalf("pids.max of %s: %q, %v; want %d", id, b, err, securityPidsLimit)
		}
		// Twice the limit of background sleeps: the kernel refuses the
		// forks past the limit (the shell gives up on the first refusal).
		out, code := e.sh(ctx, t, "intruder", "app",
			"i=0; while [ $i -lt "+strconv.Itoa(2*securityPidsLimit)+" ]; do sleep 10 & i=$((i+1)); done; echo spawned all")
		b, err := os.ReadFile(filepath.Join(cg, "pids.current"))
		if err != nil {
			t.Fatal(err)
		}
		current, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if code == 0 || !strings.Contains(out, "can't fork") || strings.Contains(out, "spawned all") {
			t.Errorf("fork flood: exit %d, output %q; want the shell stopped by a refused fork", code, out)
		}
		if current == 0 || current > securityPidsLimit {
			t.Errorf("pids.current %d with a limit of %d", current, securityPidsLimit)
		}
	})
}

// sandboxedPidsLimit: under gVisor the workload's processes are tasks of
// the sandbox's kernel, not host processes; the host bounds what the
// sandbox itself may fork (--pids-limit plus gVisor's own allowance). A
// fork flood past that bound costs the group its sandbox, which restarts
// under its policy, while the host's process table and the other groups
// are untouched.
func sandboxedPidsLimit(ctx context.Context, t *testing.T, e *env) {
	t.Helper()
	limit := securityPidsLimit + 512 // runtime.SandboxOverheadPids
	sb := sandboxOf(ctx, t, e, e.containerID(ctx, t, "intruder", "app"))
	cg := filepath.Join("/sys/fs/cgroup/pids/berth", sb)
	if b, err := os.ReadFile(filepath.Join(cg, "pids.max")); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(limit) {
		t.Fatalf("pids.max of sandbox %s: %q, %v; want %d", sb, b, err, limit)
	}
	// In the background, so that the exec returns while the flood runs.
	flood := limit + 200
	out, code := e.sh(ctx, t, "intruder", "app",
		"(i=0; while [ $i -lt "+strconv.Itoa(flood)+" ]; do sleep 60 & i=$((i+1)); done) >/dev/null 2>&1 </dev/null & echo started")
	if code != 0 || !strings.Contains(out, "started") {
		t.Fatalf("start the fork flood: exit %d, %q", code, out)
	}
	// Until the sandbox dies of it (its cgroup goes) or 60 s pass, the
	// sandbox's host processes stay within the bound.
	peak, atLimit := 0, 0
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && atLimit < 10; time.Sleep(200 * time.Millisecond) {
		b, err := os.ReadFile(filepath.Join(cg, "pids.current"))
		if err != nil {
			break
		}
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		peak = max(peak, n)
		if n == limit {
			atLimit++
		}
	}

	t.Logf("peak of the sandbox's host processes: %d (limit %d)", peak, limit)
	if peak > limit || peak < limit/2 {
		t.Errorf("the sandbox's host processes peaked at %d; want the flood to reach the limit %d and stop there", peak, limit)
	}
	// The other group never noticed; the flooded one lost its sandbox
	// and comes back under its restart policy.
	if out, code := e.sh(ctx, t, "victim", "app", "cat /data/secret"); code != 0 || !strings.Contains(out, "victim-secret") {
		t.Errorf("victim after the flood: exit %d, %q", code, out)
	}
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(time.Second) {
		cg, err := e.groups.Get(ctx, e.rg, "intruder", nil)
		if err != nil {
			t.Fatal(err)
		}
		iv := cg.Properties.Containers[0].Properties.InstanceView
		if iv != nil && iv.RestartCount != nil && *iv.RestartCount > 0 && iv.CurrentState != nil && deref(iv.CurrentState.State) == "Running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the flooded group did not come back running with a restart: %s", eventMessages(cg.ContainerGroup))
		}
	}
	if out, code := e.sh(ctx, t, "intruder", "app", "echo alive"); code != 0 || !strings.Contains(out, "alive") {
		t.Errorf("intruder after its restart: exit %d, %q", code, out)
	}
}

// sandboxOf returns the id of the gVisor sandbox that container id runs in.
func sandboxOf(ctx context.Context, t *testing.T, e *env, id string) string {
	t.Helper()
	c, err := e.ctr.ContainerService().Get(namespaces.WithNamespace(ctx, berthNamespace), id)
	if err != nil {
		t.Fatalf("container %s: %v", id, err)
	}
	sb := c.Labels["io.berth.sandbox-id"]
	if sb == "" {
		t.Fatalf("container %s has no sandbox label: %v", id, c.Labels)
	}
	return sb
}

// freePort returns a TCP port that was free on the host a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
