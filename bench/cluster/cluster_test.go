package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	armv1 "github.com/berth-dev/berth/api/v20230501"
	"github.com/berth-dev/berth/internal/apiserver"
	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/controllers"
	"github.com/berth-dev/berth/internal/controllers/lifecycle"
	"github.com/berth-dev/berth/internal/controllers/nodes"
	"github.com/berth-dev/berth/internal/controllers/scheduler"
	"github.com/berth-dev/berth/internal/embedetcd/etcdtest"
	"github.com/berth-dev/berth/internal/nodeplane"
	"github.com/berth-dev/berth/internal/pki/pkitest"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/testenv"
	"github.com/berth-dev/berth/internal/types"
)

// mode sizes a run. Smoke checks that a small cluster works end to end;
// full is what docs/benchmarks.md reports, in steps of growing size so
// that what breaks first shows.
type mode struct {
	name           string
	steps          []step
	groupsPerNode  int
	placeGroups    int // scheduler step
	placeNodes     int
	idle           time.Duration // window measured with leases only
	joinTimeout    time.Duration
	runningTimeout time.Duration
	concurrency    int // PUTs in flight
}

var modes = map[string]mode{
	"smoke": {name: "smoke", steps: []step{{20, true}}, groupsPerNode: 2, placeGroups: 2000, placeNodes: 200,
		idle: 4 * time.Second, joinTimeout: time.Minute, runningTimeout: time.Minute, concurrency: 8},
	"full": {name: "full", steps: []step{{100, true}, {300, true}, {1000, true}, {300, false}, {1000, false}}, groupsPerNode: 10, placeGroups: 10000, placeNodes: 1000,
		idle: 15 * time.Second, joinTimeout: 3 * time.Minute, runningTimeout: 5 * time.Minute, concurrency: 32},
}

// step is one cluster size. Without watchAll the agents keep only the
// informer of their own groups, which tells the cost of every agent
// watching every endpoint and node apart from the rest.
type step struct {
	nodes    int
	watchAll bool
}

func (s step) String() string {
	if s.watchAll {
		return fmt.Sprintf("nodes-%d", s.nodes)
	}
	return fmt.Sprintf("nodes-%d-assigned-only", s.nodes)
}

const (
	adminToken = "bench-admin"
	subnet     = "10.64.0.0/16" // room for every group of the largest step
	sub, rg    = "bench-sub", "bench-rg"
)

// TestCluster is the suite: the scheduler alone, then the control plane
// with simulated agents at each size of the mode. It runs only when
// BERTH_BENCH is "smoke" or "full".
func TestCluster(t *testing.T) {
	m, ok := modes[os.Getenv("BERTH_BENCH")]
	if !ok {
		t.Skip("benchmarks run with BERTH_BENCH=smoke or BERTH_BENCH=full (make bench-smoke, make bench)")
	}
	// The API logs every node's registration through the default logger:
	// a thousand lines per step say nothing here.
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	t.Cleanup(func() { slog.SetDefault(prev) })
	rep := &report{m: m, started: time.Now()}
	t.Run("place", func(t *testing.T) { rep.place = placeStep(t, m) })
	for _, st := range m.steps {
		t.Run(st.String(), func(t *testing.T) {
			r := runStep(t, m, st)
			rep.steps = append(rep.steps, r)
			if m.name == "smoke" && !r.ok() {
				t.Errorf("the cluster did not work: %s", r.problems())
			}
		})
	}
	out := rep.markdown()
	fmt.Println(out)
	if m.name == "full" && !t.Failed() {
		if err := testenv.ReplaceGenerated("../../docs/benchmarks.md", beginMarker, endMarker, out+"\n"); err != nil {
			t.Errorf("update docs/benchmarks.md: %v", err)
		}
	}
}

// stepResult is what one cluster size measured.
type stepResult struct {
	nodes, groups int
	watchAll      bool
	join          time.Duration // agents' start → every node Ready
	idle, create  window
	createTime    time.Duration // first PUT → last Running
	running       int
	putErrors     int
	put           summary // the API's answer to a PUT
	toRunning     summary // PUT sent → status Running stored
	renewIdle     summary
	renewCreate   summary
	renewErrors   int64
	reportErrors  int64
	notReady      int64 // nodes that went NotReady during the step
	firstError    string
}

