package network

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// UserNS maps ids 0..Size-1 of a group's user namespace to the host's
// HostID..HostID+Size-1.
//
// With Options.UserNS set, each group's network namespace is made inside
// a user namespace of the group's own, and the group's containers join
// both. The network namespace must belong to the containers' user
// namespace: the kernel mounts a sysfs only for the owner of the network
// namespace, and runc 1.1 cannot exec into a container whose network
// namespace belongs to another user namespace than its own (it joins the
// user namespace first and then lacks the rights to join the network
// namespace; opencontainers/runc#4390, fixed in runc 1.2).
type UserNS struct {
	HostID uint32
	Size   uint32
}

func (m *Manager) userNSDir() string { return filepath.Join(m.dir, "userns") }

// UserNSPath is where the user namespace of id is (or would be) mounted.
func (m *Manager) UserNSPath(id string) string { return filepath.Join(m.userNSDir(), id) }

// createNetNSInUserNS makes a user namespace mapped by u and a network
// namespace that belongs to it, and pins them on the files userTarget and
// netTarget, which must not exist. A process cannot unshare a user
// namespace once it has threads, so a child (sleep) is cloned into both
// namespaces, they are bind-mounted from its /proc entry, and it is killed.
func createNetNSInUserNS(u UserNS, userTarget, netTarget string) (retErr error) {
	for _, target := range []string{userTarget, netTarget} {
		f, err := os.OpenFile(target, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
		if err != nil {
			return fmt.Errorf("create namespace mount point: %w", err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("create namespace mount point: %w", err)
		}
		defer func() {
			if retErr != nil {
				_ = unmountNS(target)
			}
		}()
	}

	sleep, err := exec.LookPath("sleep")
	if err != nil {
		return fmt.Errorf("create user namespace: %w", err)
	}
	m := []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(u.HostID), Size: int(u.Size)}}
	cmd := exec.Command(sleep, "infinity")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: m,
		GidMappings: m,
		// Processes in the namespace may drop supplementary groups, as
		// any service that changes user does.
		GidMappingsEnableSetgroups: true,
		Pdeathsig:                  syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("create user and network namespace: %w", err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	pid := cmd.Process.Pid
	for target, ns := range map[string]string{userTarget: "user", netTarget: "net"} {
		src := fmt.Sprintf("/proc/%d/ns/%s", pid, ns)
		if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s namespace onto %s: %w", ns, target, err)
		}
	}
	return nil
}

// userNSAlive reports whether path holds a mounted namespace.
func userNSAlive(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("inspect user namespace %s: %w", path, err)
	}
	return st.Type == unix.NSFS_MAGIC, nil
}

// unmountNS unmounts and deletes a namespace file; a missing one is fine.
func unmountNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}
