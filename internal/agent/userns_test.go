package agent

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/testenv"
	"github.com/berth-dev/berth/internal/types"
)

// TestPrepareVolumes_UserNS: under the node's user namespace remapping, a
// group's volumes belong to the range's root, so that root in the
// container owns them, and the data dir lets that root pass (issue 7).
// Without it, they stay the host root's.
func TestPrepareVolumes_UserNS(t *testing.T) {
	testenv.RequireRoot(t)
	repo := testenv.ServeGitRepo(t, "site", []testenv.GitCommit{
		{Message: "first", Files: map[string]string{"index.html": "hello\n", "sub/page.html": "page\n"}},
	})
	const host = 1 << 30
	for _, tt := range []struct {
		name   string
		userns *runtime.IDRange
		want   int // owner of the volumes
	}{
		{"remapped", &runtime.IDRange{HostID: host, Size: 1 << 16}, host},
		{"not remapped", nil, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := volumeAgent(t)
			a.opts.UserNS = tt.userns
			g := volumeGroup(
				types.Volume{Name: "cache", EmptyDir: true},
				types.Volume{Name: "creds", Secret: map[string][]byte{"token": []byte("s3cr3t")}},
				types.Volume{Name: "src", GitRepo: &types.GitRepoVolume{Repository: repo.URL, Directory: "."}},
			)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := a.prepareVolumes(ctx, g); err != nil {
				t.Fatal(err)
			}
			var paths []string
			paths = append(paths, a.volumeDir(g.UID, "cache"), a.volumeDir(g.UID, "creds"), filepath.Join(a.volumeDir(g.UID, "creds"), "token"))
			err := filepath.WalkDir(a.volumeDir(g.UID, "src"), func(p string, _ fs.DirEntry, err error) error {
				paths = append(paths, p)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range paths {
				fi, err := os.Lstat(p)
				if err != nil {
					t.Fatal(err)
				}
				if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != tt.want || int(st.Gid) != tt.want {
					rel, _ := filepath.Rel(a.opts.Dir, p)
					t.Errorf("%s belongs to %d:%d, want %d:%d", rel, st.Uid, st.Gid, tt.want, tt.want)
				}
			}
			fi, err := os.Stat(a.opts.Dir)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if tt.userns != nil && (fi.Mode().Perm() != 0o710 || st.Uid != 0 || st.Gid != host) {
				t.Errorf("data dir %v %d:%d, want 0710 0:%d", fi.Mode().Perm(), st.Uid, st.Gid, host)
			}
			if tt.userns == nil && st.Gid != 0 {
				t.Errorf("data dir given to group %d without remapping", st.Gid)
			}
			// A second pass finds everything in place.
			if err := a.prepareVolumes(ctx, g); err != nil {
				t.Fatal(err)
			}
		})
	}
}
