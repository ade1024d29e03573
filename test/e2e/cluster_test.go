package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerinstance/armcontainerinstance/v2"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/google/uuid"

	"github.com/berth-dev/berth/internal/testenv"
)

// cluster is a Berth cluster on this machine: one server without a local
// agent in the root namespace, listening on the infra bridge, and nodes
// in network namespaces of their own, each with its own containerd and
// `berth agent`, joined by tokens.
type cluster struct {
	*env
	nn     *testenv.NodeNetwork
	ctds   []*testenv.Containerd
	agents []*testenv.Agent
	// cliConfig is the berth CLI's configuration, logged in as the admin.
	cliConfig string
}

// newCluster makes the infra network with room for size nodes and the
// server; no node is started yet.
func newCluster(t *testing.T, size int) *cluster {
	t.Helper()
	testenv.RequireRoot(t)
	isolation := testenv.DefaultIsolation()
	if isolation == "sandboxed" {
		testenv.RequireRunsc(t)
	}
	c := &cluster{env: &env{isolation: isolation}}
	c.nn = testenv.StartNodeNetwork(t, size)
	c.ctds = make([]*testenv.Containerd, size)
	c.agents = make([]*testenv.Agent, size)
	host := c.nn.BridgeAddr.String()
	c.reg = testenv.StartRegistryOn(t, host)
	c.helloRef = testenv.PushHelloImage(t, c.reg)
	c.srv = testenv.StartServer(t, testenv.ServerOptions{
		NoLocalAgent:       true,
		ListenHost:         host,
		Isolation:          isolation,
		InsecureRegistries: []string{c.reg.Addr},
	})
	c.connect(t, c.srv.Client.Token, uuid.NewString())
	return c
}

// joinToken makes a join token the way an operator does.
func (c *cluster) joinToken(t *testing.T) string {
	t.Helper()
	tok := strings.TrimSpace(c.cli(t, "node", "token", "create", "--ttl", "1h"))
	if tok == "" || strings.ContainsAny(tok, " \n") {
		t.Fatalf("berth node token create printed %q, want the token alone", tok)
	}
	return tok
}

// cli runs the berth CLI as the admin and fails the test unless it exits 0.
func (c *cluster) cli(t *testing.T, args ...string) string {
	t.Helper()
	bin := testenv.BuildBerth(t)
	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "BERTH_CONFIG="+c.cliConfig)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("berth %s: %v: %s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String()
	}
	if c.cliConfig == "" {
		dir := t.TempDir()
		c.cliConfig = filepath.Join(dir, "config.json")
		b, err := json.Marshal(c.srv.Client)
		if err != nil {
			t.Fatal(err)
		}
		clientJSON := filepath.Join(dir, "client.json")
		if err := os.WriteFile(clientJSON, b, 0o600); err != nil {
			t.Fatal(err)
		}
		run("login", "--config", clientJSON)
	}
	return run(args...)
}