func (r stepResult) ok() bool {
	return r.running == r.groups && r.putErrors == 0 && r.notReady == 0 && r.renewErrors == 0
}

func (r stepResult) problems() string {
	var p []string
	if r.running != r.groups {
		p = append(p, fmt.Sprintf("%d of %d groups Running", r.running, r.groups))
	}
	if r.putErrors > 0 {
		p = append(p, fmt.Sprintf("%d PUTs failed", r.putErrors))
	}
	if r.notReady > 0 {
		p = append(p, fmt.Sprintf("%d nodes went NotReady", r.notReady))
	}
	if r.renewErrors > 0 {
		p = append(p, fmt.Sprintf("%d lease renewals failed", r.renewErrors))
	}
	if r.reportErrors > 0 {
		p = append(p, fmt.Sprintf("%d status reports retried", r.reportErrors))
	}
	if r.firstError != "" {
		p = append(p, "first agent error: "+r.firstError)
	}
	if len(p) == 0 {
		return "none"
	}
	return strings.Join(p, "; ")
}

// window is the load of one phase: CPU of the server's process (etcd,
// store, controllers, API) and of the agents' process, in cores, and the
// etcd writes per second (revisions: one per committed write).
type window struct {
	from, to              time.Time
	serverCores, agentCPU float64
	writesPerSec          float64
}

// meter takes the readings a window is computed from.
type meter struct {
	cli      *clientv3.Client
	agentPID int
}

type reading struct {
	at         time.Time
	self, kids time.Duration
	rev        int64
}

func (m meter) read(ctx context.Context) (reading, error) {
	r := reading{at: time.Now(), self: selfCPU(), kids: procCPU(m.agentPID)}
	resp, err := m.cli.Get(ctx, "/berth-bench-revision")
	if err != nil {
		return r, err
	}
	r.rev = resp.Header.Revision
	return r, nil
}

func between(a, b reading) window {
	wall := b.at.Sub(a.at).Seconds()
	return window{from: a.at, to: b.at,
		serverCores:  (b.self - a.self).Seconds() / wall,
		agentCPU:     (b.kids - a.kids).Seconds() / wall,
		writesPerSec: float64(b.rev-a.rev) / wall, // a read does not move the revision
	}
}

// selfCPU is the process's user and system time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is a running process's user and system time from
// /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces; the fields follow its ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// stack is the server of `berth server` without its local agent, as
// daemon.RunServer composes it, serving over TLS with client
// certificates.
type stack struct {
	cli       *clientv3.Client
	informers *controllers.Informers
	ts        *httptest.Server
	ca        *pkitest.CA
	hc        *http.Client
}

func startStack(t *testing.T) *stack {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cli := etcdtest.NewClient(t)
	st := store.New(cli, "/berth/")
	inf := controllers.NewInformers(st, quiet)
	sched := scheduler.New(scheduler.Options{Store: st, Informers: inf, PublicSubnet: netip.MustParsePrefix(subnet),
		Policy: scheduler.Spread, Logger: quiet})
	nodeCtl := nodes.New(nodes.Options{Store: st, Informers: inf, Logger: quiet})
	life := lifecycle.New(lifecycle.Options{Store: st, Informers: inf, Logger: quiet})
	np := nodeplane.NewServer(nodeplane.ServerOptions{Store: st, Informers: inf, PublicSubnet: subnet})
	api := apiserver.New(apiserver.Options{Store: st, Token: adminToken, Nodes: np, NodeIdentity: nodeIdentity,
		PublicSubnet: subnet, Logger: quiet})

	ca, err := pkitest.New()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("api", true)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(api)
	ts.EnableHTTP2 = true // as the API's server: an agent's watches share a connection
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: ca.Pool, MinVersion: tls.VersionTLS12}
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // agents cut off at the end
	ts.StartTLS()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, r := range []interface{ Run(context.Context) error }{inf, sched, nodeCtl, life} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = r.Run(ctx)
		}()
	}
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
		cancel()
		wg.Wait()
	})
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 64}}
	t.Cleanup(hc.CloseIdleConnections)
	return &stack{cli: cli, informers: inf, ts: ts, ca: ca, hc: hc}
}

