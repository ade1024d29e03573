package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/types"
)

// reconcile converges one group and reports it. requeue is how soon the
// group needs another pass without any event (a back-off running out); 0
// when only an event (a change, an exit, a probe verdict) needs one.
func (a *Agent) reconcile(ctx context.Context, key string) (requeue time.Duration, err error) {
	// A group that is not bound to the node (any more) has nothing here:
	// it was deleted, or moved to another node while this one was cut
	// off, and runs there now.
	g := a.group(key)
	mine, err := a.containersOf(ctx, key)
	if err != nil {
		return 0, err
	}
	if g == nil || g.Deleting {
		return 0, a.deleted(ctx, key, g, mine)
	}
	st, err := a.lastStatus(ctx, g)
	if err != nil {
		return 0, err
	}

	// Containers of an older incarnation, an older run, or of a stopped
	// group go; the group's network stays unless the group stopped.
	var stale, current []runtime.Info
	for _, info := range mine {
		if g.Stopped || info.Labels[runtime.LabelGroupUID] != g.UID || info.Labels[runtime.LabelRun] != runKey(g) {
			stale = append(stale, info)
			if info.Labels[runtime.LabelGroupUID] == g.UID {
				a.killing(st, info)
			}
		} else {
			current = append(current, info)
		}
	}
	if err := a.teardown(ctx, stale, g.UID); err != nil {
		return 0, err
	}
	if g.Stopped {
		return 0, a.stopped(ctx, g, st)
	}
	return a.ensure(ctx, g, st, current)
}

// runKey names one run of a group: a new generation (an update or a
// start) or a restart request begins a new run with fresh containers.
func runKey(g *types.ContainerGroup) string {
	return fmt.Sprintf("%d.%d", g.Generation, g.Restarts)
}

// containersOf lists the containers on the node of the group at key, of
// any incarnation.
func (a *Agent) containersOf(ctx context.Context, key string) ([]runtime.Info, error) {
	infos, err := a.opts.Runtime.List(ctx)
	if err != nil {
		return nil, err
	}
	var mine []runtime.Info
	for _, info := range infos {
		if info.Labels[runtime.LabelGroup] == key {
			mine = append(mine, info)
		}
	}
	return mine, nil
}

// deleted removes everything of a group that is being deleted, or is gone
// from the control plane (g is nil), and reports the delete done.
func (a *Agent) deleted(ctx context.Context, key string, g *types.ContainerGroup, mine []runtime.Info) error {
	if err := a.teardown(ctx, mine, ""); err != nil {
		return err
	}
	if g == nil {
		a.statuses.forget(key)
		return nil
	}
	// A group that failed before any container existed still holds its
	// network namespace and IP.
	if err := a.releaseGroup(ctx, g.UID); err != nil {
		return err
	}
	a.log.Info("group deleted", "group", key)
	return a.tornDown(ctx, g)
}

// killing records that a container of the group is being stopped.
func (a *Agent) killing(st *types.GroupStatus, info runtime.Info) {
	cs := st.Container(info.Labels[runtime.LabelContainer])
	if cs == nil {
		return
	}
	if cs.Current.State == types.ContainerRunning {
		a.containerEvent(cs, eventNormal, "Killing", "Killing container with id "+info.ID+".")
		prev := cs.Current
		cs.Previous = &prev
		cs.Current = a.killedState(prev.StartTime, detailKilled)
	}
	cs.Ready = false
}

// stopped frees a stopped group's node resources (network and volumes;
// logs stay) and reports it Stopped.
func (a *Agent) stopped(ctx context.Context, g *types.ContainerGroup, st *types.GroupStatus) error {
	if err := a.opts.Runtime.RemoveSandbox(ctx, g.UID); err != nil {
		return fmt.Errorf("remove sandbox of %s: %w", g.UID, err)
	}
	if err := a.opts.Network.Teardown(ctx, g.UID); err != nil {
		return fmt.Errorf("tear down network of %s: %w", g.UID, err)
	}
	if err := a.removeGroupDir(g.UID); err != nil {
		return err
	}
	if st.State == types.GroupStopped {
		return nil
	}
	st.State = types.GroupStopped
	st.IP = ""
	st.InitRun = ""
	a.groupEvent(st, eventNormal, "Stopped", "Stopped container group")
	a.log.Info("group stopped", "group", g.Key())
	return a.report(ctx, g.Key(), st)
}

// teardown removes containers and, for every group incarnation they
// belonged to other than keep, the network namespace and files.
func (a *Agent) teardown(ctx context.Context, infos []runtime.Info, keep string) error {
	uids := map[string]bool{}
	var errs []error
	for _, info := range infos {
		uids[info.Labels[runtime.LabelGroupUID]] = true
		a.stopProbes(info.ID)
		if err := a.opts.Runtime.Remove(ctx, info.ID, a.opts.StopGrace); err != nil {
			errs = append(errs, fmt.Errorf("remove container %s: %w", info.ID, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for uid := range uids {
		if uid == keep {
			continue
		}
		if err := a.releaseGroup(ctx, uid); err != nil {
			return err
		}
	}
	return nil
}

// releaseGroup frees what a group incarnation holds besides containers.
func (a *Agent) releaseGroup(ctx context.Context, uid string) error {
	if uid == "" {
		return nil
	}
	// The sandbox holds the network namespace's addresses: it goes first.
	if err := a.opts.Runtime.RemoveSandbox(ctx, uid); err != nil {
		return fmt.Errorf("remove sandbox of %s: %w", uid, err)
	}
	if err := a.opts.Network.Teardown(ctx, uid); err != nil {
		return fmt.Errorf("tear down network of %s: %w", uid, err)
	}
	if err := a.removeGroupDir(uid); err != nil {
		return err
	}
	return os.RemoveAll(a.logDir(uid))
}
