package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/google/uuid"

	armv1 "github.com/berth-dev/berth/api/v20230501"
	"github.com/berth-dev/berth/internal/imagebuild"
	"github.com/berth-dev/berth/internal/testenv"
)

// mode sizes a run. Smoke runs every step a few times and checks only
// that each one works; full is what docs/benchmarks.md reports.
type mode struct {
	name           string
	latencyRuns    int // (1) one-container group
	pairRuns       int // (2) two-container group
	coldRuns       int // (3) cold pull + start
	throughput     int // (4) groups created at once
	density        int // (5) idle groups
	apiGroups      int // (6) groups in the listed resource group
	apiConcurrency int
	apiDuration    time.Duration
	profileSeconds int // (7) CPU profile length during (1)
	sandboxRuns    int // (1) under sandboxed isolation
	sandboxDensity int // (5) under sandboxed isolation
}

var modes = map[string]mode{
	"smoke": {name: "smoke", latencyRuns: 3, pairRuns: 2, coldRuns: 1, throughput: 5, density: 3,
		apiGroups: 10, apiConcurrency: 4, apiDuration: time.Second, profileSeconds: 3,
		sandboxRuns: 2, sandboxDensity: 2},
	"full": {name: "full", latencyRuns: 50, pairRuns: 20, coldRuns: 5, throughput: 100, density: 300,
		apiGroups: 1000, apiConcurrency: 16, apiDuration: 10 * time.Second, profileSeconds: 60,
		sandboxRuns: 50, sandboxDensity: 50},
}

// bigImageMiB is the size of the incompressible layer of the cold-pull
// image.
const bigImageMiB = 50

// harness is one complete set-up: a private containerd shared by Berth and
// the ctr baseline, a registry with the images, a berth server, and
// podman with its own state.
type harness struct {
	m         mode
	ctd       *testenv.Containerd
	srv       *testenv.Server
	cl        *client.Client
	api       *berthAPI
	ctr       *ctrBaseline
	pod       *podmanBaseline
	hello     string
	busybox   string
	big       string
	pprofAddr string
	subnet    netip.Prefix
	node      *node // the runc server of every step
	step1     map[string]summary
	reg       *testenv.Registry
	rep       *report
	seq       int
}

// TestBench is the whole suite. It runs only when BERTH_BENCH is "smoke"
// or "full" (the make targets set it), so that `go test ./...` skips it.
func TestBench(t *testing.T) {
	m, ok := modes[os.Getenv("BERTH_BENCH")]
	if !ok {
		t.Skip("benchmarks run with BERTH_BENCH=smoke or BERTH_BENCH=full (make bench-smoke, make bench)")
	}
	testenv.RequireRoot(t)
	for _, bin := range []string{"ctr", "podman", "runc", "go"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("benchmarks need %s (run hack/setup.sh)", bin)
		}
	}
	h := newHarness(t, m)
	type step struct {
		name string
		fn   func(*testing.T)
	}
	steps := []step{
		{"latency", h.latency},
		{"pair", h.pair},
		{"cold", h.cold},
		{"throughput", h.throughput},
		{"density", h.densityStep},
		{"sandboxed", h.sandboxed},
		{"api", h.apiLoad},
	}
	if os.Getenv("BERTH_BENCH_ISOLATION") == "runc" {
		// For machines without gVisor: the report says it was left out.
		steps = slices.DeleteFunc(steps, func(s step) bool { return s.name == "sandboxed" })
		h.rep.parts = append(h.rep.parts, "Sandboxed isolation was not measured in this run (BERTH_BENCH_ISOLATION=runc).\n")
	}
	for _, s := range steps {
		start := time.Now()
		ok := t.Run(s.name, s.fn)
		t.Logf("step %s: ok=%v in %s", s.name, ok, time.Since(start).Round(time.Second))
	}
	out := h.rep.markdown()
	fmt.Println(out)
	if m.name == "full" && !t.Failed() {
		if err := testenv.ReplaceGenerated("../docs/benchmarks.md", beginMarker, endMarker, out); err != nil {
			t.Errorf("update docs/benchmarks.md: %v", err)
		}
	}
}

