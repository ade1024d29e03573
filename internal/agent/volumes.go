package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/types"
)

// gitCloneTimeout bounds the clone and checkout of one gitRepo volume; a
// repository that cannot be fetched in this time fails the group.
const gitCloneTimeout = 5 * time.Minute

// gitProtocols are the transports git may use for a gitRepo volume, the
// schemes the API accepts. Everything else (file, ssh, ext) is refused by
// git itself, submodules included: the clone runs on the node as root.
var gitProtocols = []string{"https", "http", "git"}

// volumesDir holds a group's volumes, one entry per volume name. Beside
// each volume, ".NAME.stamp" records what the volume was made from, and
// ".NAME.partial" is a clone in progress; volume names never start with a
// dot, so neither can collide with a volume.
func (a *Agent) volumesDir(uid string) string { return filepath.Join(a.groupDir(uid), "volumes") }

func (a *Agent) volumeDir(uid, name string) string { return filepath.Join(a.volumesDir(uid), name) }

// prepareVolumes makes the group's volumes exist. It runs on every pass,
// so each step checks what is there first: an emptyDir keeps its data, a
// secret is rewritten only when its contents changed, and a repository is
// cloned once. A volume whose definition changed kind or source is made
// again; a volume the spec no longer has is removed.
func (a *Agent) prepareVolumes(ctx context.Context, g *types.ContainerGroup) error {
	base := a.volumesDir(g.UID)
	if err := a.reachDataDir(); err != nil {
		return err
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return fmt.Errorf("create volumes dir of group %s: %w", g.UID, err)
	}
	if err := a.pruneVolumes(base, g.Spec.Volumes); err != nil {
		return err
	}
	for i := range g.Spec.Volumes {
		v := &g.Spec.Volumes[i]
		dir := filepath.Join(base, v.Name)
		stampPath := filepath.Join(base, "."+v.Name+".stamp")
		want := volumeStamp(v)
		if have, err := os.ReadFile(stampPath); err != nil || string(have) != want {
			// New, changed, or left half made by an interrupted pass.
			if err := removeMounted(dir); err != nil {
				return fmt.Errorf("volume %s: remove old contents: %w", v.Name, err)
			}
			if err := os.Remove(stampPath); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		var err error
		switch {
		case v.EmptyDir:
			err = makeEmptyDir(dir, a.volumeOwner())
		case v.Secret != nil:
			err = makeSecret(dir, v.Secret, a.volumeOwner())
		case v.GitRepo != nil:
			err = a.makeGitRepo(ctx, g, v.Name, dir, v.GitRepo)
		default:
			err = fmt.Errorf("volume %s has no kind", v.Name)
		}
		if err != nil {
			var fe *failure
			if errors.As(err, &fe) {
				return err
			}
			return fmt.Errorf("volume %s of group %s: %w", v.Name, g.Key(), err)
		}
		if err := os.WriteFile(stampPath, []byte(want), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// volumeStamp describes what a volume is made from, without secret
// contents (those are compared with the files themselves).
func volumeStamp(v *types.Volume) string {
	switch {
	case v.EmptyDir:
		return "emptyDir"
	case v.Secret != nil:
		return "secret"
	case v.GitRepo != nil:
		return strings.Join([]string{"gitRepo", v.GitRepo.Repository, v.GitRepo.Directory, v.GitRepo.Revision}, "\x00")
	}
	return ""
}

// pruneVolumes removes what base holds for volumes not in the spec.
func (a *Agent) pruneVolumes(base string, volumes []types.Volume) error {
	entries, err := os.ReadDir(base)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, v := range volumes {
		keep[v.Name] = true
		keep["."+v.Name+".stamp"] = true
	}
	for _, e := range entries {
		if keep[e.Name()] {
			continue
		}
		if err := removeMounted(filepath.Join(base, e.Name())); err != nil {
			return fmt.Errorf("remove volume %s: %w", e.Name(), err)
		}
	}
	return nil
}

// removeMounted removes p after unmounting whatever is mounted at or below
// it, deepest first.
func removeMounted(p string) error {
	mounts, err := mountsUnder(p)
	if err != nil {
		return err
	}
	slices.SortFunc(mounts, func(x, y string) int { return len(y) - len(x) })
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount %s: %w", m, err)
		}
	}
	return os.RemoveAll(p)
}

// makeEmptyDir makes the directory the group's containers share. It is
// world-writable, as Kubernetes' emptyDir, so that containers running as
// different users can all use it.
func makeEmptyDir(dir string, owner idPair) error {
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o777); err != nil { // MkdirAll's mode went through the umask
		return err
	}
	return owner.chown(dir)
}

// Secret files and their tmpfs.
const (
	secretFileMode = 0o444
	secretDirMode  = "0755"
	pageSize       = 4096
	// secretSlack is room beyond the files for the directory itself.
	secretSlack = 64 << 10
)

// makeSecret puts the secret's files on a tmpfs mounted at dir, so that
// they live in memory only, and then makes the tmpfs read-only. A tmpfs
// already there with the same files is left alone; one with other files
// (the secret changed) is refilled in place, so containers that bind it
// see the change.
func makeSecret(dir string, files map[string][]byte, owner idPair) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	size := secretSlack
	for _, b := range files {
		size += (len(b) + pageSize - 1) / pageSize * pageSize
	}
	data := fmt.Sprintf("mode=%s,size=%d,nr_inodes=%d", secretDirMode, size, len(files)+16)
	const flags = unix.MS_NOSUID | unix.MS_NODEV
	mounted, err := isMountPoint(dir)
	if err != nil {
		return err
	}
	if mounted {
		same, err := sameFiles(dir, files)
		if err != nil {
			return err
		}
		if same {
			return nil
		}
		if err := unix.Mount("", dir, "", unix.MS_REMOUNT|flags, data); err != nil {
			return fmt.Errorf("remount secret tmpfs %s read-write: %w", dir, err)
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	} else if err := unix.Mount("tmpfs", dir, "tmpfs", flags, data); err != nil {
		return fmt.Errorf("mount secret tmpfs on %s: %w", dir, err)
	}
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, secretFileMode); err != nil {
			return err
		}
		if err := os.Chmod(p, secretFileMode); err != nil { // past the umask
			return err
		}
		if err := owner.chown(p); err != nil {
			return err
		}
	}
	if err := owner.chown(dir); err != nil {
		return err
	}
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY|flags, data); err != nil {
		return fmt.Errorf("remount secret tmpfs %s read-only: %w", dir, err)
	}
	return nil
}

