package runtime

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// oomVerdict sets i.OOMKilled for a stopped container that the kernel's
// OOM killer ended: in its sandbox's cgroup (sandboxOOM), or in its own
// memory cgroup, which is read before the task is deleted (that removes
// the cgroup). Both are read under the runtime's own cgroup parent.
func (r *Runtime) oomVerdict(i Info) Info {
	i = r.sandboxOOM(i)
	if !i.OOMKilled && i.Status == StatusStopped && i.ExitCode == 137 && r.oomKills(i.ID) > 0 {
		i.OOMKilled = true
	}
	return i
}

// oomKills reads the OOM kill count of the memory cgroup of container (or
// sandbox) id, v1 or v2 on a unified host; 0 when there is none.
func (r *Runtime) oomKills(id string) int64 {
	cg := filepath.Join(r.opts.CgroupParent, id)
	for _, path := range []string{
		filepath.Join("/sys/fs/cgroup/memory", cg, "memory.oom_control"),
		filepath.Join("/sys/fs/cgroup", cg, "memory.events"),
	} {
		if n, ok := counter(path, "oom_kill"); ok {
			return n
		}
	}
	return 0
}

// counter reads "name N" from a cgroup key-value file.
func counter(path, name string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && k == name {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
