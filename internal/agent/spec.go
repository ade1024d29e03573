package agent

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/berth-dev/berth/internal/agent/network"
	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/types"
)

// containerPaths are the names a container has on the node: its id in the
// runtime, and the files the agent keeps for it.
type containerPaths struct {
	id string
	// groupDir holds the group's hosts and resolv.conf.
	groupDir string
	// volumes holds the group's volumes, one directory each.
	volumes string
	// log receives the container's output.
	log string
}

func (a *Agent) containerPaths(uid, name string) containerPaths {
	return containerPaths{
		id:       a.opts.Runtime.ContainerID(uid, name),
		groupDir: a.groupDir(uid),
		volumes:  a.volumesDir(uid),
		log:      a.LogPath(uid, name),
	}
}

// containerSpec is what the runtime is to make of container c of group g:
// c joins the group's network attachment att, is limited to lim and has
// its files at p. The group's total limits bound a sandbox.
func containerSpec(g *types.ContainerGroup, c *types.Container, att network.Attachment, lim types.ResourceList, p containerPaths) runtime.ContainerSpec {
	env := make([]string, 0, len(c.Env))
	for _, e := range c.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	group := initResources(g)
	return runtime.ContainerSpec{
		ID:          p.id,
		Image:       c.Image,
		Args:        c.Command,
		Env:         env,
		CPU:         lim.CPU,
		MemoryBytes: gibToBytes(lim.MemoryGB),
		NetNSPath:   att.NetNSPath,
		UserNSPath:  att.UserNSPath,
		Hostname:    g.Name,
		Mounts: append([]runtime.Mount{
			{Source: filepath.Join(p.groupDir, "hosts"), Destination: "/etc/hosts", ReadOnly: true},
			{Source: filepath.Join(p.groupDir, "resolv.conf"), Destination: "/etc/resolv.conf", ReadOnly: true},
		}, volumeMounts(p.volumes, c)...),
		LogPath:          p.log,
		GroupCPU:         group.CPU,
		GroupMemoryBytes: gibToBytes(group.MemoryGB),
		Labels: map[string]string{
			runtime.LabelGroup:      g.Key(),
			runtime.LabelGroupUID:   g.UID,
			runtime.LabelContainer:  c.Name,
			runtime.LabelGeneration: fmt.Sprint(g.Generation),
			runtime.LabelRun:        runKey(g),
		},
		ShimGroup: g.UID,
	}
}

func gibToBytes(gib float64) int64 { return int64(gib * (1 << 30)) }

// volumeMounts returns the bind mounts of c's volume mounts from the
// group's volumes dir, parents before children so that a mount at /a/b is
// not hidden by one at /a.
func volumeMounts(volumes string, c *types.Container) []runtime.Mount {
	out := make([]runtime.Mount, 0, len(c.VolumeMounts))
	for _, m := range c.VolumeMounts {
		out = append(out, runtime.Mount{
			Source:      filepath.Join(volumes, m.Name),
			Destination: path.Clean(m.MountPath),
			ReadOnly:    m.ReadOnly,
		})
	}
	slices.SortStableFunc(out, func(x, y runtime.Mount) int {
		return strings.Count(x.Destination, "/") - strings.Count(y.Destination, "/")
	})
	return out
}