func newHarness(t *testing.T, m mode) *harness {
	h := &harness{m: m}
	h.ctd = testenv.StartContainerd(t)
	reg := testenv.StartRegistry(t)
	h.reg = reg
	h.hello = testenv.PushHelloImage(t, reg)
	h.busybox = testenv.PushBusyboxImage(t, reg)
	h.big = pushBigImage(t, reg)

	// A /22, so that 300 groups get addresses: testenv's server subnet is
	// a /24. It lies outside testenv's range, so parallel tests never
	// collide with it.
	var err error
	if h.subnet, err = pickSubnet(22); err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	h.pprofAddr = fmt.Sprintf("127.0.0.1:%d", port)
	h.srv = testenv.StartServer(t, testenv.ServerOptions{
		Containerd:         h.ctd,
		InsecureRegistries: []string{reg.Addr},
		LogLevel:           "info", // debug logging would be part of what is measured
		// runc, as ctr and podman run their containers; the gVisor
		// figures come from benchSandboxed.
		Isolation: "runc",
		ExtraArgs: []string{"--subnet", h.subnet.String(), "--pprof-listen", h.pprofAddr},
	})
	// The later --subnet wins; the server cleanup removes iptables rules
	// by this field, so point it at the subnet really used.
	h.srv.Subnet = h.subnet.String()

	hc := h.srv.HTTPClient()
	hc.Transport.(*http.Transport).MaxIdleConnsPerHost = 256
	h.api = &berthAPI{hc: hc, endpoint: h.srv.Client.Endpoint, token: h.srv.Client.Token, sub: uuid.NewString(), rg: "bench"}
	h.cl = h.ctd.Client(t)
	h.ctr = &ctrBaseline{address: h.ctd.Address, cl: h.cl}
	h.pod = startPodman(t)
	h.node = &node{api: h.api, ctd: h.ctd, cl: h.cl, serverPid: serverPid(t, h.srv), ctdPid: containerdPid(t, h.ctd)}
	h.rep = newReport(m, h)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := h.api.createResourceGroup(ctx); err != nil {
		t.Fatal(err)
	}
	h.warmUp(ctx, t)
	return h
}

func serverPid(t *testing.T, srv *testenv.Server) int {
	return onePid(t, func(a []string) bool { return len(a) > 1 && a[1] == "server" && hasArgs(a, "--data-dir", srv.DataDir) })
}

func containerdPid(t *testing.T, c *testenv.Containerd) int {
	return onePid(t, func(a []string) bool {
		return len(a) > 2 && a[0] == "containerd" && hasArgs(a, "--config", configPath(c))
	})
}

// configPath is where testenv wrote c's config, next to its socket: the
// daemon's command line names it, which identifies the process.
func configPath(c *testenv.Containerd) string {
	return filepath.Join(filepath.Dir(c.Address), "config.toml")
}

func onePid(t *testing.T, match func([]string) bool) int {
	t.Helper()
	pids := findPids(match)
	if len(pids) != 1 {
		t.Fatalf("found %d matching processes, want 1: %v", len(pids), pids)
	}
	return pids[0]
}

// warmUp caches the images everywhere and runs each kind of workload once,
// so that the measured runs all start from cached images, an existing
// bridge and podman's built pause image.
func (h *harness) warmUp(ctx context.Context, t *testing.T) {
	t.Helper()
	for _, ref := range []string{h.hello, h.busybox} {
		if err := h.ctr.pull(ctx, ref); err != nil {
			t.Fatal(err)
		}
		if err := h.pod.pull(ctx, ref); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.berthRun(ctx, helloGroup(h.hello), helloProbe); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	if _, err := h.berthRun(ctx, pairGroup(h.hello, h.busybox), pairProbes); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	if _, err := h.ctrHello(ctx, false); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	if _, err := h.podmanHello(ctx); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	if _, err := h.podmanPair(ctx); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
}

func (h *harness) name(prefix string) string {
	h.seq++
	return fmt.Sprintf("%s-%d", prefix, h.seq)
}

// berthRun creates a group, waits until it runs, and deletes it (waiting
// for the delete, so that the next run starts from a quiet server).
func (h *harness) berthRun(ctx context.Context, g armv1.ContainerGroup, probes []probeSpec) (startResult, error) {
	return h.berthRunOn(ctx, h.api, g, probes)
}

// berthRunOn is berthRun against the server api talks to.
func (h *harness) berthRunOn(ctx context.Context, api *berthAPI, g armv1.ContainerGroup, probes []probeSpec) (startResult, error) {
	name := h.name("g")
	res, err := api.createAndWait(ctx, name, g, probes, 10*time.Millisecond)
	if err == nil {
		res.group, _, err = api.get(ctx, name)
	}
	if derr := api.remove(ctx, name, true); derr != nil && err == nil {
		err = derr
	}
	return res, err
}

// timed starts the clock, probes host in the background while run starts
// the workload, and returns the time of the first complete answer. run
// must succeed too. It is for the ctr baseline on loopback, where an early
// probe is refused at once: the floor, without even the CLI's exit.
func timed(ctx context.Context, host string, probes []probeSpec, run func(context.Context) error) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	type result struct {
		d   time.Duration
		err error
	}
	start := time.Now()
	answered := make(chan result, 1)
	go func() {
		err := waitAnswers(ctx, host, probes)
		answered <- result{time.Since(start), err}
	}()
	if err := run(ctx); err != nil {
		return 0, err
	}
	r := <-answered
	return r.d, r.err
}

