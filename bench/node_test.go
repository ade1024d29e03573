package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"golang.org/x/sync/errgroup"

	"github.com/berth-dev/berth/internal/testenv"
)

// node is one berth server under test with its containerd: the runc one
// of every step, or the sandboxed one.
type node struct {
	api       *berthAPI
	ctd       *testenv.Containerd
	cl        *client.Client
	serverPid int
	ctdPid    int
}

// pollEvery is how often createMany and deleteMany look at the groups.
// Each look costs the server a status read per group, and the harness must
// not become the load it measures; each group's own time is therefore
// known to within this interval, the time until all run to within a few
// percent.
const pollEvery = 500 * time.Millisecond

// createMany creates the groups in parallel and returns each one's time to
// answer, the time until all answered, and the groups the agent failed to
// deploy. Until a group shows its IP it is read with GET, a few at a time.
func (n *node) createMany(ctx context.Context, names []string, image string) (per []time.Duration, last time.Duration, failed []error, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	start := time.Now()
	var puts errgroup.Group
	for _, name := range names {
		puts.Go(func() error { return n.api.put(ctx, name, helloGroup(image)) })
	}
	type answer struct {
		name string
		d    time.Duration
		err  error
	}
	answers := make(chan answer, len(names))
	pending := map[string]bool{}
	for _, name := range names {
		pending[name] = true
	}
	var mu sync.Mutex // guards pending and failed in the look below
	for len(per)+len(failed) < len(names) {
		var look errgroup.Group
		look.SetLimit(8)
		mu.Lock()
		todo := make([]string, 0, len(pending))
		for name := range pending {
			todo = append(todo, name)
		}
		mu.Unlock()
		for _, name := range todo {
			look.Go(func() error {
				g, code, err := n.api.get(ctx, name)
				if code == 404 {
					return nil // the PUT has not landed yet
				}
				if err != nil {
					return err
				}
				s := snapshotOf(g)
				switch {
				case s.provisioning == "Failed":
					ferr := n.api.failure(ctx, name)
					mu.Lock()
					delete(pending, name)
					failed = append(failed, ferr)
					mu.Unlock()
				case s.ip != "":
					mu.Lock()
					delete(pending, name)
					mu.Unlock()
					go func() {
						err := waitAnswers(ctx, s.ip, helloProbe)
						answers <- answer{name, time.Since(start), err}
					}()
				}
				return nil
			})
		}
		if err := look.Wait(); err != nil {
			return nil, 0, nil, err
		}
	drain:
		for {
			select {
			case a := <-answers:
				if a.err != nil {
					return nil, 0, nil, fmt.Errorf("group %s: %w", a.name, a.err)
				}
				per = append(per, a.d)
				last = max(last, a.d)
			default:
				break drain
			}
		}
		if len(per)+len(failed) == len(names) {
			break
		}
		if err := sleepCtx(ctx, pollEvery); err != nil {
			return nil, 0, nil, fmt.Errorf("%d of %d groups running: %w", len(per), len(names), err)
		}
	}
	if err := puts.Wait(); err != nil {
		return nil, 0, nil, err
	}
	return per, last, failed, nil
}