// admin calls the node API with the admin token and decodes the answer.
func (c *cluster) admin(t *testing.T, method, path string, body any, want int, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.srv.Do(ctx, method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: got %s, want %d: %s", method, path, resp.Status, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

// startNode starts node i's containerd and agent, joined with a fresh
// token, in zone i+1, with cpu CPUs for groups.
func (c *cluster) startNode(t *testing.T, i int, cpu float64) *testenv.Agent {
	t.Helper()
	node := c.nn.Nodes[i]
	c.ctds[i] = testenv.StartContainerdIn(t, node.NetNSPath)
	c.agents[i] = testenv.StartAgent(t, testenv.AgentOptions{
		Node:               node,
		Containerd:         c.ctds[i],
		Server:             c.srv,
		JoinToken:          c.joinToken(t),
		Zone:               fmt.Sprint(i + 1),
		Isolation:          c.isolation,
		InsecureRegistries: []string{c.reg.Addr},
		CPU:                cpu,
		MemoryGB:           4,
	})
	c.waitNodeReady(t, node.Name)
	return c.agents[i]
}

// nodeView is what GET /berth/v1/nodes/{node} answers, in part.
type nodeView struct {
	Node struct {
		Name          string `json:"name"`
		Zone          string `json:"zone"`
		Unschedulable bool   `json:"unschedulable"`
		Conditions    []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"conditions"`
	} `json:"node"`
	Groups []string `json:"groups"`
}

func (v nodeView) ready() bool {
	for _, c := range v.Node.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

func (c *cluster) node(t *testing.T, name string) nodeView {
	t.Helper()
	var v nodeView
	c.admin(t, http.MethodGet, "/berth/v1/nodes/"+name, nil, http.StatusOK, &v)
	return v
}

func (c *cluster) waitNodeReady(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !c.node(t, name).ready() {
		if time.Now().After(deadline) {
			t.Fatalf("node %s not Ready after 30s", name)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// running lists, per node, the names of the groups of the test's
// resource group that have a running task on the node's containerd:
// what really runs where, whatever the control plane says.
func (c *cluster) running(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	prefix := strings.ToLower(c.sub + "/" + c.rg + "/")
	for i, ctd := range c.ctds {
		if ctd == nil || c.agents[i] == nil || !c.agents[i].Running() {
			continue
		}
		ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), berthNamespace), 20*time.Second)
		cl := ctd.Client(t)
		tasks, err := cl.TaskService().List(ctx, &tasksapi.ListTasksRequest{})
		if err != nil {
			cancel()
			t.Fatalf("node %d: list tasks: %v", i, err)
		}
		for _, task := range tasks.Tasks {
			if task.Status.String() != "RUNNING" {
				continue
			}
			ctr, err := cl.ContainerService().Get(ctx, task.ID)
			if err != nil {
				continue // sandbox tasks of gVisor have no Berth labels
			}
			if g, ok := strings.CutPrefix(ctr.Labels["io.berth.group"], prefix); ok {
				out[c.nn.Nodes[i].Name] = append(out[c.nn.Nodes[i].Name], g)
			}
		}
		cancel()
	}
	for n := range out {
		slices.Sort(out[n])
		out[n] = slices.Compact(out[n])
	}
	return out
}

// whereRuns is the node a group runs on, "" when none, and fails on a
// group running on two nodes.
func whereRuns(t *testing.T, running map[string][]string, group string) string {
	t.Helper()
	var on []string
	for n, gs := range running {
		if slices.Contains(gs, group) {
			on = append(on, n)
		}
	}
	if len(on) > 1 {
		t.Fatalf("group %s runs on %v at once", group, on)
	}
	if len(on) == 0 {
		return ""
	}
	return on[0]
}

// smallGroup is helloGroup asking for a tenth of a CPU.
func smallGroup(image string, cpu float64) armcontainerinstance.ContainerGroup {
	g := helloGroup(image)
	g.Properties.Containers[0].Properties.Resources.Requests.CPU = to.Ptr(cpu)
	g.Properties.Containers[0].Properties.Resources.Requests.MemoryInGB = to.Ptr(0.25)
	return g
}

// createAsync starts a create without waiting: a group that cannot be
// placed stays Pending.
func (c *cluster) createAsync(ctx context.Context, t *testing.T, name string, cg armcontainerinstance.ContainerGroup) {
	t.Helper()
	t.Cleanup(func() { c.deleteIfExists(t, name) })
	if _, err := c.groups.BeginCreateOrUpdate(ctx, c.rg, name, cg, nil); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
}

// TestCluster is the cluster's acceptance: joining, spreading, zones, a
// group that waits for room, logs and exec on every node, losing a node,
// drain and cordon, and a server restart under running groups.
func TestCluster(t *testing.T) {
	c := newCluster(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	for i := range 3 {
		c.startNode(t, i, 1)
	}
	names := []string{c.nn.Nodes[0].Name, c.nn.Nodes[1].Name, c.nn.Nodes[2].Name}
	list := c.cli(t, "node", "list")
	for i, n := range names {
		if !regexp.MustCompile(`(?m)^` + n + `\s+Ready\s+` + fmt.Sprint(i+1) + `\s`).MatchString(list) {
			t.Errorf("berth node list does not show %s Ready in zone %d:\n%s", n, i+1, list)
		}
	}

	t.Run("a used token joins nobody", func(t *testing.T) {
		tok := c.joinToken(t)
		// The token is spent by a node that joins with it...
		node := c.nn.Nodes[3]
		ctd := testenv.StartContainerdIn(t, node.NetNSPath)
		first := testenv.StartAgent(t, testenv.AgentOptions{Node: node, Containerd: ctd, Server: c.srv, JoinToken: tok, NodeName: "spent-1",
			Isolation: c.isolation, InsecureRegistries: []string{c.reg.Addr}, CPU: 0.05, MemoryGB: 0.1})
		first.Stop(t)
		// ...and refused to the next one, which creates nothing.
		second := testenv.StartAgent(t, testenv.AgentOptions{Node: node, Containerd: ctd, Server: c.srv, JoinToken: tok, NodeName: "spent-2",
			Isolation: c.isolation, InsecureRegistries: []string{c.reg.Addr}, SkipReadyWait: true})
		if code := second.WaitExit(t, 30*time.Second); code == 0 {
			t.Fatal("an agent with a used token exited 0")
		}
		if !strings.Contains(second.Log(), "already used") {
			t.Errorf("the refused agent does not say why; its log:\n%s", second.Log())
		}
		ctx2, cancel2 := context.WithTimeout(ctx, 10*time.Second)
		defer cancel2()
		resp, err := c.srv.Do(ctx2, http.MethodGet, "/berth/v1/nodes/spent-2", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET node spent-2: %s, want 404: a refused join must create nothing", resp.Status)
		}
		c.admin(t, http.MethodPost, "/berth/v1/nodes/spent-1/cordon", nil, http.StatusOK, nil)
	})

	// Six small groups spread two per node.
	var groups []string
	for i := range 6 {
		name := fmt.Sprintf("spread-%d", i)
		groups = append(groups, name)
		c.createAsync(ctx, t, name, smallGroup(c.helloRef, 0.2))
	}
	for _, g := range groups {
		c.waitRunning(ctx, t, g)
	}
	run := c.running(t)
	for _, n := range names {
		if len(run[n]) != 2 {
			t.Errorf("node %s runs %v, want 2 groups of the 6 spread evenly (all: %v)", n, run[n], run)
		}
	}

	t.Run("zones", func(t *testing.T) {
		g := smallGroup(c.helloRef, 0.1)
		g.Zones = []*string{to.Ptr("2")}
		if _, err := c.create(ctx, t, "zoned", g); err != nil {
			t.Fatal(err)
		}
		c.waitRunning(ctx, t, "zoned")
		if got := whereRuns(t, c.running(t), "zoned"); got != names[1] {
			t.Errorf("group of zone 2 runs on %q, want %s (zone 2)", got, names[1])
		}
	})

	t.Run("logs and exec on every node", func(t *testing.T) {
		for _, g := range groups {
			if _, err := c.logsContain(ctx, g, "hello", "listening"); err != nil {
				t.Errorf("logs of %s: %v", g, err)
			}
		}
		// A shell on each node, pinned there by its zone.
		busybox := testenv.PushBusyboxImage(t, c.reg)
		shell := to.SliceOfPtrs("/bin/sh", "-c", "echo shell-up; trap 'exit 0' TERM; while true; do echo tick-$(date +%s); sleep 1; done")
		for i := range 3 {
			cg := busyboxGroup(busybox, "sh", "Always", shell)
			cg.Properties.Containers[0].Properties.Resources.Requests.CPU = to.Ptr(0.1)
			cg.Zones = []*string{to.Ptr(fmt.Sprint(i + 1))}
			c.createAsync(ctx, t, fmt.Sprintf("shell-%d", i), cg)
		}
		for i := range 3 {
			name := fmt.Sprintf("shell-%d", i)
			wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			c.waitRunning(wctx, t, name)
			cancel()
			if on := whereRuns(t, c.running(t), name); on != names[i] {
				t.Errorf("%s runs on %q, want %s", name, on, names[i])
			}
			if _, err := c.logsContain(ctx, name, "sh", "shell-up"); err != nil {
				t.Errorf("logs of %s: %v", name, err)
			}
			out, code, err := c.execOut(ctx, name, "sh", "echo from-$((40+2)); exit 3")
			if err != nil || code != 3 || !strings.Contains(out, "from-42") {
				t.Errorf("exec in %s on %s: %q, code %d, %v", name, names[i], out, code, err)
			}
			// Attach streams the output printed after attaching.
			sess := c.postSession(ctx, t, name, "sh", "attach", nil)
			conn := c.dial(ctx, t, sess.WebSocketURI, http.Header{"Authorization": {sess.Password}})
			out, err = newReader(conn).until(ctx, 20*time.Second, func(s string) bool { return strings.Count(s, "tick-") >= 2 })
			conn.Close()
			if err != nil {
				t.Errorf("attach to %s on %s: want 2 ticks: %v; got %q", name, names[i], err, out)
			}
			if err := c.remove(ctx, name); err != nil {
				t.Errorf("delete %s: %v", name, err)
			}
		}
	})

	t.Run("networking across nodes", func(t *testing.T) {
		testenv.RequireBinary(t, "/bin/busybox")
		busybox := testenv.PushBusyboxImage(t, c.reg)
		p1 := freePrefix(t, 24, c.nn.Prefix)
		p2 := freePrefix(t, 24, c.nn.Prefix, p1)
		vnet1 := c.putVNet(ctx, t, "vnet1", []string{p1.String()}, map[string]vnetSubnet{"s1": {p1, true}})
		vnet2 := c.putVNet(ctx, t, "vnet2", []string{p2.String()}, map[string]vnetSubnet{"s1": {p2, true}})
		httpd := to.SliceOfPtrs("/bin/sh", "-c", "trap 'exit 0' TERM; httpd -f -p 80 -h /tmp & wait")
		// Zones pin each group to a node: 1 is node-0, 2 node-1, 3 node-2.
		private := func(subnet, zone string) armcontainerinstance.ContainerGroup {
			cg := busyboxGroup(busybox, "web", "Always", httpd)
			cg.Properties.Containers[0].Properties.Resources.Requests.CPU = to.Ptr(0.1)
			cg.Properties.SubnetIDs = []*armcontainerinstance.ContainerGroupSubnetID{{ID: to.Ptr(subnet)}}
			cg.Zones = []*string{to.Ptr(zone)}
			return cg
		}
		far := smallGroup(c.helloRef, 0.1)
		far.Zones = []*string{to.Ptr("2")}
		far.Properties.IPAddress.DNSNameLabel = to.Ptr("far-" + randomHex(t, 4))
		// A second server in the group, on a port the group does not
		// declare: closed to everyone outside the group, on any node.
		far.Properties.Containers = append(far.Properties.Containers, &armcontainerinstance.Container{
			Name: to.Ptr("side"),
			Properties: &armcontainerinstance.ContainerProperties{
				Image:     to.Ptr(busybox),
				Command:   to.SliceOfPtrs("/bin/sh", "-c", "trap 'exit 0' TERM; httpd -f -p 81 -h /tmp & wait"),
				Resources: &armcontainerinstance.ResourceRequirements{Requests: &armcontainerinstance.ResourceRequests{CPU: to.Ptr(0.05), MemoryInGB: to.Ptr(0.1)}},
			},
		})
		for name, cg := range map[string]armcontainerinstance.ContainerGroup{
			"v1-near": private(vnet1+"/subnets/s1", "1"),
			"v1-far":  private(vnet1+"/subnets/s1", "3"),
			"v2-near": private(vnet2+"/subnets/s1", "1"),
			"pub-far": far,
		} {
			c.createAsync(ctx, t, name, cg)
		}
		ips := map[string]string{}
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
		defer wcancel()
		var farFQDN string
		for _, name := range []string{"v1-near", "v1-far", "v2-near", "pub-far"} {
			cg := c.waitRunning(wctx, t, name)
			ips[name] = groupIP(cg)
			if name == "pub-far" {
				farFQDN = fqdnOf(cg)
			}
		}
		// Its DNS name resolves to it, wherever it runs.
		c.waitResolves(t, farFQDN, ips["pub-far"], 10*time.Second)
		// A public group on node-1 answers in node-0's namespace.
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DialContext: c.nn.Nodes[0].DialContext}}
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := hc.Get("http://" + ips["pub-far"] + ":80/")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				err = fmt.Errorf("got %s", resp.Status)
			}
			if time.Now().After(deadline) {
				t.Fatalf("public group %s on node-1 from node-0's namespace: %v", ips["pub-far"], err)
			}
			time.Sleep(250 * time.Millisecond)
		}
		// Port 81 listens inside the group...
		if err := (execProber{e: c.env, group: "pub-far", container: "side"}).probe(ctx, "127.0.0.1:81"); err != nil {
			t.Fatalf("port 81 does not listen in pub-far: %v", err)
		}
		// ...and is closed to node-0.
		dctx, dcancel := context.WithTimeout(ctx, 3*time.Second)
		if conn, err := c.nn.Nodes[0].DialContext(dctx, "tcp", ips["pub-far"]+":81"); err == nil {
			conn.Close()
			t.Errorf("the undeclared port 81 of a public group on node-1 answers node-0")
		}
		dcancel()
		near := execProber{e: c.env, group: "v1-near", container: "web"}
		// One virtual network spans nodes; another stays apart. The far
		// httpd may be a moment behind its Running state.
		var err error
		for range 5 {
			if err = near.probe(ctx, ips["v1-far"]+":80"); err == nil {
				break
			}
			time.Sleep(time.Second)
		}
		if err != nil {
			t.Errorf("vnet1 group on node-0 to vnet1 group on node-2: %v", err)
		}
		other := execProber{e: c.env, group: "v2-near", container: "web"}
		if err := other.probe(ctx, ips["v1-far"]+":80"); err == nil {
			t.Errorf("vnet2 group reached a vnet1 group on another node")
		}
		for _, name := range []string{"v1-near", "v1-far", "v2-near", "pub-far"} {
			if err := c.remove(ctx, name); err != nil {
				t.Errorf("delete %s: %v", name, err)
			}
		}
	})

	t.Run("too big waits for a node with room", func(t *testing.T) {
		c.createAsync(ctx, t, "big", smallGroup(c.helloRef, 1.5))
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := c.groups.Get(ctx, c.rg, "big", nil)
			if err == nil && slices.ContainsFunc(eventMessages(resp.ContainerGroup), func(m string) bool { return strings.Contains(m, "nodes are available") }) {
				if s := containerState(resp.ContainerGroup); s == "Running" {
					t.Fatalf("too big group runs")
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no scheduling event on the too big group after 30s: %v", eventMessages(resp.ContainerGroup))
			}
			time.Sleep(500 * time.Millisecond)
		}
		c.admin(t, http.MethodPost, "/berth/v1/nodes/spent-1/uncordon", nil, http.StatusOK, nil)
		// A node with room joins: the group runs there.
		c.agents[3] = nil
		c.startNode(t, 3, 2)
		c.waitRunning(ctx, t, "big")
		if got := whereRuns(t, c.running(t), "big"); got != c.nn.Nodes[3].Name {
			t.Errorf("big group runs on %q, want the new node %s", got, c.nn.Nodes[3].Name)
		}
		if err := c.remove(ctx, "big"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a lost node's groups run elsewhere and never twice", func(t *testing.T) {
		victim := 0
		lost := c.running(t)[names[victim]]
		if len(lost) == 0 {
			t.Fatalf("node %s runs nothing", names[victim])
		}
		c.agents[victim].Kill()
		c.ctds[victim].Kill(t)
		killed := time.Now()
		for _, g := range lost {
			for {
				run := c.running(t)
				if on := whereRuns(t, run, g); on != "" && on != names[victim] {
					break
				}
				if time.Since(killed) > 30*time.Second {
					t.Fatalf("group %s not running elsewhere 30s after its node died: %v", g, run)
				}
				time.Sleep(250 * time.Millisecond)
			}
		}
		t.Logf("the lost node's groups run elsewhere %s after the kill", time.Since(killed).Round(100*time.Millisecond))
		for _, g := range lost {
			c.waitRunning(ctx, t, g)
		}
		// The node comes back: it stops what moved away.
		c.ctds[victim].Restart(t)
		c.agents[victim].Restart(t)
		c.waitNodeReady(t, names[victim])
		deadline := time.Now().Add(30 * time.Second)
		for {
			run := c.running(t)
			twice := false
			for _, g := range lost {
				twice = twice || slices.Contains(run[names[victim]], g)
			}
			if !twice {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the rejoined node still runs groups that moved away: %v", run)
			}
			time.Sleep(250 * time.Millisecond)
		}
		// And it stays so: each group runs once, elsewhere.
		time.Sleep(3 * time.Second)
		run := c.running(t)
		for _, g := range lost {
			if on := whereRuns(t, run, g); on == "" || on == names[victim] {
				t.Errorf("group %s runs on %q after the rejoin, want another node: %v", g, on, run)
			}
		}
	})

	t.Run("drain empties a node, cordon keeps new groups off", func(t *testing.T) {
		drained := names[1]
		c.cli(t, "node", "drain", drained)
		deadline := time.Now().Add(60 * time.Second)
		for len(c.running(t)[drained]) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("drained node still runs %v", c.running(t)[drained])
			}
			time.Sleep(500 * time.Millisecond)
		}
		for _, g := range groups {
			c.waitRunning(ctx, t, g)
		}
		cordoned := names[2]
		c.cli(t, "node", "cordon", cordoned)
		if list := c.cli(t, "node", "list"); !regexp.MustCompile(`(?m)^` + cordoned + `\s+Ready,SchedulingDisabled\s`).MatchString(list) {
			t.Errorf("berth node list does not show %s cordoned:\n%s", cordoned, list)
		}
		for i := range 3 {
			name := fmt.Sprintf("after-cordon-%d", i)
			if _, err := c.create(ctx, t, name, smallGroup(c.helloRef, 0.05)); err != nil {
				t.Fatal(err)
			}
			c.waitRunning(ctx, t, name)
			if on := whereRuns(t, c.running(t), name); on == cordoned || on == drained {
				t.Errorf("new group %s placed on %s, which is cordoned or drained", name, on)
			}
		}
		c.admin(t, http.MethodPost, "/berth/v1/nodes/"+drained+"/uncordon", nil, http.StatusOK, nil)
		c.admin(t, http.MethodPost, "/berth/v1/nodes/"+cordoned+"/uncordon", nil, http.StatusOK, nil)
	})

	t.Run("server restart stops nothing", func(t *testing.T) {
		before := c.running(t)
		starts := map[string]time.Time{}
		for _, g := range groups {
			resp, err := c.groups.Get(ctx, c.rg, g, nil)
			if err != nil {
				t.Fatal(err)
			}
			starts[g] = startTime(resp.ContainerGroup)
		}
		c.srv.Restart(t)
		time.Sleep(5 * time.Second) // a few lease periods
		for _, g := range groups {
			// The agent's clock and the runtime's take a start a moment
			// apart: a restart is a later start, by seconds.
			if got := startTime(c.waitRunning(ctx, t, g)); got.Sub(starts[g]).Abs() > time.Second {
				t.Errorf("group %s restarted across the server restart: started %s, now %s", g, starts[g], got)
			}
		}
		if after := c.running(t); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("placement changed across the server restart:\nbefore %v\nafter  %v", before, after)
		}
	})
}

// startTime is the first container's current start time.
func startTime(cg armcontainerinstance.ContainerGroup) time.Time {
	if cg.Properties == nil || len(cg.Properties.Containers) == 0 {
		return time.Time{}
	}
	iv := cg.Properties.Containers[0].Properties.InstanceView
	if iv == nil || iv.CurrentState == nil || iv.CurrentState.StartTime == nil {
		return time.Time{}
	}
	return *iv.CurrentState.StartTime
}
