package agent

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// idPair is a host user and group id.
type idPair struct{ uid, gid int }

// volumeOwner owns on the host what the group's containers must own: the
// root of the node's user namespace range (issue 7), or the host's root
// when containers run without one.
func (a *Agent) volumeOwner() idPair {
	if u := a.opts.UserNS; u != nil {
		return idPair{int(u.HostID), int(u.HostID)}
	}
	return idPair{}
}

// chown gives p to o; the host's root is left alone, it owns p already.
func (o idPair) chown(p string) error {
	if o == (idPair{}) {
		return nil
	}
	return os.Lchown(p, o.uid, o.gid)
}

// chownTree gives root and everything below it to o, links themselves
// rather than what they point to.
func (o idPair) chownTree(root string) error {
	if o == (idPair{}) {
		return nil
	}
	return filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, o.uid, o.gid)
	})
}

// dataDirMode lets the group of the data dir pass through it without
// listing it.
const dataDirMode = 0o710

// reachDataDir lets the root of the node's user namespace range through
// the data dir, as Docker does with its own under userns-remap: runc makes
// a container's bind mounts (its group's hosts, resolv.conf and volumes,
// all below the data dir) as the root of the container's user namespace,
// which the data dir's 0700 would stop. What lies below keeps its own
// modes (the store, keys and logs are 0700 or 0600), and no process of the
// range can name a host path at all: each runs in a container's mount
// namespace.
func (a *Agent) reachDataDir() error {
	o := a.volumeOwner()
	if o == (idPair{}) {
		return nil
	}
	fi, err := os.Stat(a.opts.Dir)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Gid) == o.gid && fi.Mode().Perm() == dataDirMode {
		return nil
	}
	if err := os.Chown(a.opts.Dir, 0, o.gid); err != nil {
		return fmt.Errorf("open the data dir to the user namespace: %w", err)
	}
	if err := os.Chmod(a.opts.Dir, dataDirMode); err != nil {
		return fmt.Errorf("open the data dir to the user namespace: %w", err)
	}
	return nil
}
