package agent

import (
	"context"
	"os"
	"path/filepath"

	"github.com/berth-dev/berth/internal/agent/runtime"
)

// leftovers is the node-local state of groups, by group UID, that a
// resync finds: what a crash between teardown steps may leave behind.
type leftovers struct {
	sandboxes, netns, groupDirs, logDirs []string
}

// resync queues every desired group and every group something is left of,
// and collects what belongs to no group any more.
func (a *Agent) resync(ctx context.Context) {
	// The node's inventory first, the desired groups second. A group's
	// node-local state (netns, sandbox, files, logs) is made only once the
	// group is in the store, so whatever the inventory holds belongs to a
	// group that the later listing shows, unless that group is really gone.
	// The other order would collect the namespace of a group created
	// between the two listings, in the middle of its setup.
	infos, err := a.opts.Runtime.List(ctx)
	if err != nil {
		a.log.Warn("list containers", "error", err)
		return
	}
	left := a.leftovers(ctx)
	groups := a.desired()

	live := map[string]bool{}
	for _, g := range groups {
		live[g.UID] = true
		a.enqueue(g.Key())
	}
	for _, info := range infos {
		if k := info.Labels[runtime.LabelGroup]; k != "" {
			a.enqueue(k) // its pass removes it if its group is gone
		}
		if uid := info.Labels[runtime.LabelGroupUID]; uid != "" {
			live[uid] = true // its netns goes when its container goes
		}
	}
	a.collect(ctx, left, live)
}

// leftovers lists the node-local state of groups besides containers. A
// listing that fails is left out: nothing of it is collected this time.
func (a *Agent) leftovers(ctx context.Context) leftovers {
	var l leftovers
	var err error
	if l.sandboxes, err = a.opts.Runtime.Sandboxes(ctx); err != nil {
		a.log.Warn("list sandboxes", "error", err)
	}
	if l.netns, err = a.opts.Network.List(); err != nil {
		a.log.Warn("list network namespaces", "error", err)
	}
	l.groupDirs = dirNames(filepath.Join(a.opts.Dir, "groups"))
	l.logDirs = dirNames(filepath.Join(a.opts.Dir, "logs"))
	return l
}

// collect removes the leftovers of every group UID that is not live: no
// desired group has it and no container uses it. A sandbox goes first: it
// holds the netns.
func (a *Agent) collect(ctx context.Context, l leftovers, live map[string]bool) {
	for _, uid := range l.sandboxes {
		if !live[uid] {
			a.log.Info("collecting sandbox without group", "uid", uid)
			if err := a.opts.Runtime.RemoveSandbox(ctx, uid); err != nil {
				a.log.Warn("collect sandbox", "uid", uid, "error", err)
			}
		}
	}
	for _, uid := range l.netns {
		if !live[uid] {
			a.log.Info("collecting network namespace without group", "uid", uid)
			if err := a.opts.Network.Teardown(ctx, uid); err != nil {
				a.log.Warn("collect network namespace", "uid", uid, "error", err)
			}
		}
	}
	for _, uid := range l.groupDirs {
		if !live[uid] {
			if err := a.removeGroupDir(uid); err != nil {
				a.log.Warn("collect group files", "uid", uid, "error", err)
			}
		}
	}
	for _, uid := range l.logDirs {
		if !live[uid] {
			_ = os.RemoveAll(a.logDir(uid))
		}
	}
}

// dirNames lists the entries of dir; a missing dir has none.
func dirNames(dir string) []string {
	entries, _ := os.ReadDir(dir)
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