// agentsProcess is the child process that runs the simulated agents.
type agentsProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	dir   string
	log   *os.File
}

func startAgents(t *testing.T, s *stack, n int, watchAll bool) *agentsProcess {
	t.Helper()
	dir := t.TempDir()
	if err := s.ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "agents.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestClusterAgents$", "-test.count=1", "-test.timeout=0")
	cmd.Env = append(os.Environ(), envAgentsDir+"="+dir, envAgents+"="+strconv.Itoa(n), envURL+"="+s.ts.URL, envWatchAll+"="+map[bool]string{true: "1", false: "0"}[watchAll])
	cmd.Stdout, cmd.Stderr = logf, logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &agentsProcess{cmd: cmd, stdin: stdin, dir: dir, log: logf}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
		logf.Close()
	})
	return p
}

// stop ends the agents and returns what they measured.
func (p *agentsProcess) stop() (agentResults, error) {
	p.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			out, _ := os.ReadFile(p.log.Name())
			return agentResults{}, fmt.Errorf("agents' process: %v\n%s", err, tail(out, 2000))
		}
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		return agentResults{}, fmt.Errorf("agents' process did not stop")
	}
	b, err := os.ReadFile(filepath.Join(p.dir, resultsFile))
	if err != nil {
		return agentResults{}, err
	}
	var r agentResults
	return r, json.Unmarshal(b, &r)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// runStep runs one cluster of n simulated nodes: join, an idle window
// with leases only, then n×groupsPerNode groups created through the ARM
// API until each is reported Running.
func runStep(t *testing.T, m mode, sp step) stepResult {
	ctx := t.Context()
	s := startStack(t)
	n := sp.nodes
	res := stepResult{nodes: n, groups: n * m.groupsPerNode, watchAll: sp.watchAll}

	var notReady atomic.Int64
	s.informers.Nodes.OnChange(func(ch controller.Change[types.Node]) {
		if ch.Old != nil && ch.New != nil && ch.Old.Ready() && !ch.New.Ready() {
			notReady.Add(1)
		}
	})
	var putAt, runningAt sync.Map // group name → time.Time
	var running atomic.Int64
	s.informers.Statuses.OnChange(func(ch controller.Change[types.GroupStatus]) {
		if ch.New == nil || ch.New.State != "Running" {
			return
		}
		name := ch.Key[strings.LastIndexByte(ch.Key, '/')+1:]
		if _, loaded := runningAt.LoadOrStore(name, time.Now()); !loaded {
			running.Add(1)
		}
	})
	if err := s.informers.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	agents := startAgents(t, s, n, sp.watchAll)
	mt := meter{cli: s.cli, agentPID: agents.cmd.Process.Pid}
	if !waitFor(ctx, m.joinTimeout, func() bool { return readyNodes(s.informers) == n }) {
		t.Fatalf("%d of %d nodes Ready after %s", readyNodes(s.informers), n, m.joinTimeout)
	}
	res.join = time.Since(start)
	t.Logf("%d nodes Ready in %s", n, res.join.Round(time.Millisecond))

	a, err := mt.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(m.idle)
	b, err := mt.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res.idle = between(a, b)

	api := &armClient{hc: s.hc, base: s.ts.URL}
	if code, err := api.do(ctx, http.MethodPut, "/subscriptions/"+sub+"/resourcegroups/"+rg+"?api-version=2021-04-01",
		map[string]string{"location": "westus"}); err != nil || code/100 != 2 {
		t.Fatalf("create resource group: %d %v", code, err)
	}
	names := make(chan string)
	var putMu sync.Mutex
	var putLat []time.Duration
	var putErrors atomic.Int64
	var wg sync.WaitGroup
	c0, err := mt.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range m.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range names {
				at := time.Now()
				putAt.Store(name, at)
				code, err := api.do(ctx, http.MethodPut, groupPath(name), simGroup())
				if err != nil || code/100 != 2 {
					if putErrors.Add(1) == 1 {
						t.Logf("PUT %s: %d %v", name, code, err)
					}
					continue
				}
				putMu.Lock()
				putLat = append(putLat, time.Since(at))
				putMu.Unlock()
			}
		}()
	}
	for i := range res.groups {
		names <- fmt.Sprintf("g-%05d", i)
	}
	close(names)
	wg.Wait()
	want := int64(res.groups) - putErrors.Load()
	waitFor(ctx, m.runningTimeout, func() bool { return running.Load() >= want })
	c1, err := mt.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res.create = between(c0, c1)
	res.createTime = c1.at.Sub(c0.at)
	res.running = int(running.Load())
	res.putErrors = int(putErrors.Load())
	res.put = summarize(putLat)
	var toRunning []time.Duration
	runningAt.Range(func(k, v any) bool {
		if p, ok := putAt.Load(k); ok {
			toRunning = append(toRunning, v.(time.Time).Sub(p.(time.Time)))
		}
		return true
	})
	res.toRunning = summarize(toRunning)
	t.Logf("%d of %d groups Running in %s", res.running, res.groups, res.createTime.Round(time.Millisecond))

	ar, err := agents.stop()
	if err != nil {
		t.Fatal(err)
	}
	res.renewIdle = summarize(renewalsIn(ar.Renewals, res.idle))
	res.renewCreate = summarize(renewalsIn(ar.Renewals, res.create))
	res.renewErrors, res.reportErrors, res.firstError = ar.RenewErrors, ar.ReportErrors, ar.FirstError
	res.notReady = notReady.Load()
	t.Logf("problems: %s", res.problems())
	return res
}

