// Package lifecycle finalises deletes: once the agent of a deleted group's
// node reports that nothing of it is left (or the group never had a node,
// or was moved off a lost one), the group, its status and its claims on an
// address and a DNS name go in one transaction. It also frees address
// claims whose group is gone, left by a crash between writes.
package lifecycle

import (
	"context"
	"log/slog"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/controllers"
	"github.com/berth-dev/berth/internal/log"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

// claimPrefix marks queue keys of address claims, apart from group keys.
const claimPrefix = "ipclaim:"

// Options configure the lifecycle controller.
type Options struct {
	Store     *store.Store
	Informers *controllers.Informers
	Logger    *slog.Logger
}

// Controller finalises deletes.
type Controller struct {
	opts Options
	ctl  *controller.Controller
}

// New returns the lifecycle controller; Run starts it.
func New(opts Options) *Controller {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Controller{opts: opts}
	c.ctl = controller.New("lifecycle", c, controller.Options{Workers: 2, Logger: opts.Logger})
	in := opts.Informers
	in.Groups.OnChange(func(ch controller.Change[types.ContainerGroup]) {
		if ch.New != nil && ch.New.Deleting {
			c.ctl.Enqueue(ch.Key)
		}
	})
	in.Statuses.OnChange(func(ch controller.Change[types.GroupStatus]) {
		if ch.New != nil && ch.New.TornDown {
			c.ctl.Enqueue(ch.Key)
		}
	})
	in.IPClaims.OnChange(func(ch controller.Change[types.IPClaim]) {
		if ch.New != nil {
			if _, ok := in.Groups.Get(ch.New.GroupKey); !ok {
				c.ctl.Enqueue(claimPrefix + ch.Key)
			}
		}
	})
	return c
}

// Run finalises until ctx ends; at start it looks at every deleting
// group and every claim.
func (c *Controller) Run(ctx context.Context) error {
	in := c.opts.Informers
	if err := in.WaitSynced(ctx); err != nil {
		return nil
	}
	for _, it := range in.Groups.List() {
		if it.Value.Deleting {
			c.ctl.Enqueue(it.Key)
		}
	}
	for _, it := range in.IPClaims.List() {
		c.ctl.Enqueue(claimPrefix + it.Key)
	}
	return c.ctl.Run(ctx)
}

// Reconcile finalises one deleted group, or frees one stale claim.
func (c *Controller) Reconcile(ctx context.Context, key string) (controller.Result, error) {
	if k, ok := strings.CutPrefix(key, claimPrefix); ok {
		return controller.Result{}, c.collectClaim(ctx, k)
	}
	it, ok := c.opts.Informers.Groups.GetItem(key)
	if !ok || !it.Value.Deleting {
		return controller.Result{}, nil
	}
	g := it.Value
	if g.NodeName != "" {
		st, ok := c.opts.Informers.Statuses.Get(key)
		if !ok || st.UID != g.UID || !st.TornDown || st.NodeName != g.NodeName {
			return controller.Result{}, nil // its agent is still at it
		}
	}
	return controller.Result{}, c.finalise(ctx, it)
}

// finalise removes the group with what belongs to this incarnation of it,
// at the revisions read: a record that changed meanwhile retries.
func (c *Controller) finalise(ctx context.Context, it controller.Item[types.ContainerGroup]) error {
	g := it.Value
	st := c.opts.Store
	ops := []store.Op{store.OpDelete(types.PrefixGroups+it.Key, it.Revision)}
	var status types.GroupStatus
	if rev, err := st.Get(ctx, types.PrefixGroupStatus+it.Key, &status); err == nil && status.UID == g.UID {
		ops = append(ops, store.OpDelete(types.PrefixGroupStatus+it.Key, rev))
	} else if err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	if g.IP != "" {
		var claim types.IPClaim
		k := types.PrefixIPClaims + types.IPClaimKey(types.IPNetwork(&g), g.IP)
		if rev, err := st.Get(ctx, k, &claim); err == nil && claim.GroupUID == g.UID {
			ops = append(ops, store.OpDelete(k, rev))
		} else if err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	if a := g.Spec.IPAddress; a != nil && a.FQDN != "" {
		var claim types.DNSName
		k := types.PrefixDNSNames + a.FQDN
		if rev, err := st.Get(ctx, k, &claim); err == nil && claim.GroupUID == g.UID {
			ops = append(ops, store.OpDelete(k, rev))
		} else if err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	if _, err := st.Commit(ctx, ops...); err != nil {
		return err
	}
	log.G(ctx).Info("group deleted", "group", it.Key, "uid", g.UID)
	return nil
}

// collectClaim deletes an address claim whose group is gone or holds
// another address. The group is read from the store, not the cache: a
// claim and the binding that made it are written together, and the cache
// may show the claim before the binding.
func (c *Controller) collectClaim(ctx context.Context, key string) error {
	st := c.opts.Store
	var claim types.IPClaim
	rev, err := st.Get(ctx, types.PrefixIPClaims+key, &claim)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var g types.ContainerGroup
	_, err = st.Get(ctx, types.PrefixGroups+claim.GroupKey, &g)
	if err == nil && g.UID == claim.GroupUID && g.IP == claim.IP {
		return nil
	}
	if err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	if err := st.Delete(ctx, types.PrefixIPClaims+key, rev); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsConflict(err) {
		return err
	}
	log.G(ctx).Info("freed address claim of a group that is gone", "claim", key, "group", claim.GroupKey)
	return nil
}
