package network_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/berth-dev/berth/internal/agent/network"
	"github.com/berth-dev/berth/internal/testenv"
)

// testNetwork is a Manager on its own bridge and subnet, with everything it
// creates removed when the test ends.
type testNetwork struct {
	*network.Manager
	opts network.Options
}

// newTestNetwork makes a Manager with a unique bridge ("bt" + 6 hex) and a
// random subnet under 10.231-250.x.0, of the given prefix length.
func newTestNetwork(t *testing.T, bits int) *testNetwork {
	t.Helper()
	return newTestNetworkWith(t, bits, nil)
}

// newTestNetworkWith is newTestNetwork whose namespaces belong to user
// namespaces mapped by userns (none when nil).
func newTestNetworkWith(t *testing.T, bits int, userns *network.UserNS) *testNetwork {
	t.Helper()
	return newTestNetworkOpts(t, bits, func(o *network.Options) { o.UserNS = userns })
}

// newTestNetworkOpts is newTestNetwork with options changed by edit.
func newTestNetworkOpts(t *testing.T, bits int, edit func(*network.Options)) *testNetwork {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, filepath.Join(network.DefaultPluginDir, "bridge"))
	testenv.RequireBinary(t, "iptables")
	testenv.RequireBinary(t, "ip")

	second := 231 + randInt(t, 20)
	third := randInt(t, 256)
	opts := network.Options{
		Dir:    t.TempDir(),
		Bridge: "bt" + randHex(t, 3),
		Subnet: fmt.Sprintf("10.%d.%d.0/%d", second, third, bits),
	}
	edit(&opts)
	t.Cleanup(func() {
		// The bridge plugin creates the bridge on first use and never
		// deletes it.
		if err := exec.Command("ip", "link", "show", opts.Bridge).Run(); err == nil {
			if out, err := exec.Command("ip", "link", "del", opts.Bridge).CombinedOutput(); err != nil {
				t.Errorf("delete bridge %s: %v: %s", opts.Bridge, err, out)
			}
		}
	})
	m, err := network.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// Registered after t.TempDir, so it runs before the directory is
	// removed: a still-mounted netns would make that fail.
	t.Cleanup(func() {
		ids, err := m.List()
		if err != nil {
			t.Errorf("List: %v", err)
		}
		for _, id := range ids {
			if err := m.Teardown(context.Background(), id); err != nil {
				t.Errorf("Teardown %s: %v", id, err)
			}
		}
	})
	return &testNetwork{Manager: m, opts: opts}
}

func randInt(t *testing.T, n int64) int {
	t.Helper()
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		t.Fatal(err)
	}
	return int(v.Int64())
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// groupUID returns an id shaped like a Berth group UID.
func groupUID(t *testing.T) string { return randHex(t, 16) }

// listenIn starts a TCP echo-ish server inside the namespace at nsPath: it
// writes "hello" to every connection. The socket belongs to the namespace
// it was created in, so it keeps serving there from any thread.
func listenIn(t *testing.T, nsPath string, port int) {
	t.Helper()
	var ln net.Listener
	err := ns.WithNetNSPath(nsPath, func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", nsPath, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "hello")
			c.Close()
		}
	}()
}

// dial connects to addr and returns what the server wrote.
func dial(addr string) (string, error) {
	c, err := net.DialTimeout("tcp4", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

// bridgeMembers lists the interfaces enslaved to the bridge (the host ends
// of the veth pairs).
func bridgeMembers(t *testing.T, bridge string) []string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show", "master", bridge).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show master %s: %v: %s", bridge, err, out)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			names = append(names, strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":"))
		}
	}
	return names
}

// natRulesFor returns the nat table rules that mention id (the bridge
// plugin's masquerade and portmap's DNAT carry it in a comment).
func natRulesFor(t *testing.T, id string) []string {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", "nat").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save: %v: %s", err, out)
	}
	var rules []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, id) {
			rules = append(rules, line)
		}
	}
	return rules
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat %s: %v", path, err)
	}
	return err == nil
}

func ipamFile(n *testNetwork, ip string) string {
	return filepath.Join(n.opts.Dir, "cni", "ipam", network.DefaultNetworkName, ip)
}

