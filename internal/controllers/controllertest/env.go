// Package controllertest runs the server's informers on a throw-away etcd
// for the tests of the controllers.
package controllertest

import (
	"context"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/controllers"
	"github.com/berth-dev/berth/internal/embedetcd/etcdtest"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

// Env is a store with the server's informers running on it.
type Env struct {
	Store     *store.Store
	Informers *controllers.Informers
	Groups    store.Typed[types.ContainerGroup]
	Statuses  store.Typed[types.GroupStatus]
	Nodes     store.Typed[types.Node]
	Leases    store.Typed[types.Lease]
	IPClaims  store.Typed[types.IPClaim]
	DNSNames  store.Typed[types.DNSName]
	ctx       context.Context
}

// Runner is a controller's Run.
type Runner interface {
	Run(ctx context.Context) error
}

// Start returns an env whose informers run until the test ends; make
// controllers on e.Informers and pass them to e.Run.
func Start(t *testing.T) *Env {
	t.Helper()
	st := store.New(etcdtest.NewClient(t), "/test/")
	e := &Env{
		Store:     st,
		Informers: controllers.NewInformers(st, nil),
		Groups:    store.NewTyped[types.ContainerGroup](st, types.PrefixGroups),
		Statuses:  store.NewTyped[types.GroupStatus](st, types.PrefixGroupStatus),
		Nodes:     store.NewTyped[types.Node](st, types.PrefixNodes),
		Leases:    store.NewTyped[types.Lease](st, types.PrefixLeases),
		IPClaims:  store.NewTyped[types.IPClaim](st, types.PrefixIPClaims),
		DNSNames:  store.NewTyped[types.DNSName](st, types.PrefixDNSNames),
	}
	return e
}

// Run runs the informers and the controllers until the test ends.
func (e *Env) Run(t *testing.T, rs ...Runner) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, len(rs)+1)
	go func() { e.Informers.Run(ctx); done <- struct{}{} }()
	for _, r := range rs {
		go func() { r.Run(ctx); done <- struct{}{} }()
	}
	t.Cleanup(func() {
		cancel()
		for range len(rs) + 1 {
			<-done
		}
	})
}

// Eventually polls cond every 10 ms for up to 10 s, failing the test with
// what it last said.
func Eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s: %s", what, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Group is a group of one container with the given requests.
func Group(name string, cpu, mem float64) types.ContainerGroup {
	return types.ContainerGroup{Subscription: "sub", ResourceGroup: "rg", Name: name, UID: "uid-" + name, Generation: 1,
		Spec: types.GroupSpec{Containers: []types.Container{{Name: "c", Resources: types.Resources{Requests: types.ResourceList{CPU: cpu, MemoryGB: mem}}}}}}
}

// ReadyNode is a node whose Ready condition is True.
func ReadyNode(name, zone string, cpu, mem float64) types.Node {
	return types.Node{Name: name, Zone: zone, Allocatable: types.NodeResources{CPU: cpu, MemoryGB: mem},
		Conditions: []types.NodeCondition{{Type: types.NodeReady, Status: types.ConditionTrue}}}
}