// deleteMany deletes the groups in parallel and returns the time until
// none of them is left.
func (n *node) deleteMany(ctx context.Context, names []string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	start := time.Now()
	var g errgroup.Group
	g.SetLimit(64)
	for _, name := range names {
		g.Go(func() error { return n.api.remove(ctx, name, false) })
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	left := names
	for {
		var still []string
		for _, name := range left {
			_, code, err := n.api.get(ctx, name)
			if code == 404 {
				continue
			}
			if err != nil {
				return 0, err
			}
			still = append(still, name)
		}
		if len(still) == 0 {
			return time.Since(start), nil
		}
		left = still
		if err := sleepCtx(ctx, pollEvery); err != nil {
			return 0, fmt.Errorf("%d groups still there: %w", len(left), err)
		}
	}
}

// density adds idle hello groups to nd in batches until target run, then
// measures memory per group and the API under that load, and deletes them.
func (h *harness) density(ctx context.Context, t *testing.T, nd *node, target int) densityRow {
	t.Helper()
	time.Sleep(2 * time.Second) // let the previous step's teardown settle
	hostBefore, err := hostUsed()
	if err != nil {
		t.Fatal(err)
	}
	srvBefore, ctdBefore := sumPss([]int{nd.serverPid}), sumPss([]int{nd.ctdPid})

	// Batches of 25: the target in one burst would measure throughput
	// again. A group the agent fails to deploy is kept (deleted at the
	// end) and replaced; too many failures end the step.
	const batch = 25
	var names []string
	var failed []error
	running := 0
	start := time.Now()
	var stopErr error
	for running < target {
		var next []string
		for i := 0; i < batch && running+len(next) < target; i++ {
			next = append(next, h.name("dn"))
		}
		names = append(names, next...)
		per, _, f, err := nd.createMany(ctx, next, h.hello)
		running += len(per)
		failed = append(failed, f...)
		if err != nil {
			stopErr = err
			break
		}
		if len(failed) > max(3, target/10) {
			stopErr = fmt.Errorf("%d groups failed to deploy", len(failed))
			break
		}
	}
	startAll := time.Since(start)
	logFailures(t, failed)
	if stopErr != nil {
		t.Logf("density stopped at %d groups: %v", running, stopErr)
	}

	time.Sleep(5 * time.Second) // let start-up allocations settle
	hostAfter, err := hostUsed()
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := taskPids(ctx, nd.cl, "berth")
	if err != nil {
		t.Fatal(err)
	}
	var workload []int
	for _, p := range tasks {
		workload = append(workload, int(p))
	}
	// The runtime's own processes are the shims of this containerd and
	// all that runs below them (runsc's sandbox and gofer under sandboxed
	// isolation), less the workloads.
	shims := findPids(func(a []string) bool {
		return strings.Contains(a[0], "containerd-shim") && hasArgs(a, "-address", nd.ctd.Address) && hasArgs(a, "-namespace", "berth")
	})
	runtimePids := without(descendants(shims), workload)
	row := densityRow{
		groups:    running,
		failed:    len(failed),
		target:    target,
		startAll:  startAll,
		hostDelta: hostAfter - hostBefore,
		workload:  sumPss(workload),
		shims:     sumPss(runtimePids),
		nShims:    len(shims),
		server:    sumPss([]int{nd.serverPid}) - srvBefore,
		ctd:       sumPss([]int{nd.ctdPid}) - ctdBefore,
		stopErr:   stopErr,
	}
	// The API of the real server while the groups run: a GET of one group
	// with its status, and the list of them all.
	row.get = loadTest(ctx, h.m.apiConcurrency, h.m.apiDuration/2, func(ctx context.Context) error {
		_, _, err := nd.api.get(ctx, names[len(names)-1])
		return err
	})
	row.list = loadTest(ctx, h.m.apiConcurrency, h.m.apiDuration/2, func(ctx context.Context) error {
		_, err := nd.api.list(ctx)
		return err
	})
	if row.del, err = nd.deleteMany(ctx, names); err != nil {
		t.Fatal(err)
	}
	if stopErr != nil && running == 0 {
		t.Fatal(stopErr)
	}
	return row
}

// descendants returns roots and every process below them.
func descendants(roots []int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command may hold spaces and parentheses: fields start after
		// the last ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, err := strconv.Atoi(f[1])
		if err == nil {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var out []int
	seen := map[int]bool{}
	queue := append([]int(nil), roots...)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, p)
		queue = append(queue, children[p]...)
	}
	return out
}

// without returns pids less those in drop.
func without(pids, drop []int) []int {
	skip := map[int]bool{}
	for _, p := range drop {
		skip[p] = true
	}
	var out []int
	for _, p := range pids {
		if !skip[p] {
			out = append(out, p)
		}
	}
	return out
}
