// Package nodes watches node health: a node whose lease lapsed is marked
// NotReady and its groups are unbound, so the scheduler places them on
// other nodes; a draining node has its groups moved the same way. When a
// lost node comes back, its agent no longer sees those groups as its own
// and stops them: nothing runs twice for long.
package nodes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/controllers"
	"github.com/berth-dev/berth/internal/log"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

// Event and condition reasons.
const (
	EventRescheduling = "Rescheduling"
	ReasonLeaseValid  = "LeaseRenewed"
	ReasonLeaseLapsed = "LeaseExpired"
)

// Options configure the node controller.
type Options struct {
	Store     *store.Store
	Informers *controllers.Informers
	Logger    *slog.Logger
	Now       func() time.Time
	// WatchedSince is when the controller began to watch the leases: one
	// renewed before it counts as renewed then. Default: when each Run
	// starts, so that a server that was down (or a new leader whose
	// predecessor was) for longer than a lease's TTL does not take every
	// node for lost before their agents reach it again.
	WatchedSince time.Time
}

// Controller keeps node conditions and moves groups off lost or draining
// nodes.
type Controller struct {
	opts  Options
	ctl   *controller.Controller
	nodes store.Typed[types.Node]
	// watchedSince is the grace of the current Run (Options.WatchedSince).
	watchedSince time.Time
}

// New returns the node controller; Run starts it.
func New(opts Options) *Controller {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Controller{opts: opts, nodes: store.NewTyped[types.Node](opts.Store, types.PrefixNodes)}
	c.ctl = controller.New("nodes", c, controller.Options{Workers: 2, Logger: opts.Logger})
	in := opts.Informers
	in.Nodes.OnChange(func(ch controller.Change[types.Node]) { c.ctl.Enqueue(ch.Key) })
	in.Leases.OnChange(func(ch controller.Change[types.Lease]) { c.ctl.Enqueue(ch.Key) })
	// A group bound to a node just before it was lost or drained must
	// move too.
	in.Groups.OnChange(func(ch controller.Change[types.ContainerGroup]) {
		if ch.New != nil && ch.New.NodeName != "" {
			c.ctl.Enqueue(ch.New.NodeName)
		}
	})
	return c
}

// Run watches nodes until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	c.watchedSince = c.opts.WatchedSince
	if c.watchedSince.IsZero() {
		c.watchedSince = c.opts.Now().UTC()
	}
	if err := c.opts.Informers.WaitSynced(ctx); err != nil {
		return nil
	}
	for _, it := range c.opts.Informers.Nodes.List() {
		c.ctl.Enqueue(it.Key)
	}
	return c.ctl.Run(ctx)
}

// Reconcile brings one node's Ready condition in line with its lease and
// moves its groups away when it is not ready or draining.
func (c *Controller) Reconcile(ctx context.Context, name string) (controller.Result, error) {
	it, ok := c.opts.Informers.Nodes.GetItem(name)
	if !ok {
		return controller.Result{}, nil
	}
	n := it.Value
	now := c.opts.Now().UTC()
	lease, hasLease := c.opts.Informers.Leases.Get(name)
	judged := lease
	if judged.RenewedAt.Before(c.watchedSince) {
		judged.RenewedAt = c.watchedSince
	}
	ready := hasLease && !judged.Expired(now)
	cond := types.NodeCondition{Type: types.NodeReady, Status: types.ConditionTrue, Reason: ReasonLeaseValid,
		Message: "The node's agent renews its lease.", LastTransitionTime: now}
	if !ready {
		cond.Status, cond.Reason = types.ConditionFalse, ReasonLeaseLapsed
		cond.Message = fmt.Sprintf("The node's agent has not renewed its lease since %s.", lease.RenewedAt.Format(time.RFC3339))
	}
	if n.SetCondition(cond) {
		if _, err := c.nodes.Update(ctx, name, n, it.Revision); err != nil {
			return controller.Result{}, fmt.Errorf("set Ready=%s on node %s: %w", cond.Status, name, err)
		}
		log.G(ctx).Info("node condition changed", "node", name, "ready", cond.Status, "reason", cond.Reason)
	}

	var why string
	switch {
	case !ready:
		why = fmt.Sprintf("Node %s is not ready: its agent has not renewed its lease since %s.", name, lease.RenewedAt.Format(time.RFC3339))
	case n.Draining:
		why = fmt.Sprintf("Node %s is being drained.", name)
	}
	if why != "" {
		groups := c.opts.Informers.Groups.ByIndex(controllers.IndexNode, name)
		for _, g := range groups {
			if err := c.unbind(ctx, g, why); err != nil {
				return controller.Result{}, err
			}
		}
		if n.Draining && ready && len(groups) == 0 {
			if err := c.finishDrain(ctx, name); err != nil {
				return controller.Result{}, err
			}
		}
	}
	if ready {
		// Look again when the lease would lapse without a renewal.
		return controller.Result{RequeueAfter: judged.RenewedAt.Add(time.Duration(lease.TTLSeconds)*time.Second).Sub(now) + 100*time.Millisecond}, nil
	}
	return controller.Result{}, nil
}

// unbind takes a group off its node with an event saying why, at the
// revision it was read: the scheduler then places it again (a deleted or
// stopped one is left unplaced). Its status is written in the same
// transaction, no longer the node's: the node's agent, fenced on the
// group's node, can no longer overwrite it.
func (c *Controller) unbind(ctx context.Context, it controller.Item[types.ContainerGroup], why string) error {
	g := it.Value
	node := g.NodeName
	g.NodeName = ""
	ops := []store.Op{store.OpUpdate(types.PrefixGroups+it.Key, g, it.Revision)}
	var st types.GroupStatus
	_, err := c.opts.Store.Get(ctx, types.PrefixGroupStatus+it.Key, &st)
	if err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	if err == nil && st.UID == g.UID {
		st.NodeName = ""
		if !g.Deleting && !g.Stopped {
			now := c.opts.Now().UTC()
			st.State = types.GroupPending
			for i := range st.Containers {
				cs := &st.Containers[i]
				if cs.Current.State == types.ContainerRunning {
					prev := cs.Current
					cs.Previous = &prev
				}
				cs.Current = types.ContainerState{State: types.ContainerWaiting, DetailStatus: "NodeLost"}
				cs.Ready = false
			}
			st.Events = types.AddEvent(st.Events, now, EventRescheduling, why+" The container group moves to another node.", "Warning")
		}
		ops = append(ops, store.OpPut(types.PrefixGroupStatus+it.Key, st))
	}
	if _, err := c.opts.Store.Commit(ctx, ops...); err != nil {
		if errors.Is(err, errdefs.ErrConflict) {
			return fmt.Errorf("unbind %s from %s: changed meanwhile: %w", it.Key, node, err)
		}
		return err
	}
	log.G(ctx).Info("group unbound from its node", "group", it.Key, "node", node, "reason", why)
	return nil
}

// finishDrain clears Draining once the node holds no group; it stays
// cordoned until uncordoned.
func (c *Controller) finishDrain(ctx context.Context, name string) error {
	n, rev, err := c.nodes.Get(ctx, name)
	if err != nil {
		return err
	}
	if !n.Draining {
		return nil
	}
	n.Draining = false
	if _, err := c.nodes.Update(ctx, name, n, rev); err != nil {
		return err
	}
	log.G(ctx).Info("node drained", "node", name)
	return nil
}