// isMountPoint reports whether something is mounted exactly at dir.
func isMountPoint(dir string) (bool, error) {
	mounts, err := mountsUnder(dir)
	if err != nil {
		return false, err
	}
	return slices.Contains(mounts, filepath.Clean(dir)), nil
}

// sameFiles reports whether dir holds exactly files.
func sameFiles(dir string, files map[string][]byte) (bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	if len(entries) != len(files) {
		return false, nil
	}
	for _, e := range entries {
		want, ok := files[e.Name()]
		if !ok || !e.Type().IsRegular() {
			return false, nil
		}
		got, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return false, err
		}
		if !bytes.Equal(got, want) {
			return false, nil
		}
	}
	return true, nil
}

// makeGitRepo clones the repository into dir: into dir itself for
// directory ".", into dir/DIRECTORY for another directory, and into a
// subdirectory named after the repository when none is given, as ACI and
// Kubernetes do. The clone is made beside dir and renamed into place, so
// an existing dir is always a complete clone. A repository that cannot be
// cloned or checked out fails the group (GitRepoVolumeFailed).
func (a *Agent) makeGitRepo(ctx context.Context, g *types.ContainerGroup, name, dir string, repo *types.GitRepoVolume) (retErr error) {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	partial := filepath.Join(filepath.Dir(dir), "."+name+".partial")
	if err := os.RemoveAll(partial); err != nil {
		return err
	}
	if err := os.MkdirAll(partial, 0o755); err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			_ = os.RemoveAll(partial)
		}
	}()
	fail := func(what string, err error, out []byte) error {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err()) // the agent is stopping: retry later
		}
		detail := strings.TrimSpace(string(out))
		if len(detail) > 1000 {
			detail = detail[len(detail)-1000:]
		}
		if detail == "" {
			detail = err.Error()
		}
		return &failure{code: "GitRepoVolumeFailed", msg: fmt.Sprintf(
			"Mounting the gitRepo volume '%s' of container group '%s' failed: %s of '%s': %s",
			name, g.Name, what, repo.Repository, detail)}
	}
	if strings.HasPrefix(repo.Repository, "-") || strings.HasPrefix(repo.Revision, "-") || strings.Contains(repo.Directory, "..") {
		return fail("validation", errors.New("invalid repository, revision or directory"), nil)
	}

	cctx, cancel := context.WithTimeout(ctx, gitCloneTimeout)
	defer cancel()
	args := []string{"clone", "--quiet", "--", repo.Repository}
	switch repo.Directory {
	case ".":
		args = append(args, partial)
	case "":
		// git names the directory after the repository.
	default:
		args = append(args, filepath.Join(partial, filepath.Clean(repo.Directory)))
	}
	if out, err := runGit(cctx, partial, args...); err != nil {
		return fail("git clone", err, out)
	}
	if repo.Revision != "" {
		work := partial
		if repo.Directory != "." {
			// The clone is the only entry below partial (or the given path).
			if repo.Directory != "" {
				work = filepath.Join(partial, filepath.Clean(repo.Directory))
			} else if entries, err := os.ReadDir(partial); err == nil && len(entries) == 1 {
				work = filepath.Join(partial, entries[0].Name())
			} else {
				return fmt.Errorf("find the clone of %s in %s: %v", repo.Repository, partial, err)
			}
		}
		if out, err := runGit(cctx, work, "checkout", "--quiet", repo.Revision, "--"); err != nil {
			return fail("git checkout "+repo.Revision, err, out)
		}
	}
	// The clone is the containers' to change, as in Kubernetes.
	if err := a.volumeOwner().chownTree(partial); err != nil {
		return err
	}
	if err := os.Rename(partial, dir); err != nil {
		return err
	}
	a.log.Info("cloned git repository into volume", "group", g.Key(), "volume", name, "repository", repo.Repository, "revision", repo.Revision)
	return nil
}

// runGit runs git in dir with none of the node's git configuration or
// credentials and only the allowed transports.
func runGit(ctx context.Context, dir string, args ...string) ([]byte, error) {
	full := []string{"-c", "protocol.allow=never"}
	for _, p := range gitProtocols {
		full = append(full, "-c", "protocol."+p+".allow=always")
	}
	cmd := exec.CommandContext(ctx, "git", append(full, args...)...)
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=/nonexistent", // no ~/.netrc or config of the node's user
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_ASKPASS=/bin/false",
		"SSH_ASKPASS=/bin/false",
		"LC_ALL=C",
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd.CombinedOutput()
}
