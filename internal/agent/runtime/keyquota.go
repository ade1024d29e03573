package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Key quotas. runc gives every container a session keyring of its own,
// owned by the container's root. Under user namespace remapping that root
// is one unprivileged host uid for every container of the node, and the
// kernel's quota for such a user (kernel.keys.maxkeys 200 and maxbytes
// 20000 by default) stops the node at about 200 containers: "unable to
// create session key: disk quota exceeded". Root's own quota, which every
// container shares without remapping, is far larger; the remapped uid gets
// the same, as kubelet sets root's.
const (
	keysSysctlDir = "/proc/sys/kernel/keys"
	// remapMaxKeys and remapMaxBytes are kubelet's values for root
	// (kernel.keys.root_maxkeys and root_maxbytes).
	remapMaxKeys  = 1000000
	remapMaxBytes = 25000000
)

// raiseKeyQuota raises maxkeys and maxbytes under dir to the values above
// where they are lower, and reports what it changed. It never lowers a
// value an operator set higher.
func raiseKeyQuota(dir string) (map[string]int64, error) {
	changed := map[string]int64{}
	for name, want := range map[string]int64{"maxkeys": remapMaxKeys, "maxbytes": remapMaxBytes} {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if err != nil {
			return changed, err
		}
		have, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return changed, fmt.Errorf("%s: %q is not a number", p, b)
		}
		if have >= want {
			continue
		}
		if err := os.WriteFile(p, []byte(strconv.FormatInt(want, 10)), 0o644); err != nil {
			return changed, err
		}
		changed[name] = want
	}
	return changed, nil
}

// setupKeyQuota raises the key quota for the remapped root, logging what
// it did; a refusal only limits how many containers the node can run, so
// it is logged, not fatal.
func setupKeyQuota(ctx context.Context) {
	changed, err := raiseKeyQuota(keysSysctlDir)
	if err != nil {
		slog.WarnContext(ctx, "cannot raise the kernel's key quota for the remapped root: the node may run only about 200 containers",
			"sysctl", "kernel.keys.maxkeys, kernel.keys.maxbytes", "error", err)
		return
	}
	for name, v := range changed {
		slog.InfoContext(ctx, "raised the kernel's key quota for the remapped root", "sysctl", "kernel.keys."+name, "value", v)
	}
}
