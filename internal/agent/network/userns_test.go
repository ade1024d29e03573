package network_test

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/agent/network"
	"github.com/berth-dev/berth/internal/testenv"
)

// TestManager_UserNS: with Options.UserNS, a group's network namespace
// belongs to a user namespace of its own with the node's mapping, which
// outlives the Manager and goes with Teardown.
func TestManager_UserNS(t *testing.T) {
	testenv.RequireBinary(t, "nsenter")
	n := newTestNetworkWith(t, 24, &network.UserNS{HostID: 1 << 30, Size: 1 << 16})
	ctx := context.Background()
	id := groupUID(t)
	a, err := n.Setup(ctx, id)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if want := filepath.Join(n.opts.Dir, "userns", id); a.UserNSPath != want {
		t.Fatalf("user namespace %q, want %q", a.UserNSPath, want)
	}

	t.Run("the network namespace belongs to the group's user namespace", func(t *testing.T) {
		out, err := exec.Command("nsenter", "--user="+a.UserNSPath, "--net="+a.NetNSPath, "cat", "/proc/self/uid_map", "/proc/self/gid_map").CombinedOutput()
		if err != nil {
			t.Fatalf("nsenter: %v: %s", err, out)
		}
		if f := strings.Fields(string(out)); strings.Join(f, " ") != "0 1073741824 65536 0 1073741824 65536" {
			t.Errorf("uid and gid maps %q, want 0 1073741824 65536 for both", out)
		}
		// Entered as runc 1.1 enters a container on exec: user namespace
		// first, after which only namespaces it owns can be joined.
		out, err = exec.Command("nsenter", "--user="+a.UserNSPath, "--net="+a.NetNSPath, "--setuid=0", "--setgid=0", "ip", "-4", "-o", "addr", "show", "eth0").CombinedOutput()
		if err != nil || !strings.Contains(string(out), a.IP+"/") {
			t.Errorf("ip addr in the namespace, entered through its owner: %v: %s", err, out)
		}
	})

	t.Run("the host reaches a server in the namespace", func(t *testing.T) {
		listenIn(t, a.NetNSPath, 8080)
		got, err := dial(net.JoinHostPort(a.IP, "8080"))
		if err != nil || got != "hello" {
			t.Errorf("dial %s:8080: got %q, %v; want hello", a.IP, got, err)
		}
	})

	t.Run("a new Manager finds it", func(t *testing.T) {
		m2, err := network.New(n.opts)
		if err != nil {
			t.Fatal(err)
		}
		got, ok, err := m2.Attached(id)
		if err != nil || !ok || got != a {
			t.Errorf("Attached: %+v, %v, %v; want %+v", got, ok, err, a)
		}
	})

	t.Run("Teardown removes it", func(t *testing.T) {
		if err := n.Teardown(ctx, id); err != nil {
			t.Fatal(err)
		}
		if exists(t, a.UserNSPath) || exists(t, a.NetNSPath) {
			t.Errorf("left: user namespace %v, network namespace %v", exists(t, a.UserNSPath), exists(t, a.NetNSPath))
		}
		var st unix.Statfs_t
		if err := unix.Statfs(filepath.Dir(a.UserNSPath), &st); err != nil || st.Type == unix.NSFS_MAGIC {
			t.Errorf("statfs %s: %v, type %x", filepath.Dir(a.UserNSPath), err, st.Type)
		}
	})
}
