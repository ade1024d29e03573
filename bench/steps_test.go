package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"github.com/berth-dev/berth/internal/apiserver"
	"github.com/berth-dev/berth/internal/embedetcd/etcdtest"
	"github.com/berth-dev/berth/internal/store"
)

// latency is (1): create → running of a one-container group, next to
// ctr run -d and podman run -d, interleaved so that a burst of load from
// elsewhere on the machine hits every system alike. The server's CPU
// profile (7) is taken meanwhile.
func (h *harness) latency(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	profile := h.startProfile(ctx, t)
	var berth, api, ctr, podman []time.Duration
	var split []phases
	failures := 0
	runs := []func() error{
		func() error {
			r, err := h.berthRun(ctx, helloGroup(h.hello), helloProbe)
			if err != nil {
				return tolerate(t, err, &failures)
			}
			berth, api = append(berth, r.running), append(api, r.succeeded)
			ph, err := phasesOf(r)
			if err != nil {
				return err
			}
			split = append(split, ph)
			return nil
		},
		func() error {
			d, err := h.ctrHello(ctx, false)
			ctr = append(ctr, d)
			return err
		},
		func() error {
			d, err := h.podmanHello(ctx)
			podman = append(podman, d)
			return err
		},
	}
	interleave(t, h.m.latencyRuns, nil, runs)
	if len(berth) == 0 {
		t.Fatalf("no Berth group ran (%d failed)", failures)
	}
	h.rep.distTable("1. Create → running, one container, cached image", failures,
		"From the request to the first HTTP answer of the workload on its port (see method). Isolation: runc only.",
		[]distRow{
			{"Berth (PUT → answers on group IP)", summarize(berth), true},
			{"Berth API alone (PUT → GET shows Succeeded)", summarize(api), false},
			{"ctr run -d (host network)", summarize(ctr), false},
			{"podman run -d (CNI bridge)", summarize(podman), false},
		})
	h.rep.phaseTable("Where Berth's time goes in step 1", split)
	h.rep.profile = profile()
	h.step1 = map[string]summary{"berth": summarize(berth), "ctr": summarize(ctr), "podman": summarize(podman)}
}

// pair is (2): two containers sharing an emptyDir.
func (h *harness) pair(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var berth, api, ctr, podman []time.Duration
	failures := 0
	runs := []func() error{
		func() error {
			r, err := h.berthRun(ctx, pairGroup(h.hello, h.busybox), pairProbes)
			if err != nil {
				return tolerate(t, err, &failures)
			}
			berth, api = append(berth, r.running), append(api, r.succeeded)
			return nil
		},
		func() error {
			d, err := h.ctrPair(ctx)
			ctr = append(ctr, d)
			return err
		},
		func() error {
			d, err := h.podmanPair(ctx)
			podman = append(podman, d)
			return err
		},
	}
	interleave(t, h.m.pairRuns, nil, runs)
	if len(berth) == 0 {
		t.Fatalf("no Berth group ran (%d failed)", failures)
	}
	h.rep.distTable("2. Create → running, two containers sharing an emptyDir", failures,
		"hello on :80 and busybox httpd on :8080 serving a file it wrote into the shared volume; running = both answer.",
		[]distRow{
			{"Berth group (emptyDir)", summarize(berth), true},
			{"Berth API alone", summarize(api), false},
			{"ctr run -d ×2 (host network, bind-mounted dir)", summarize(ctr), false},
			{"podman pod create + run -d ×2 (named volume)", summarize(podman), false},
		})
}

// cold is (3): the image is in no store before each run.
func (h *harness) cold(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	purge := func() error {
		if err := purgeImage(ctx, h.cl, "bench/big"); err != nil {
			return err
		}
		return h.pod.rmi(ctx, h.big)
	}
	var berth, ctr, podman []time.Duration
	failures := 0
	runs := []func() error{
		func() error {
			r, err := h.berthRun(ctx, helloGroup(h.big), helloProbe)
			if err != nil {
				return tolerate(t, err, &failures)
			}
			berth = append(berth, r.running)
			return nil
		},
		func() error {
			d, err := h.ctrHelloImage(ctx, h.big, true)
			ctr = append(ctr, d)
			return err
		},
		func() error {
			d, err := h.podmanHelloImage(ctx, h.big)
			podman = append(podman, d)
			return err
		},
	}
	interleave(t, h.m.coldRuns, purge, runs)
	if len(berth) == 0 {
		t.Fatalf("no Berth group ran (%d failed)", failures)
	}
	h.rep.distTable(fmt.Sprintf("3. Cold pull + start of a %d MiB image", bigImageMiB), failures,
		"One layer of incompressible data plus the hello binary, from the registry on loopback; the image is deleted (and garbage-collected) from containerd and podman before every run.",
		[]distRow{
			{"Berth (PUT → answers)", summarize(berth), true},
			{"ctr pull + ctr run -d", summarize(ctr), false},
			{"podman run -d (pulls)", summarize(podman), false},
		})
}