func renewalsIn(all [][2]int64, w window) []time.Duration {
	var out []time.Duration
	for _, r := range all {
		if at := time.Unix(0, r[0]); !at.Before(w.from) && at.Before(w.to) {
			out = append(out, time.Duration(r[1]))
		}
	}
	return out
}

func readyNodes(in *controllers.Informers) int {
	n := 0
	for _, it := range in.Nodes.List() {
		if it.Value.Ready() {
			n++
		}
	}
	return n
}

// waitFor polls cond every 50 ms until it holds or d has passed.
func waitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// armClient sends ARM requests with the admin token over one transport.
type armClient struct {
	hc   *http.Client
	base string
}

func (c *armClient) do(ctx context.Context, method, path string, body any) (int, error) {
	buf, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(buf))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("%s", tail(msg, 300))
	}
	return resp.StatusCode, nil
}

func groupPath(name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourcegroups/%s/providers/microsoft.containerinstance/containergroups/%s?api-version=%s",
		sub, rg, url.PathEscape(name), armv1.APIVersion)
}

func ptr[T any](v T) *T { return &v }

// simGroup is a one-container group with a public address, the shape of
// the single-node suite's hello group: 16 of them fill a simulated node.
func simGroup() armv1.ContainerGroup {
	return armv1.ContainerGroup{
		Location: "westus",
		Properties: &armv1.ContainerGroupProperties{
			OSType:        "Linux",
			RestartPolicy: "Always",
			Containers: []armv1.Container{{
				Name: "hello",
				Properties: &armv1.ContainerProperties{
					Image:     "registry.invalid/hello:1",
					Resources: &armv1.ResourceRequirements{Requests: &armv1.ResourceRequests{CPU: ptr(1.0), MemoryInGB: ptr(0.5)}},
					Ports:     []armv1.ContainerPort{{Port: ptr[int32](80), Protocol: "TCP"}},
				},
			}},
			IPAddress: &armv1.IPAddress{Type: "Public", Ports: []armv1.Port{{Port: ptr[int32](80), Protocol: "TCP"}}},
		},
	}
}
