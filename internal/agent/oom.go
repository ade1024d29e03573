package agent

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/agent/runtime"
)

// oomKilled tells whether the kernel's OOM killer killed a process of the
// container, from its memory cgroup (read before the task is deleted, which
// removes the cgroup). These hosts have cgroup v1 controllers; v2 is read
// too for hosts with a unified hierarchy.
func oomKilled(id string) bool {
	cg := filepath.Join(runtime.DefaultCgroupParent, id)
	for _, f := range []string{
		filepath.Join("/sys/fs/cgroup/memory", cg, "memory.oom_control"),
		filepath.Join("/sys/fs/cgroup", cg, "memory.events"),
	} {
		if n, ok := counter(f, "oom_kill"); ok {
			return n > 0
		}
	}
	return false
}

// counter reads "name N" from a cgroup key-value file.
func counter(path, name string) (int64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == name {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
