// Package controllers holds the server's controllers, each one reconciler
// on the controller library owning one kind of change: the scheduler binds
// groups to nodes, nodes turns lapsed leases into NotReady nodes and moves
// their groups, lifecycle finalises deletes. They share one set of
// informers, which the API's node endpoints also serve remote agents from.
package controllers

import (
	"context"
	"log/slog"

	"golang.org/x/sync/errgroup"

	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

// IndexNode indexes groups by the node they are bound to.
const IndexNode = "node"

// watchHistory is how many changes of groups and nodes the informers
// keep for agents that reconnect: one that missed fewer resumes without a
// full list.
const watchHistory = 20000

// Informers are the server's caches of the store.
type Informers struct {
	Groups   *controller.Informer[types.ContainerGroup]
	Statuses *controller.Informer[types.GroupStatus]
	Nodes    *controller.Informer[types.Node]
	Leases   *controller.Informer[types.Lease]
	IPClaims *controller.Informer[types.IPClaim]
}

// NewInformers returns the informers of st; Run fills them.
func NewInformers(st *store.Store, log *slog.Logger) *Informers {
	in := &Informers{
		Groups: controller.NewInformer(controller.StoreSource(store.NewTyped[types.ContainerGroup](st, types.PrefixGroups)),
			controller.InformerOptions{Name: "groups", Logger: log, History: watchHistory}),
		Statuses: controller.NewInformer(controller.StoreSource(store.NewTyped[types.GroupStatus](st, types.PrefixGroupStatus)),
			controller.InformerOptions{Name: "statuses", Logger: log}),
		Nodes: controller.NewInformer(controller.StoreSource(store.NewTyped[types.Node](st, types.PrefixNodes)),
			controller.InformerOptions{Name: "nodes", Logger: log, History: watchHistory}),
		Leases: controller.NewInformer(controller.StoreSource(store.NewTyped[types.Lease](st, types.PrefixLeases)),
			controller.InformerOptions{Name: "leases", Logger: log}),
		IPClaims: controller.NewInformer(controller.StoreSource(store.NewTyped[types.IPClaim](st, types.PrefixIPClaims)),
			controller.InformerOptions{Name: "ipclaims", Logger: log}),
	}
	in.Groups.AddIndex(IndexNode, func(g *types.ContainerGroup) []string {
		if g.NodeName == "" {
			return nil
		}
		return []string{g.NodeName}
	})
	return in
}

// Run runs every informer until ctx ends.
func (in *Informers) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return in.Groups.Run(ctx) })
	g.Go(func() error { return in.Statuses.Run(ctx) })
	g.Go(func() error { return in.Nodes.Run(ctx) })
	g.Go(func() error { return in.Leases.Run(ctx) })
	g.Go(func() error { return in.IPClaims.Run(ctx) })
	return g.Wait()
}

// WaitSynced waits until every informer has its first list.
func (in *Informers) WaitSynced(ctx context.Context) error {
	for _, s := range []interface{ WaitSynced(context.Context) error }{in.Groups, in.Statuses, in.Nodes, in.Leases, in.IPClaims} {
		if err := s.WaitSynced(ctx); err != nil {
			return err
		}
	}
	return nil
}
