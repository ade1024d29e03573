package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerinstance/armcontainerinstance/v2"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/uuid"

	"github.com/berth-dev/berth/internal/testenv"
)

// probeTimeout is how long a probe waits for a TCP connection: a dropped
// SYN makes it fail after this long, a refused one at once.
const probeTimeout = 2 * time.Second

// TestNetworking checks issue 5 on real parts (CNI bridges, nftables,
// iptables, network namespaces): declared ports of a public group answer
// an outside client and undeclared ones do not; groups in one virtual
// network reach each other and nothing else reaches them; subscriptions
// are isolated; the rules survive a server restart; and deleting
// everything leaves nothing on the host.
//
// One installation and one set of groups serve every subtest:
//
//	pub-a   subscription A, Public, port 80 and 5353/UDP declared (hello), 81 and 5354/UDP listening but undeclared (busybox httpd, hello's UDP echo)
//	vnet1-a subscription A, virtual network 1, subnet s1, busybox httpd on 80
//	vnet1-b subscription A, virtual network 1, subnet s2, busybox httpd on 80
//	vnet2-a subscription A, virtual network 2, busybox httpd on 80
//	pub-b   subscription B, Public, port 80 declared (busybox httpd)
//	noip-a  subscription A, no ipAddress, busybox httpd on 80
func TestNetworking(t *testing.T) {
	t.Parallel()
	testenv.RequireBinary(t, "nft")
	testenv.RequireBinary(t, "ip")
	testenv.RequireBinary(t, "/bin/busybox")
	testenv.RequireBinary(t, "nsenter")
	a := newEnv(t)
	b := a.as(t, a.srv.Client.Token, uuid.NewString())
	busybox := testenv.PushBusyboxImage(t, a.reg)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	// Two /24s that no interface uses: virtual network 1 has two
	// delegated subnets and one without delegation, network 2 one subnet.
	p1 := freePrefix(t, 24)
	p2 := freePrefix(t, 24, p1)
	s1, s2, s3 := sub25(p1, 0), sub26(p1, 2), sub26(p1, 3)
	vnet1 := a.putVNet(ctx, t, "vnet1", []string{p1.String()}, map[string]vnetSubnet{
		"s1": {s1, true}, "s2": {s2, true}, "plain": {s3, false},
	})
	vnet2 := a.putVNet(ctx, t, "vnet2", []string{p2.String()}, map[string]vnetSubnet{"s1": {p2, true}})

	// busybox httpd as PID 1 ignores SIGTERM; the shell ends at once.
	httpd := func(port string) []*string {
		return to.SliceOfPtrs("/bin/sh", "-c", "trap 'exit 0' TERM; httpd -f -p "+port+" -h /tmp & wait")
	}
	private := func(subnet string) armcontainerinstance.ContainerGroup {
		cg := busyboxGroup(busybox, "web", "Always", httpd("80"))
		cg.Properties.SubnetIDs = []*armcontainerinstance.ContainerGroupSubnetID{{ID: to.Ptr(subnet)}}
		return cg
	}
	pubA := helloGroup(a.helloRef)
	hello := pubA.Properties.Containers[0].Properties
	hello.EnvironmentVariables = []*armcontainerinstance.EnvironmentVariable{{Name: to.Ptr("UDP_ECHO"), Value: to.Ptr("5353,5354")}}
	hello.Ports = append(hello.Ports, &armcontainerinstance.ContainerPort{Port: to.Ptr[int32](5353), Protocol: to.Ptr(armcontainerinstance.ContainerNetworkProtocolUDP)})
	pubA.Properties.IPAddress.Ports = append(pubA.Properties.IPAddress.Ports, &armcontainerinstance.Port{Port: to.Ptr[int32](5353), Protocol: to.Ptr(armcontainerinstance.ContainerGroupNetworkProtocolUDP)})
	pubA.Properties.Containers = append(pubA.Properties.Containers, &armcontainerinstance.Container{
		Name: to.Ptr("side"),
		Properties: &armcontainerinstance.ContainerProperties{
			Image:     to.Ptr(busybox),
			Command:   httpd("81"),
			Resources: &armcontainerinstance.ResourceRequirements{Requests: &armcontainerinstance.ResourceRequests{CPU: to.Ptr(0.5), MemoryInGB: to.Ptr(0.25)}},
		},
	})
	pubB := busyboxGroup(busybox, "web", "Always", httpd("80"))
	pubB.Properties.Containers[0].Properties.Ports = []*armcontainerinstance.ContainerPort{{Port: to.Ptr[int32](80)}}
	pubB.Properties.IPAddress = &armcontainerinstance.IPAddress{
		Type:  to.Ptr(armcontainerinstance.ContainerGroupIPAddressTypePublic),
		Ports: []*armcontainerinstance.Port{{Port: to.Ptr[int32](80), Protocol: to.Ptr(armcontainerinstance.ContainerGroupNetworkProtocolTCP)}},
	}

	// Create all groups at once: the pulls and starts overlap.
	type spec struct {
		env  *env
		name string
		cg   armcontainerinstance.ContainerGroup
	}
	specs := []spec{
		{a, "pub-a", pubA},
		{a, "vnet1-a", private(vnet1 + "/subnets/s1")},
		{a, "vnet1-b", private(vnet1 + "/subnets/s2")},
		{a, "vnet2-a", private(vnet2 + "/subnets/s1")},
		{b, "pub-b", pubB},
		{a, "noip-a", busyboxGroup(busybox, "web", "Always", httpd("80"))},
	}
	ips := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(specs))
	for i, s := range specs {
		t.Cleanup(func() { s.env.deleteIfExists(t, s.name) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			poller, err := s.env.groups.BeginCreateOrUpdate(ctx, s.env.rg, s.name, s.cg, nil)
			if err == nil {
				_, err = poller.PollUntilDone(ctx, pollEvery)
			}
			if err != nil {
				errs[i] = fmt.Errorf("create %s: %w", s.name, err)
				return
			}
			cg, err := s.env.waitRunningAll(ctx, s.name)
			if err != nil {
				errs[i] = err
				return
			}
			if cg.Properties.IPAddress != nil {
				mu.Lock()
				ips[s.name] = groupIP(cg)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("%v\nserver log:\n%s", err, a.logExcerpt("level=ERROR", "level=WARN"))
	}
	// Not reported without an ipAddress: ask the group itself.
	ips["noip-a"] = a.groupAddr(ctx, t, "noip-a", "web")

	t.Run("private groups get an address of their subnet and report it as Private", func(t *testing.T) {
		for name, prefix := range map[string]netip.Prefix{"vnet1-a": s1, "vnet1-b": s2, "vnet2-a": p2} {
			got, err := a.groups.Get(ctx, a.rg, name, nil)
			if err != nil {
				t.Fatalf("get %s: %v", name, err)
			}
			ip := got.Properties.IPAddress
			if ip == nil || ip.Type == nil || *ip.Type != armcontainerinstance.ContainerGroupIPAddressTypePrivate {
				t.Errorf("%s: got ipAddress %+v, want type Private", name, ip)
				continue
			}
			if addr, err := netip.ParseAddr(groupIP(got.ContainerGroup)); err != nil || !prefix.Contains(addr) {
				t.Errorf("%s: got IP %q, want one in %s", name, groupIP(got.ContainerGroup), prefix)
			}
			if len(got.Properties.SubnetIDs) != 1 || !strings.EqualFold(*got.Properties.SubnetIDs[0].ID, map[string]string{"vnet1-a": vnet1 + "/subnets/s1", "vnet1-b": vnet1 + "/subnets/s2", "vnet2-a": vnet2 + "/subnets/s1"}[name]) {
				t.Errorf("%s: got subnetIds %v", name, got.Properties.SubnetIDs)
			}
		}
	})

	// Every listener, undeclared and private ones included, answers the
	// host, which is not filtered: a failed probe below is the firewall's
	// doing, not a missing server.
	for _, target := range []string{ips["pub-a"] + ":80", ips["pub-a"] + ":81", ips["vnet1-a"] + ":80", ips["vnet1-b"] + ":80", ips["vnet2-a"] + ":80", ips["pub-b"] + ":80", ips["noip-a"] + ":80"} {
		waitListening(ctx, t, target)
	}

	out := newOutsideClient(t, netip.MustParsePrefix(a.srv.Subnet), p1, p2)
	from := func(name string) prober {
		if name == "outside" {
			return out
		}
		e := a
		if name == "pub-b" {
			e = b
		}
		return e.groupProber(ctx, t, name)
	}
	type pair struct {
		src, dst, port string
		allowed        bool
	}
	check := func(t *testing.T, pairs []pair) {
		t.Helper()
		var wg sync.WaitGroup
		for _, p := range pairs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				target := net.JoinHostPort(ips[p.dst], p.port)
				err := from(p.src).probe(ctx, target)
				switch {
				case p.allowed && err != nil:
					t.Errorf("%s -> %s (%s): %v, want a connection", p.src, p.dst, target, err)
				case !p.allowed && err == nil:
					t.Errorf("%s -> %s (%s) connected, want it dropped", p.src, p.dst, target)
				case !p.allowed && !errors.Is(err, errTimedOut):
					t.Errorf("%s -> %s (%s): %v, want a timeout (the firewall drops, it does not refuse)", p.src, p.dst, target, err)
				}
			}()
		}
		wg.Wait()
	}
	publicPorts := []pair{
		{"outside", "pub-a", "80", true},
		{"outside", "pub-a", "81", false},
		{"outside", "pub-b", "80", true},
	}

	t.Run("an outside client reaches declared ports only", func(t *testing.T) {
		check(t, publicPorts)
	})

	t.Run("an outside client reaches declared UDP ports only", func(t *testing.T) {
		declared, undeclared := net.JoinHostPort(ips["pub-a"], "5353"), net.JoinHostPort(ips["pub-a"], "5354")
		// Both echo to the host, so silence below is the firewall's.
		for _, target := range []string{declared, undeclared} {
			if err := udpEcho("", target); err != nil {
				t.Fatalf("host: %v", err)
			}
		}
		if err := udpEcho(out.nsPath, declared); err != nil {
			t.Errorf("outside -> %s: %v, want an echo", declared, err)
		}
		if err := udpEcho(out.nsPath, undeclared); !errors.Is(err, errTimedOut) {
			t.Errorf("outside -> %s: %v, want no answer", undeclared, err)
		}
	})

	t.Run("a group without an IP address accepts no inbound traffic", func(t *testing.T) {
		check(t, []pair{
			{"outside", "noip-a", "80", false},
			{"pub-a", "noip-a", "80", false},
			{"vnet1-a", "noip-a", "80", false},
			// Its egress is not limited.
			{"noip-a", "pub-a", "80", true},
		})
	})

	t.Run("virtual networks reach only themselves", func(t *testing.T) {
		check(t, []pair{
			{"vnet1-a", "vnet1-b", "80", true},
			{"vnet1-b", "vnet1-a", "80", true},
			{"vnet1-a", "vnet2-a", "80", false},
			{"vnet2-a", "vnet1-a", "80", false},
			{"vnet2-a", "vnet1-b", "80", false},
			{"pub-a", "vnet1-a", "80", false},
			{"pub-a", "vnet2-a", "80", false},
			{"outside", "vnet1-a", "80", false},
			{"outside", "vnet2-a", "80", false},
			// Egress of a private group to a public group of its own
			// subscription is egress to the world: declared ports only.
			{"vnet1-a", "pub-a", "80", true},
			{"vnet1-a", "pub-a", "81", false},
		})
	})

	t.Run("subscriptions cannot reach each other", func(t *testing.T) {
		check(t, []pair{
			{"pub-a", "pub-b", "80", false},
			{"pub-b", "pub-a", "80", false},
			{"vnet1-a", "pub-b", "80", false},
			{"pub-b", "vnet1-a", "80", false},
			{"pub-b", "vnet2-a", "80", false},
		})
	})

	t.Run("bad placements are refused", func(t *testing.T) {
		tests := []struct {
			name, code string
			cg         func() armcontainerinstance.ContainerGroup
		}{
			{"a subnet without delegation", "SubnetMissingRequiredDelegation", func() armcontainerinstance.ContainerGroup {
				return private(vnet1 + "/subnets/plain")
			}},
			{"a subnet that does not exist", "SubnetNotFound", func() armcontainerinstance.ContainerGroup {
				return private(vnet1 + "/subnets/nope")
			}},
			{"a subnet of another subscription", "SubnetInDifferentSubscription", func() armcontainerinstance.ContainerGroup {
				return private(strings.Replace(vnet1, a.sub, b.sub, 1) + "/subnets/s1")
			}},
			{"a public IP in a subnet", "PublicIPAddressNotSupportedWithSubnet", func() armcontainerinstance.ContainerGroup {
				cg := private(vnet1 + "/subnets/s1")
				cg.Properties.Containers[0].Properties.Ports = []*armcontainerinstance.ContainerPort{{Port: to.Ptr[int32](80)}}
				cg.Properties.IPAddress = &armcontainerinstance.IPAddress{Type: to.Ptr(armcontainerinstance.ContainerGroupIPAddressTypePublic),
					Ports: []*armcontainerinstance.Port{{Port: to.Ptr[int32](80)}}}
				return cg
			}},
			{"a private IP without a subnet", "PrivateIPAddressRequiresSubnet", func() armcontainerinstance.ContainerGroup {
				cg := helloGroup(a.helloRef)
				cg.Properties.IPAddress.Type = to.Ptr(armcontainerinstance.ContainerGroupIPAddressTypePrivate)
				return cg
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				name := "bad-" + randomHex(t, 3)
				_, err := a.groups.BeginCreateOrUpdate(ctx, a.rg, name, tt.cg(), nil)
				var re *azcore.ResponseError
				if !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest || re.ErrorCode != tt.code {
					t.Fatalf("got %v, want 400 %s", err, tt.code)
				}
				if _, err := a.groups.Get(ctx, a.rg, name, nil); !isNotFound(err) {
					t.Errorf("refused group exists: %v", err)
				}
			})
		}
	})

	t.Run("a virtual network in use cannot be deleted", func(t *testing.T) {
		code, body := a.rest(ctx, t, http.MethodDelete, vnet1, nil)
		if code != http.StatusConflict || !strings.Contains(body, "InUseSubnetCannotBeDeleted") {
			t.Errorf("DELETE %s: got %d %s, want 409 InUseSubnetCannotBeDeleted", vnet1, code, body)
		}
	})

	table := testenv.NFTTable(a.srv.Bridge)
	t.Run("a table deleted by hand comes back within a resync", func(t *testing.T) {
		before := listTable(t, table)
		if out, err := exec.Command("nft", "delete", "table", "ip", table).CombinedOutput(); err != nil {
			t.Fatalf("nft delete table: %v: %s", err, out)
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			ok, err := testenv.NFTTableExists(table)
			if err != nil {
				t.Fatal(err)
			}
			if ok && listTable(t, table) == before {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("table %s not restored 15s after it was deleted", table)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	t.Run("a restarted server rebuilds the rules from the store", func(t *testing.T) {
		before := listTable(t, table)
		for _, ip := range ips {
			if !strings.Contains(before, ip) {
				t.Errorf("table %s lacks group address %s:\n%s", table, ip, before)
			}
		}
		a.srv.Stop(t)
		// A hole made while the server is down (the containers run on):
		// the rebuild must not keep it.
		if out, err := exec.Command("nft", "insert", "rule", "ip", table, "forward", "accept").CombinedOutput(); err != nil {
			t.Fatalf("nft insert rule: %v: %s", err, out)
		}
		if out, _ := exec.Command("nft", "list", "chain", "ip", table, "forward").CombinedOutput(); !strings.Contains(string(out), "\t\taccept\n") {
			t.Fatalf("the hole is not in the table:\n%s", out)
		}
		a.srv.Restart(t)
		deadline := time.Now().Add(15 * time.Second)
		for after := listTable(t, table); after != before; after = listTable(t, table) {
			if time.Now().After(deadline) {
				t.Fatalf("table 15s after restart differs:\n--- before\n%s\n--- after\n%s", before, after)
			}
			time.Sleep(200 * time.Millisecond)
		}
		check(t, publicPorts)
	})

	t.Run("deleting everything leaves nothing behind", func(t *testing.T) {
		nets, err := testenv.SubnetNetworks(a.srv.DataDir)
		if err != nil || len(nets) != 3 {
			t.Fatalf("got subnet networks %v (%v) while the groups run, want three", nets, err)
		}
		for _, s := range specs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.env.remove(ctx, s.name); err != nil {
					t.Errorf("delete %s: %v", s.name, err)
				}
			}()
		}
		wg.Wait()
		deadline := time.Now().Add(15 * time.Second)
		for {
			exists, err := testenv.NFTTableExists(table)
			if err != nil {
				t.Fatal(err)
			}
			if !exists {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("nft table %s still exists 15s after the last group was deleted:\n%s", table, listTable(t, table))
			}
			time.Sleep(200 * time.Millisecond)
		}
		for br := range nets {
			if _, err := net.InterfaceByName(br); err == nil {
				t.Errorf("bridge %s of a deleted subnet is left", br)
			}
		}
		if left, _ := testenv.SubnetNetworks(a.srv.DataDir); len(left) > 0 {
			t.Errorf("subnet networks left: %v", left)
		}
		ipam, _ := filepath.Glob(filepath.Join(a.srv.DataDir, "cni", "ipam", "*", "*.*.*.*"))
		if len(ipam) > 0 {
			t.Errorf("IP allocations left: %v", ipam)
		}
		if dirs, _ := filepath.Glob(filepath.Join(a.srv.DataDir, "cni", "ipam", "berth-*")); len(dirs) > 0 {
			t.Errorf("IPAM state of deleted subnets left: %v", dirs)
		}
		if recs, _ := os.ReadDir(filepath.Join(a.srv.DataDir, "cni", "attachments")); len(recs) > 0 {
			t.Errorf("attachment records left: %d", len(recs))
		}
		a.checkHostClean(t)
		for _, p := range []netip.Prefix{p1, p2} {
			rules, err := testenv.RulesNamingHosts(p.String())
			if err != nil {
				t.Fatal(err)
			}
			if len(rules) > 0 {
				t.Errorf("iptables rules left for %s:\n%s", p, strings.Join(rules, "\n"))
			}
		}
		for _, id := range []string{vnet1, vnet2} {
			if code, body := a.rest(ctx, t, http.MethodDelete, id, nil); code != http.StatusOK {
				t.Errorf("DELETE %s: got %d %s, want 200", id, code, body)
			}
		}
	})
}

// vnetSubnet is one subnet of putVNet.
type vnetSubnet struct {
	prefix    netip.Prefix
	delegated bool
}

// putVNet creates a virtual network in e's resource group and returns its
// resource id.
func (e *env) putVNet(ctx context.Context, t *testing.T, name string, space []string, subnets map[string]vnetSubnet) string {
	t.Helper()
	var sns []map[string]any
	for n, s := range subnets {
		props := map[string]any{"addressPrefix": s.prefix.String()}
		if s.delegated {
			props["delegations"] = []map[string]any{{"name": "aci", "properties": map[string]string{"serviceName": "Microsoft.ContainerInstance/containerGroups"}}}
		}
		sns = append(sns, map[string]any{"name": n, "properties": props})
	}
	id := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/virtualNetworks/%s", e.sub, e.rg, name)
	body := map[string]any{"location": "westus", "properties": map[string]any{"addressSpace": map[string]any{"addressPrefixes": space}, "subnets": sns}}
	if code, resp := e.rest(ctx, t, http.MethodPut, id, body); code != http.StatusCreated {
		t.Fatalf("PUT %s: got %d %s, want 201", id, code, resp)
	}
	return id
}

// rest sends a Microsoft.Network request with the admin token.
func (e *env) rest(ctx context.Context, t *testing.T, method, id string, body any) (int, string) {
	t.Helper()
	resp, err := e.srv.Do(ctx, method, id+"?api-version=2023-09-01", body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, id, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitRunningAll polls Get for up to 2 minutes until every container of
// the group is Running and, if the group has an ipAddress, its IP is
// reported.
func (e *env) waitRunningAll(ctx context.Context, name string) (armcontainerinstance.ContainerGroup, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var last armcontainerinstance.ContainerGroup
	for {
		resp, err := e.groups.Get(ctx, e.rg, name, nil)
		if err == nil {
			last = resp.ContainerGroup
			running := last.Properties.IPAddress == nil || groupIP(last) != ""
			for _, c := range last.Properties.Containers {
				iv := c.Properties.InstanceView
				running = running && iv != nil && iv.CurrentState != nil && iv.CurrentState.State != nil && *iv.CurrentState.State == "Running"
			}
			if running {
				return last, nil
			}
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("group %s not running (last error %v, events %q)", name, err, eventMessages(last))
		case <-time.After(300 * time.Millisecond):
		}
	}
}

var errTimedOut = errors.New("connection timed out")

// prober opens TCP connections from somewhere.
type prober interface {
	probe(ctx context.Context, target string) error
}

// cmdProber runs busybox nc with a connect timeout through a command prefix
// (ip netns exec, nsenter) that puts it in the network namespace nsPath.
type cmdProber struct {
	prefix []string
	nsPath string
}

// udpEcho sends a datagram to target from the network namespace nsPath
// (the host's when empty) and waits up to probeTimeout for it to come
// back.
func udpEcho(nsPath, target string) error {
	try := func() error {
		c, err := net.Dial("udp4", target)
		if err != nil {
			return err
		}
		defer c.Close()
		msg := "berth-probe-" + target
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(probeTimeout))
		buf := make([]byte, 256)
		n, err := c.Read(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("%w: no echo from %s", errTimedOut, target)
		}
		if err != nil {
			return err
		}
		if string(buf[:n]) != msg {
			return fmt.Errorf("got %q from %s, want %q", buf[:n], target, msg)
		}
		return nil
	}
	if nsPath == "" {
		return try()
	}
	return ns.WithNetNSPath(nsPath, func(ns.NetNS) error { return try() })
}

func (p cmdProber) probe(ctx context.Context, target string) error {
	host, port, _ := net.SplitHostPort(target)
	args := append(append([]string{}, p.prefix...), "/bin/busybox", "nc", "-w", fmt.Sprint(int(probeTimeout.Seconds())), host, port)
	cctx, cancel := context.WithTimeout(ctx, probeTimeout+5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, args[0], args[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "timed out") || (!strings.Contains(msg, "refused") && time.Since(start) >= probeTimeout-200*time.Millisecond) {
			return fmt.Errorf("%w after %s: %s", errTimedOut, time.Since(start).Round(time.Millisecond), msg)
		}
		return fmt.Errorf("nc %s: %w: %s", target, err, msg)
	}
	return nil
}

// execProber runs busybox nc in a container of a group, through the exec
// API: under gVisor the group's network stack is the sandbox's own, which
// a host-side nsenter into the group's namespace does not reach.
type execProber struct {
	e                *env
	group, container string
}

func (p execProber) probe(ctx context.Context, target string) error {
	host, port, _ := net.SplitHostPort(target)
	start := time.Now()
	out, code, err := p.e.execOut(ctx, p.group, p.container, fmt.Sprintf("nc -w %d %s %s </dev/null", int(probeTimeout.Seconds()), host, port))
	if err != nil {
		return err
	}
	if code == 0 {
		return nil
	}
	msg := strings.TrimSpace(out)
	if strings.Contains(msg, "timed out") || (!strings.Contains(msg, "refused") && time.Since(start) >= probeTimeout-200*time.Millisecond) {
		return fmt.Errorf("%w after %s: %s", errTimedOut, time.Since(start).Round(time.Millisecond), msg)
	}
	return fmt.Errorf("nc %s: exit %d: %s", target, code, msg)
}

// groupProber probes from a group: from its network namespace on the host
// under runc, from its busybox container under gVisor.
func (e *env) groupProber(ctx context.Context, t *testing.T, name string) prober {
	t.Helper()
	if e.isolation == "sandboxed" {
		container := "web"
		if name == "pub-a" {
			container = "side"
		}
		return execProber{e: e, group: name, container: container}
	}
	path, err := e.groupNetNS(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return cmdProber{prefix: []string{"nsenter", "--net=" + path}, nsPath: path}
}

// groupNetNS finds the network namespace file of a group by the labels of
// its containers.
func (e *env) groupNetNS(ctx context.Context, name string) (string, error) {
	key := strings.ToLower(e.sub + "/" + e.rg + "/" + name)
	cs, err := e.ctr.Containers(namespaces.WithNamespace(ctx, berthNamespace), fmt.Sprintf(`labels."io.berth.group"==%q`, key))
	if err != nil || len(cs) == 0 {
		return "", fmt.Errorf("find containers of %s: %v (%d found)", key, err, len(cs))
	}
	labels, err := cs[0].Labels(namespaces.WithNamespace(ctx, berthNamespace))
	if err != nil {
		return "", err
	}
	return filepath.Join(e.srv.DataDir, "netns", labels["io.berth.group-uid"]), nil
}

// groupAddr reads the IPv4 address of eth0 as a container of the group
// sees it: under gVisor the group's namespace on the host no longer holds
// it (the sandbox's own network stack took it over).
func (e *env) groupAddr(ctx context.Context, t *testing.T, group, container string) string {
	t.Helper()
	out, code := e.sh(ctx, t, group, container, "ip -4 -o addr show dev eth0")
	for _, f := range strings.Fields(out) {
		if p, err := netip.ParsePrefix(f); err == nil && p.Addr().Is4() && code == 0 {
			return p.Addr().String()
		}
	}
	t.Fatalf("no IPv4 address on eth0 of %s/%s: exit %d: %s", group, container, code, out)
	return ""
}

// newOutsideClient makes a network namespace joined to the host by a veth
// pair on a free /30, with routes to prefixes through the host: a client
// outside every Berth network.
func newOutsideClient(t *testing.T, prefixes ...netip.Prefix) cmdProber {
	t.Helper()
	p := freePrefix(t, 30, prefixes...)
	hostIP, nsIP := p.Addr().Next(), p.Addr().Next().Next()
	suffix := randomHex(t, 3)
	ns, hostIf, nsIf := "bnt"+suffix, "bnh"+suffix, "bnc"+suffix
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	testenv.KeepRunNetnsClean(t)
	run("netns", "add", ns)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", hostIf).Run()
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
	run("link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	run("link", "set", nsIf, "netns", ns)
	run("addr", "add", hostIP.String()+"/30", "dev", hostIf)
	run("link", "set", hostIf, "up")
	run("-n", ns, "addr", "add", nsIP.String()+"/30", "dev", nsIf)
	run("-n", ns, "link", "set", nsIf, "up")
	run("-n", ns, "link", "set", "lo", "up")
	for _, dst := range prefixes {
		run("-n", ns, "route", "add", dst.String(), "via", hostIP.String())
	}
	return cmdProber{prefix: []string{"ip", "netns", "exec", ns}, nsPath: filepath.Join(testenv.RunNetnsDir, ns)}
}

// waitListening waits until target accepts connections from the host.
func waitListening(ctx context.Context, t *testing.T, target string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", target)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer the host: %v", target, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// freePrefix picks a prefix no interface uses that overlaps none of avoid.
func freePrefix(t *testing.T, bits int, avoid ...netip.Prefix) netip.Prefix {
	t.Helper()
	for range 50 {
		p, err := testenv.FreePrefix(bits)
		if err != nil {
			t.Fatal(err)
		}
		clash := false
		for _, a := range avoid {
			clash = clash || a.Overlaps(p)
		}
		if !clash {
			return p
		}
	}
	t.Fatal("no free prefix")
	return netip.Prefix{}
}

// sub25 and sub26 are the i-th /25 and /26 of a /24.
func sub25(p netip.Prefix, i int) netip.Prefix { return subPrefix(p, 25, i) }
func sub26(p netip.Prefix, i int) netip.Prefix { return subPrefix(p, 26, i) }

func subPrefix(p netip.Prefix, bits, i int) netip.Prefix {
	a := p.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(i) << (32 - bits)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), bits)
}

// listTable returns `nft list table ip NAME` without handles.
func listTable(t *testing.T, table string) string {
	t.Helper()
	out, err := exec.Command("nft", "list", "table", "ip", table).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list table %s: %v: %s", table, err, out)
	}
	return string(out)
}
