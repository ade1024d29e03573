package network

import (
	"errors"
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/pkg/netns"
	"golang.org/x/sys/unix"
)

// createNetNS makes a new network namespace and pins it on the file target,
// which must not exist.
//
// netns.NewNetNS names its file at random; the file is bind-mounted once
// more onto target so that the group id is the name: that is what lets
// Teardown and List find a namespace after an agent restart without any
// other record. tmpDir holds the randomly named mount for a moment.
func createNetNS(tmpDir, target string) (retErr error) {
	f, err := os.OpenFile(target, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create netns mount point: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create netns mount point: %w", err)
	}
	defer func() {
		if retErr != nil {
			_ = os.Remove(target)
		}
	}()

	tmp, err := netns.NewNetNS(tmpDir)
	if err != nil {
		return fmt.Errorf("create netns: %w", err)
	}
	// The namespace stays alive through the bind mount on target; the
	// random one is only scaffolding.
	defer func() {
		if err := tmp.Remove(); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("remove temporary netns: %w", err))
		}
	}()
	if err := unix.Mount(tmp.GetPath(), target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind netns onto %s: %w", target, err)
	}
	return nil
}

// netnsAlive reports whether path holds a mounted network namespace. A
// plain file left without its mount (after a reboot, say) is removed, so
// that the next Setup can recreate it.
func netnsAlive(path string) (bool, error) {
	closed, err := netns.LoadNetNS(path).Closed()
	if err != nil {
		return false, fmt.Errorf("inspect netns %s: %w", path, err)
	}
	return !closed, nil
}

// removeNetNS unmounts and deletes the namespace file; a missing one is fine.
func removeNetNS(path string) error {
	if err := netns.LoadNetNS(path).Remove(); err != nil {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	return nil
}
