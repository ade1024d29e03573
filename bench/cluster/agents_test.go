package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/nodeplane"
	"github.com/berth-dev/berth/internal/pki/pkitest"
	"github.com/berth-dev/berth/internal/types"
)

// The parent tells the agents' process what to run through these.
const (
	envAgentsDir = "BERTH_CLUSTER_AGENTS_DIR" // the CA, and where results go
	envAgents    = "BERTH_CLUSTER_AGENTS"     // how many nodes
	envURL       = "BERTH_CLUSTER_URL"        // the API's base URL
	envWatchAll  = "BERTH_CLUSTER_WATCH_ALL"  // "1": watch endpoints and nodes too
	resultsFile  = "agents.json"
)

// Node capacity of a simulated node: what a mid-sized VM offers.
const (
	simCPU = 16
	simMem = 64
)

func simNodeName(i int) string { return fmt.Sprintf("sim-%04d", i) }

// agentResults is what the agents' process measured. Renewals are
// [start unix ns, duration ns] so that the parent can split them by phase.
type agentResults struct {
	Renewals     [][2]int64 `json:"renewals"`
	RenewErrors  int64      `json:"renewErrors"`
	Reports      int64      `json:"reports"`
	ReportErrors int64      `json:"reportErrors"`
	// FirstError is one error message of each kind, for the log.
	FirstError string `json:"firstError,omitempty"`
}

// TestClusterAgents is the agents' process of TestCluster, which starts
// this test binary again with envAgentsDir set. It is no benchmark of its
// own and skips otherwise.
func TestClusterAgents(t *testing.T) {
	dir := os.Getenv(envAgentsDir)
	if dir == "" {
		t.Skip("the agents' process of TestCluster")
	}
	n, err := strconv.Atoi(os.Getenv(envAgents))
	if err != nil {
		t.Fatalf("%s: %v", envAgents, err)
	}
	ca, err := pkitest.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sim := &simAgents{url: os.Getenv(envURL), ca: ca, watchAll: os.Getenv(envWatchAll) == "1"}
	var wg sync.WaitGroup
	for i := range n {
		a, err := sim.newAgent(simNodeName(i))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.run(ctx)
		}()
	}
	// The parent closes stdin when the run is over.
	_, _ = io.Copy(io.Discard, os.Stdin)
	cancel()
	wg.Wait()
	b, err := json.Marshal(sim.results())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, resultsFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// simAgents are the simulated nodes of one process and what they saw.
type simAgents struct {
	url      string
	ca       *pkitest.CA
	watchAll bool

	mu           sync.Mutex
	renewals     [][2]int64
	firstError   string
	renewErrors  atomic.Int64
	reports      atomic.Int64
	reportErrors atomic.Int64
}

func (s *simAgents) results() agentResults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return agentResults{Renewals: s.renewals, RenewErrors: s.renewErrors.Load(), Reports: s.reports.Load(),
		ReportErrors: s.reportErrors.Load(), FirstError: s.firstError}
}

func (s *simAgents) noteError(what string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.firstError == "" {
		s.firstError = what + ": " + err.Error()
	}
}

// simAgent is the least an agent does that the control plane sees: it
// registers, renews its lease as often as the server asks, keeps an
// informer over the groups bound to it (and, as the real agent's cluster
// network does, over every endpoint and node) and reports each group
// Running as soon as it sees it, with no runtime behind.
type simAgent struct {
	s      *simAgents
	name   string
	remote *nodeplane.Remote
	seen   sync.Map // group key → "uid/generation" reported
}

func (s *simAgents) newAgent(name string) (*simAgent, error) {
	cert, err := s.ca.Issue("node:"+name, false)
	if err != nil {
		return nil, err
	}
	r, err := nodeplane.NewRemote(nodeplane.RemoteOptions{
		Servers: []string{s.url}, Node: name,
		TLS:    &tls.Config{RootCAs: s.ca.Pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return nil, err
	}
	return &simAgent{s: s, name: name, remote: r}, nil
}

func (a *simAgent) run(ctx context.Context) {
	defer a.remote.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	groups := controller.NewInformer(a.remote.Assigned(), controller.InformerOptions{Name: "assigned-groups", Logger: quiet})
	groups.OnChange(func(ch controller.Change[types.ContainerGroup]) {
		if ch.New != nil {
			go a.report(ctx, ch.Key, *ch.New)
		}
	})
	var wg sync.WaitGroup
	defer wg.Wait()
	run := func(f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = f(ctx)
		}()
	}
	run(groups.Run)
	if a.s.watchAll {
		run(controller.NewInformer(a.remote.Endpoints(), controller.InformerOptions{Name: "endpoints", Logger: quiet}).Run)
		run(controller.NewInformer(a.remote.Nodes(), controller.InformerOptions{Name: "nodes", Logger: quiet}).Run)
	}
	a.holdLease(ctx)
}

// holdLease is the agent's: register until it works, then renew at the
// interval the server gives, timing every renewal.
func (a *simAgent) holdLease(ctx context.Context) {
	node := types.Node{Name: a.name, Zone: fmt.Sprintf("zone-%c", 'a'+a.name[len(a.name)-1]%3),
		Allocatable: types.NodeResources{CPU: simCPU, MemoryGB: simMem}, Addresses: []string{"192.0.2.1"}, Version: "bench-sim"}
	var info types.ClusterInfo
	for {
		var err error
		if info, err = a.remote.Register(ctx, node); err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		a.s.noteError("register", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	tick := time.NewTicker(time.Duration(max(1, info.LeaseRenewSeconds)) * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		start := time.Now()
		err := a.remote.RenewLease(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			a.s.renewErrors.Add(1)
			a.s.noteError("renew lease", err)
			continue
		}
		a.s.mu.Lock()
		a.s.renewals = append(a.s.renewals, [2]int64{start.UnixNano(), int64(time.Since(start))})
		a.s.mu.Unlock()
	}
}

// report says the group runs, once per incarnation and generation,
// retrying a failed report as the agent would.
func (a *simAgent) report(ctx context.Context, key string, g types.ContainerGroup) {
	id := g.UID + "/" + strconv.FormatInt(g.Generation, 10)
	if prev, loaded := a.seen.Swap(key, id); loaded && prev == id {
		return
	}
	now := time.Now().UTC()
	st := &types.GroupStatus{UID: g.UID, ObservedGeneration: g.Generation, ProvisioningState: "Succeeded",
		State: "Running", IP: g.IP, UpdatedAt: now}
	for _, c := range g.Spec.Containers {
		st.Containers = append(st.Containers, types.ContainerStatus{Name: c.Name, Ready: true,
			Current: types.ContainerState{State: "Running", StartTime: now}})
	}
	for attempt := 0; ; attempt++ {
		err := a.remote.ReportStatus(ctx, key, st)
		if err == nil {
			a.s.reports.Add(1)
			return
		}
		if ctx.Err() != nil || errors.Is(err, errdefs.ErrFailedPrecondition) {
			return
		}
		a.s.reportErrors.Add(1)
		a.s.noteError("report status", err)
		if attempt == 5 {
			a.seen.Delete(key)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}
