package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerinstance/armcontainerinstance/v2"

	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/testenv"
)

// TestUserNS: under runc with --userns-remap, root in a container is an
// unprivileged user of the host (issue 7). With the remap off, the same
// checks show host root, so that each one can fail.
func TestUserNS(t *testing.T) {
	if l := testenv.DefaultIsolation(); l != "runc" {
		t.Skipf("runc-specific: covered by the suite's runc run (this run: %s=%s)", testenv.IsolationEnv, l)
	}
	remap := runtime.DefaultRemapRange
	for _, tc := range []struct {
		flag    string
		hostUID int // of the container's root
	}{
		{"auto", int(remap.HostID)},
		{"off", 0},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			t.Parallel()
			if tc.flag == "auto" {
				if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err != nil || strings.TrimSpace(string(b)) == "0" {
					t.Skip("the kernel does not allow user namespaces, so auto is off")
				}
			}
			userNSSuite(t, tc.flag, tc.hostUID)
		})
	}
}

func userNSSuite(t *testing.T, flag string, hostUID int) {
	e := newEnvOpts(t, testenv.ServerOptions{Isolation: "runc", ExtraArgs: []string{"--userns-remap", flag}})
	busybox := testenv.PushBusyboxImage(t, e.reg)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	secret := "s3cr3t-" + randomHex(t, 6)
	name := "userns-" + randomHex(t, 3)
	cg := busyboxGroup(busybox, "app", "Always", []*string{to.Ptr("/bin/sh"), to.Ptr("-c"),
		to.Ptr("trap 'exit 0' TERM; while true; do sleep 1; done")})
	cg.Properties.Volumes = []*armcontainerinstance.Volume{
		{Name: to.Ptr("data"), EmptyDir: map[string]any{}},
		{Name: to.Ptr("creds"), Secret: map[string]*string{"token": to.Ptr(base64.StdEncoding.EncodeToString([]byte(secret)))}},
	}
	cg.Properties.Containers[0].Properties.VolumeMounts = []*armcontainerinstance.VolumeMount{
		{Name: to.Ptr("data"), MountPath: to.Ptr("/data")},
		{Name: to.Ptr("creds"), MountPath: to.Ptr("/mnt/creds")},
	}
	start := time.Now()
	if _, err := e.create(ctx, t, name, cg); err != nil {
		t.Fatal(err)
	}
	cgNow := e.waitRunning(ctx, t, name)
	t.Logf("--userns-remap %s: group running %s after create (first use of the image)", flag, time.Since(start).Round(time.Millisecond))

	t.Run("the isolation event tells the user namespace", func(t *testing.T) {
		want := "isolation: runc (hardened)"
		if hostUID != 0 {
			want = fmt.Sprintf("isolation: runc (hardened, user namespace %d:65536)", hostUID)
		}
		if msgs := eventMessages(cgNow); !slices.Contains(msgs, want) {
			t.Errorf("group events %q lack %q", msgs, want)
		}
	})

	t.Run("root inside is root of the range on the host", func(t *testing.T) {
		out, code := e.sh(ctx, t, name, "app", "id -u; id -g")
		if code != 0 || out != "0\n0\n" {
			t.Fatalf("id inside: exit %d, %q; want 0 0", code, out)
		}
		st := e.runtimeState(ctx, t)
		if len(st.tasks) != 1 {
			t.Fatalf("tasks %v, want the group's one", st.tasks)
		}
		for id, pid := range st.tasks {
			status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d\n", hostUID, hostUID, hostUID, hostUID)
			if !strings.Contains(string(status), want) {
				t.Errorf("/proc/%d/status of %s has no %q:\n%s", pid, id, want, status)
			}
		}
	})

	// The group's volumes on the host, below the server's data dir.
	volumes, err := filepath.Glob(filepath.Join(e.srv.DataDir, "groups", "*", "volumes"))
	if err != nil || len(volumes) != 1 {
		t.Fatalf("volumes dirs %v (%v), want one", volumes, err)
	}
	data := filepath.Join(volumes[0], "data")

	t.Run("a file made in an emptyDir belongs to the range on the host", func(t *testing.T) {
		if out, code := e.sh(ctx, t, name, "app", "echo inside > /data/made; stat -c %u:%g /data /data/made"); code != 0 || out != "0:0\n0:0\n" {
			t.Fatalf("exit %d, %q; want the dir and file owned by root inside", code, out)
		}
		uid, gid := owner(t, filepath.Join(data, "made"))
		if uid != hostUID || gid != hostUID {
			t.Errorf("on the host the file belongs to %d:%d, want %d:%d", uid, gid, hostUID, hostUID)
		}
	})

	t.Run("a secret is readable", func(t *testing.T) {
		out, code := e.sh(ctx, t, name, "app", "cat /mnt/creds/token; echo; stat -c %u /mnt/creds/token")
		if code != 0 || out != secret+"\n0\n" {
			t.Errorf("exit %d, %q; want the secret, owned by root inside", code, out)
		}
	})

	t.Run("root inside cannot write what the host's root owns", func(t *testing.T) {
		// Planted by the host's root in the volume: a file and a directory
		// that only their owner may write.
		hostFile, hostDir := filepath.Join(data, "host-file"), filepath.Join(data, "host-dir")
		if err := os.WriteFile(hostFile, []byte("host\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(hostDir, 0o755); err != nil {
			t.Fatal(err)
		}
		out, code := e.sh(ctx, t, name, "app", `for w in "echo x >> /data/host-file" "touch /data/host-dir/x" "chown 0:0 /data/host-file"; do
  if sh -c "$w" 2>/dev/null; then echo "$w: allowed"; else echo "$w: refused"; fi
done`)
		if code != 0 {
			t.Fatalf("exit %d, %q", code, out)
		}
		verdict := "refused"
		if hostUID == 0 {
			verdict = "allowed" // real root, with CAP_DAC_OVERRIDE and CAP_CHOWN
		}
		if n := strings.Count(out, ": "+verdict+"\n"); n != 3 {
			t.Errorf("got %q, want all three %s", out, verdict)
		}
		if b, _ := os.ReadFile(hostFile); (string(b) == "host\n") != (hostUID != 0) {
			t.Errorf("host file now %q", b)
		}
	})

	t.Run("the group network is the group's own", func(t *testing.T) {
		// A sysfs of the group's network namespace, mounted by its
		// owner, not the host's /sys.
		out, code := e.sh(ctx, t, name, "app", "ls /sys/class/net | tr '\\n' ' '; ip -4 -o addr show eth0")
		if code != 0 || !strings.HasPrefix(out, "eth0 lo ") {
			t.Errorf("exit %d, %q; want only eth0 and lo", code, out)
		}
	})

	if err := e.remove(ctx, name); err != nil {
		t.Fatal(err)
	}
	e.checkHostClean(t)
	if left, _ := filepath.Glob(filepath.Join(e.srv.DataDir, "userns", "*")); len(left) > 0 {
		t.Errorf("user namespaces left: %v", left)
	}
}

// owner returns the uid and gid that own path on the host.
func owner(t *testing.T, path string) (int, int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}
