package runtime

import (
	"os"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// A read-only volume whose filesystem is nosuid and nodev (a secret's
// tmpfs) must keep those flags, or runc's remount is refused in a user
// namespace.
func TestLockedFlags(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	locked := t.TempDir()
	if err := unix.Mount("tmpfs", locked, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(locked, unix.MNT_DETACH) })
	nosuid := t.TempDir()
	if err := unix.Mount("tmpfs", nosuid, "tmpfs", unix.MS_NOSUID, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(nosuid, unix.MNT_DETACH) })

	for _, tt := range []struct {
		name, path string
		want       []string
	}{
		{"nosuid, nodev and noexec", locked, []string{"nosuid", "nodev", "noexec"}},
		{"nosuid only", nosuid, []string{"nosuid"}},
		{"a missing path", locked + "/nope", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := lockedFlags(tt.path); !slices.Equal(got, tt.want) {
				t.Errorf("lockedFlags(%s) = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
}