// afterRun is timed for a workload on a bridge: the probes start once run
// returned. A probe sent before the workload's address exists leaves an
// incomplete neighbour entry, and the kernel retries ARP only after a
// second (and it would send traffic for an address nobody has yet toward
// the default route if the bridge did not exist): that second would be
// measured, not the workload. Berth's groups are probed the same way, once
// their status shows the IP.
func afterRun(ctx context.Context, host string, probes []probeSpec, run func(context.Context) error) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	start := time.Now()
	if err := run(ctx); err != nil {
		return 0, err
	}
	err := waitAnswers(ctx, host, probes)
	return time.Since(start), err
}

// ctrHello runs hello with ctr; pull makes it pull first (cold start).
func (h *harness) ctrHello(ctx context.Context, pull bool) (time.Duration, error) {
	return h.ctrHelloImage(ctx, h.hello, pull)
}

func (h *harness) ctrHelloImage(ctx context.Context, ref string, pull bool) (time.Duration, error) {
	id := h.name("ctr")
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	defer h.ctr.remove(context.WithoutCancel(ctx), id)
	return timed(ctx, "127.0.0.1", []probeSpec{{port: port, want: "Hello from Berth"}}, func(ctx context.Context) error {
		if pull {
			if err := h.ctr.pull(ctx, ref); err != nil {
				return err
			}
		}
		return h.ctr.runHello(ctx, id, ref, port)
	})
}

func (h *harness) ctrPair(ctx context.Context) (time.Duration, error) {
	id := h.name("ctrpair")
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	webPort, err := freePort()
	if err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "bench-shared-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	defer func() {
		rctx := context.WithoutCancel(ctx)
		_ = h.ctr.remove(rctx, id+"-hello")
		_ = h.ctr.remove(rctx, id+"-web")
	}()
	probes := []probeSpec{{port: port, want: "Hello from Berth"}, {port: webPort, want: "shared-ok"}}
	return timed(ctx, "127.0.0.1", probes, func(ctx context.Context) error {
		return h.ctr.runPair(ctx, id, h.hello, h.busybox, dir, port, webPort)
	})
}

// podmanHello runs hello with podman.
func (h *harness) podmanHello(ctx context.Context) (time.Duration, error) {
	return h.podmanHelloImage(ctx, h.hello)
}

func (h *harness) podmanHelloImage(ctx context.Context, ref string) (time.Duration, error) {
	name := h.name("pm")
	ip := h.pod.ip()
	defer h.pod.remove(context.WithoutCancel(ctx), name)
	return afterRun(ctx, ip.String(), helloProbe, func(ctx context.Context) error {
		return h.pod.runHello(ctx, name, ref, ip)
	})
}

func (h *harness) podmanPair(ctx context.Context) (time.Duration, error) {
	name := h.name("pmpod")
	ip := h.pod.ip()
	defer h.pod.removePod(context.WithoutCancel(ctx), name)
	return afterRun(ctx, ip.String(), pairProbes, func(ctx context.Context) error {
		return h.pod.runPair(ctx, name, h.hello, h.busybox, ip)
	})
}

// pushBigImage pushes the hello image plus an incompressible file of
// bigImageMiB, as one layer, for the cold pull.
func pushBigImage(t *testing.T, reg *testenv.Registry) string {
	t.Helper()
	binary, err := os.ReadFile(testenv.BuildGoBinary(t, imagebuild.HelloPackage))
	if err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, bigImageMiB<<20)
	if _, err := rand.Read(blob); err != nil {
		t.Fatal(err)
	}
	img, err := imagebuild.Build([]imagebuild.File{
		{Path: "/hello", Mode: 0o755, Data: binary},
		{Path: "/blob", Data: blob},
	}, imagebuild.Config{Entrypoint: []string{"/hello"}, ExposedPorts: []string{"80/tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Ref("bench/big:1")
	testenv.PushImage(t, ref, img, nil)
	return ref
}