func TestManager_SetupAndTeardown(t *testing.T) {
	n := newTestNetwork(t, 24)
	ctx := context.Background()
	id := groupUID(t)
	subnet := netip.MustParsePrefix(n.opts.Subnet)

	a, err := n.Setup(ctx, id)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}

	t.Run("the attachment is an address of the subnet behind the bridge", func(t *testing.T) {
		ip, err := netip.ParseAddr(a.IP)
		if err != nil || !subnet.Contains(ip) {
			t.Errorf("got IP %q, want an address in %s", a.IP, subnet)
		}
		if want := subnet.Addr().Next().String(); a.Gateway != want {
			t.Errorf("got gateway %q, want %q", a.Gateway, want)
		}
		if want := filepath.Join(n.opts.Dir, "netns", id); a.NetNSPath != want {
			t.Errorf("got netns %q, want %q", a.NetNSPath, want)
		}
		if !exists(t, ipamFile(n, a.IP)) {
			t.Errorf("host-local has no file for %s", a.IP)
		}
		if got := bridgeMembers(t, n.opts.Bridge); len(got) != 1 {
			t.Errorf("got bridge members %v, want one veth", got)
		}
		if len(natRulesFor(t, id)) == 0 {
			t.Errorf("no masquerade rule mentions %s", id)
		}
	})

	t.Run("the host reaches a server in the namespace", func(t *testing.T) {
		listenIn(t, a.NetNSPath, 8080)
		got, err := dial(net.JoinHostPort(a.IP, "8080"))
		if err != nil || got != "hello" {
			t.Errorf("dial %s:8080: got %q, %v; want hello", a.IP, got, err)
		}
	})

	t.Run("a second Setup returns the same attachment", func(t *testing.T) {
		got, err := n.Setup(ctx, id)
		if err != nil {
			t.Fatalf("Setup: %v", err)
		}
		if got != a {
			t.Errorf("got %+v, want %+v", got, a)
		}
		if m := bridgeMembers(t, n.opts.Bridge); len(m) != 1 {
			t.Errorf("got bridge members %v, want one veth", m)
		}
	})

	t.Run("a new Manager on the same dir finds the attachment", func(t *testing.T) {
		m2, err := network.New(n.opts)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		got, err := m2.Setup(ctx, id)
		if err != nil {
			t.Fatalf("Setup: %v", err)
		}
		if got != a {
			t.Errorf("got %+v, want %+v", got, a)
		}
		ids, err := m2.List()
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if !slices.Equal(ids, []string{id}) {
			t.Errorf("List: got %v, want [%s]", ids, id)
		}
	})

	t.Run("Teardown removes the namespace, address, veth and rules", func(t *testing.T) {
		// A fresh Manager, as after an agent restart: DEL must come from
		// the cache on disk.
		m2, err := network.New(n.opts)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		if err := m2.Teardown(ctx, id); err != nil {
			t.Fatalf("Teardown: %v", err)
		}
		if exists(t, a.NetNSPath) {
			t.Errorf("netns file %s still exists", a.NetNSPath)
		}
		if exists(t, ipamFile(n, a.IP)) {
			t.Errorf("address %s still allocated", a.IP)
		}
		if got := bridgeMembers(t, n.opts.Bridge); len(got) != 0 {
			t.Errorf("got bridge members %v, want none", got)
		}
		if got := natRulesFor(t, id); len(got) != 0 {
			t.Errorf("nat rules left for %s: %v", id, got)
		}
		ids, err := m2.List()
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if len(ids) != 0 {
			t.Errorf("List: got %v, want none", ids)
		}
	})

	t.Run("a second Teardown succeeds", func(t *testing.T) {
		if err := n.Teardown(ctx, id); err != nil {
			t.Errorf("Teardown: %v", err)
		}
	})
}

func TestManager_SetupWithPorts(t *testing.T) {
	n := newTestNetwork(t, 24)
	ctx := context.Background()
	id := groupUID(t)

	// A free host port: bind to it and let it go.
	probe, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hostPort := probe.Addr().(*net.TCPAddr).Port
	probe.Close()

	a, err := n.SetupWithPorts(ctx, id, []network.PortMapping{{HostPort: int32(hostPort), ContainerPort: 80}})
	if err != nil {
		t.Fatalf("SetupWithPorts: %v", err)
	}
	listenIn(t, a.NetNSPath, 80)

	addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(hostPort))
	if got, err := dial(addr); err != nil || got != "hello" {
		t.Errorf("dial %s: got %q, %v; want hello through the port mapping", addr, got, err)
	}

	if err := n.Teardown(ctx, id); err != nil {
		t.Fatalf("Teardown: %v", err)
	}
	if got := natRulesFor(t, id); len(got) != 0 {
		t.Errorf("nat rules left for %s: %v", id, got)
	}
	if _, err := dial(addr); err == nil {
		t.Errorf("dial %s still works after Teardown", addr)
	}
}