// throughput is (4): N groups created at once, then all deleted at once.
func (h *harness) throughput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n := h.m.throughput
	var rows []throughputRow

	names := make([]string, n)
	for i := range names {
		names[i] = h.name("tp")
	}
	per, total, failed, err := h.node.createMany(ctx, names, h.hello)
	if err != nil {
		t.Fatal(err)
	}
	logFailures(t, failed)
	if len(per) == 0 {
		t.Fatalf("no group ran: %v", failed)
	}
	del, err := h.node.deleteMany(ctx, names)
	if err != nil {
		t.Fatal(err)
	}
	rows = append(rows, throughputRow{"Berth (parallel PUTs)", n, total, summarize(per), del, len(failed)})

	per, total, del, err = h.ctrMany(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	rows = append(rows, throughputRow{"ctr run -d (parallel)", n, total, summarize(per), del, 0})

	per, total, del, err = h.podmanMany(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	rows = append(rows, throughputRow{"podman run -d (parallel)", n, total, summarize(per), del, 0})
	h.rep.throughputTable(rows)
}

func (h *harness) ctrMany(ctx context.Context, n int) (per []time.Duration, total, del time.Duration, err error) {
	ids := make([]string, n)
	ports := make([]int, n)
	for i := range ids {
		ids[i] = h.name("ctrtp")
		if ports[i], err = freePort(); err != nil {
			return nil, 0, 0, err
		}
	}
	var mu sync.Mutex
	var g errgroup.Group
	start := time.Now()
	for i := range ids {
		g.Go(func() error {
			d, err := timed(ctx, "127.0.0.1", []probeSpec{{port: ports[i], want: "Hello from Berth"}}, func(ctx context.Context) error {
				return h.ctr.runHello(ctx, ids[i], h.hello, ports[i])
			})
			mu.Lock()
			per = append(per, d)
			mu.Unlock()
			return err
		})
	}
	err = g.Wait()
	total = time.Since(start)
	dstart := time.Now()
	var rm errgroup.Group
	for _, id := range ids {
		rm.Go(func() error { return h.ctr.remove(context.WithoutCancel(ctx), id) })
	}
	if rerr := rm.Wait(); err == nil {
		err = rerr
	}
	return per, total, time.Since(dstart), err
}

func (h *harness) podmanMany(ctx context.Context, n int) (per []time.Duration, total, del time.Duration, err error) {
	names := make([]string, n)
	ips := make([]string, n)
	for i := range names {
		names[i] = h.name("pmtp")
		ips[i] = h.pod.ip().String()
	}
	var mu sync.Mutex
	var g errgroup.Group
	start := time.Now()
	for i := range names {
		g.Go(func() error {
			d, err := afterRun(ctx, ips[i], helloProbe, func(ctx context.Context) error {
				_, err := h.pod.podman(ctx, "run", "-d", "-q", "--network", h.pod.network, "--ip", ips[i], "--name", names[i], h.hello)
				return err
			})
			mu.Lock()
			per = append(per, d)
			mu.Unlock()
			return err
		})
	}
	err = g.Wait()
	total = time.Since(start)
	dstart := time.Now()
	_, rerr := h.pod.podman(context.WithoutCancel(ctx), append([]string{"rm", "-f", "-t", "0"}, names...)...)
	if err == nil {
		err = rerr
	}
	return per, total, time.Since(dstart), err
}

// densityStep is (5) for runc: idle hello groups until the target runs.
func (h *harness) densityStep(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	row := h.density(ctx, t, h.node, h.m.density)
	h.rep.densityTable("5. Density: idle one-container groups (runc)", "workload (hello) PSS", "containerd-shim-runc-v2 PSS", row)
}

// apiLoad is (6): the API handler with its etcd store, in process and
// without an agent, so that the list can hold apiGroups groups that never
// run. Over TLS and HTTP/2 like the real server.
func (h *harness) apiLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cli := etcdtest.NewClient(t)
	srv := apiserver.New(apiserver.Options{Store: store.New(cli, "/berth/"), Token: "bench", Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewUnstartedServer(srv)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	defer ts.Close()
	hc := ts.Client()
	hc.Transport.(*http.Transport).MaxIdleConnsPerHost = 256
	api := &berthAPI{hc: hc, endpoint: ts.URL, token: "bench", sub: uuid.NewString(), rg: "api"}
	if err := api.createResourceGroup(ctx); err != nil {
		t.Fatal(err)
	}
	var g errgroup.Group
	g.SetLimit(16)
	seedStart := time.Now()
	for i := 0; i < h.m.apiGroups; i++ {
		g.Go(func() error { return api.put(ctx, fmt.Sprintf("api-%04d", i), helloGroup(h.hello)) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	seed := time.Since(seedStart)
	get := loadTest(ctx, h.m.apiConcurrency, h.m.apiDuration, func(ctx context.Context) error {
		_, _, err := api.get(ctx, "api-0000")
		return err
	})
	list := loadTest(ctx, h.m.apiConcurrency, h.m.apiDuration, func(ctx context.Context) error {
		l, err := api.list(ctx)
		if err == nil && len(l) != h.m.apiGroups {
			err = fmt.Errorf("list has %d groups, want %d", len(l), h.m.apiGroups)
		}
		return err
	})
	if get.errs > 0 || list.errs > 0 || get.n == 0 || list.n == 0 {
		t.Errorf("API load: GET %d ok %d errors (%v), list %d ok %d errors (%v)", get.n, get.errs, get.firstErr, list.n, list.errs, list.firstErr)
	}
	h.rep.apiTable(h.m, seed, get, list)
}

// loadResult is one closed-loop load test.
type loadResult struct {
	n, errs  int
	firstErr error
	elapsed  time.Duration
	lat      summary
}

func (l loadResult) rate() float64 {
	if l.elapsed <= 0 {
		return 0
	}
	return float64(l.n) / l.elapsed.Seconds()
}

// loadTest runs fn from conc workers back to back for d: a closed loop, so
// the rate is what the server sustains at that concurrency.
func loadTest(ctx context.Context, conc int, d time.Duration, fn func(context.Context) error) loadResult {
	var mu sync.Mutex
	var res loadResult
	var lat []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			var errs int
			var first error
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				if err := fn(ctx); err != nil {
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			res.errs += errs
			if res.firstErr == nil {
				res.firstErr = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.n = len(lat)
	res.lat = summarize(lat)
	return res
}

// startProfile fetches a CPU profile of the server in the background; the
// returned function waits for it and returns pprof's top lines.
func (h *harness) startProfile(ctx context.Context, t *testing.T) func() string {
	path := filepath.Join(os.TempDir(), "berth-bench-create.pprof")
	done := make(chan error, 1)
	go func() {
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", h.pprofAddr, h.m.profileSeconds)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			done <- err
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			done <- fmt.Errorf("GET %s: %s", url, resp.Status)
			return
		}
		f, err := os.Create(path)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		done <- err
	}()
	return func() string {
		if err := <-done; err != nil {
			t.Errorf("CPU profile: %v", err)
			return ""
		}
		var out strings.Builder
		for _, args := range [][]string{{"-top", "-nodecount=12"}, {"-top", "-cum", "-show=berth-dev/berth/internal", "-nodecount=25"}} {
			b, err := exec.CommandContext(ctx, "go", append(append([]string{"tool", "pprof"}, args...), path)...).CombinedOutput()
			if err != nil {
				t.Errorf("go tool pprof: %v: %s", err, b)
				return ""
			}
			out.Write(b)
			out.WriteString("\n")
		}
		t.Logf("CPU profile of berth server during step 1: %s", path)
		return out.String()
	}
}

// logFailures logs each deployment failure: they are findings of the run,
// shown in the tables, not failures of the harness.
func logFailures(t *testing.T, errs []error) {
	t.Helper()
	for _, err := range errs {
		t.Logf("deployment failed: %v", err)
	}
}

// tolerate turns a deployment failure into a counted finding and returns
// any other error.
func tolerate(t *testing.T, err error, failures *int) error {
	t.Helper()
	var de *deployError
	if errors.As(err, &de) {
		*failures++
		t.Logf("deployment failed: %v", err)
		return nil
	}
	return err
}

// interleave runs each of runs n times, rotating which goes first in each
// round, so that no contender always runs on a machine warmed (or loaded)
// by the one before it. before, when set, runs ahead of every run.
func interleave(t *testing.T, n int, before func() error, runs []func() error) {
	t.Helper()
	for i := 0; i < n; i++ {
		for j := range runs {
			if before != nil {
				if err := before(); err != nil {
					t.Fatalf("run %d: prepare: %v", i, err)
				}
			}
			if err := runs[(i+j)%len(runs)](); err != nil {
				t.Fatalf("run %d: %v", i, err)
			}
		}
	}
}