func TestManager_SetupRollsBack(t *testing.T) {
	// A /30 has one address for a group after the gateway.
	n := newTestNetwork(t, 30)
	ctx := context.Background()
	first, second := groupUID(t), groupUID(t)

	if _, err := n.Setup(ctx, first); err != nil {
		t.Fatalf("Setup first: %v", err)
	}
	if _, err := n.Setup(ctx, second); err == nil {
		t.Fatalf("Setup second: got nil error, want an exhausted range")
	}
	if exists(t, n.NetNSPath(second)) {
		t.Errorf("netns of the failed group is left")
	}
	if got := bridgeMembers(t, n.opts.Bridge); len(got) != 1 {
		t.Errorf("got bridge members %v, want only the first group's veth", got)
	}
	ids, err := n.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if !slices.Equal(ids, []string{first}) {
		t.Errorf("List: got %v, want [%s]", ids, first)
	}

	// Once the first releases its address, the second fits.
	if err := n.Teardown(ctx, first); err != nil {
		t.Fatalf("Teardown first: %v", err)
	}
	if _, err := n.Setup(ctx, second); err != nil {
		t.Errorf("Setup second after Teardown of first: %v", err)
	}
}

func TestManager_Concurrent(t *testing.T) {
	n := newTestNetwork(t, 24)
	ctx := context.Background()
	const groups = 6
	ids := make([]string, groups)
	for i := range ids {
		ids[i] = groupUID(t)
	}

	// Every id twice at once: distinct ids in parallel, the same id
	// serialised and answered from the cache.
	type result struct {
		id  string
		a   network.Attachment
		err error
	}
	results := make(chan result, 2*groups)
	for _, id := range append(slices.Clone(ids), ids...) {
		go func() {
			a, err := n.Setup(ctx, id)
			results <- result{id, a, err}
		}()
	}
	byID := map[string]network.Attachment{}
	ips := map[string]string{}
	for range 2 * groups {
		r := <-results
		if r.err != nil {
			t.Errorf("Setup %s: %v", r.id, r.err)
			continue
		}
		if prev, ok := byID[r.id]; ok && prev != r.a {
			t.Errorf("Setup %s twice: got %+v and %+v", r.id, prev, r.a)
		}
		byID[r.id] = r.a
		if other, ok := ips[r.a.IP]; ok && other != r.id {
			t.Errorf("IP %s given to %s and %s", r.a.IP, other, r.id)
		}
		ips[r.a.IP] = r.id
	}
	if got := bridgeMembers(t, n.opts.Bridge); len(got) != groups {
		t.Errorf("got %d bridge members, want %d", len(got), groups)
	}

	errs := make(chan error, groups)
	for _, id := range ids {
		go func() { errs <- n.Teardown(ctx, id) }()
	}
	for range groups {
		if err := <-errs; err != nil {
			t.Errorf("Teardown: %v", err)
		}
	}
	if got := bridgeMembers(t, n.opts.Bridge); len(got) != 0 {
		t.Errorf("got bridge members %v after Teardown, want none", got)
	}
}

func TestManager_TeardownUnknown(t *testing.T) {
	n := newTestNetwork(t, 24)
	if err := n.Teardown(context.Background(), groupUID(t)); err != nil {
		t.Errorf("Teardown of an id never set up: %v", err)
	}
}

func TestManager_InvalidID(t *testing.T) {
	n := newTestNetwork(t, 24)
	for _, id := range []string{"", "../etc", "a/b", "-x"} {
		t.Run(fmt.Sprintf("%q is refused", id), func(t *testing.T) {
			if _, err := n.Setup(context.Background(), id); !errdefs.IsInvalidArgument(err) {
				t.Errorf("Setup: got %v, want invalid argument", err)
			}
			if err := n.Teardown(context.Background(), id); !errdefs.IsInvalidArgument(err) {
				t.Errorf("Teardown: got %v, want invalid argument", err)
			}
		})
	}
}

func TestNew_InvalidOptions(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		opts network.Options
	}{
		{"a missing dir", network.Options{}},
		{"a relative dir", network.Options{Dir: "state"}},
		{"a bad subnet", network.Options{Dir: dir, Subnet: "10.0.0.0"}},
		{"an IPv6 subnet", network.Options{Dir: dir, Subnet: "fd00::/64"}},
		{"a subnet too small", network.Options{Dir: dir, Subnet: "10.0.0.0/31"}},
		{"a long bridge name", network.Options{Dir: dir, Bridge: "abcdefghijklmnop"}},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			if _, err := network.New(tt.opts); !errdefs.IsInvalidArgument(err) {
				t.Errorf("got %v, want invalid argument", err)
			}
		})
	}
}
