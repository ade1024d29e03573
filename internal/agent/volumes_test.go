package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/testenv"
	"github.com/berth-dev/berth/internal/types"
)

// volumeAgent is an agent with only a directory: enough for the volume
// code, which touches neither the store nor containerd.
func volumeAgent(t *testing.T) *Agent {
	t.Helper()
	dir := t.TempDir()
	a := New(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	// Runs before TempDir's removal, which a mounted tmpfs would stop.
	t.Cleanup(func() {
		if err := removeMounted(filepath.Join(dir, "groups")); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return a
}

func volumeGroup(volumes ...types.Volume) *types.ContainerGroup {
	return &types.ContainerGroup{
		Subscription: "sub", ResourceGroup: "rg", Name: "vols", UID: "0123456789abcdef0123",
		Generation: 1, Spec: types.GroupSpec{Volumes: volumes},
	}
}

// mountsAt returns the mounts exactly at dir.
func mountsAt(t *testing.T, dir string) []*mountinfo.Info {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(dir))
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPrepareVolumes_EmptyDir(t *testing.T) {
	testenv.RequireRoot(t)
	a := volumeAgent(t)
	g := volumeGroup(types.Volume{Name: "cache", EmptyDir: true})
	ctx := context.Background()
	if err := a.prepareVolumes(ctx, g); err != nil {
		t.Fatal(err)
	}
	dir := a.volumeDir(g.UID, "cache")
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() || fi.Mode().Perm() != 0o777 {
		t.Errorf("got %v, want a directory with mode 0777", fi.Mode())
	}
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Every reconcile pass prepares the volumes again: data must survive.
	if err := a.prepareVolumes(ctx, g); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "data")); got != "kept" {
		t.Errorf("after a second pass the file holds %q, want kept", got)
	}
}

func TestPrepareVolumes_Secret(t *testing.T) {
	testenv.RequireRoot(t)
	a := volumeAgent(t)
	ctx := context.Background()
	g := volumeGroup(types.Volume{Name: "creds", Secret: map[string][]byte{"token": []byte("s3cr3t"), "config.json": []byte(`{"a":1}`)}})
	if err := a.prepareVolumes(ctx, g); err != nil {
		t.Fatal(err)
	}
	dir := a.volumeDir(g.UID, "creds")

	check := func(t *testing.T, want map[string]string) {
		t.Helper()
		ms := mountsAt(t, dir)
		if len(ms) != 1 {
			t.Fatalf("got %d mounts at %s, want exactly one", len(ms), dir)
		}
		if ms[0].FSType != "tmpfs" {
			t.Errorf("secret is on %s, want tmpfs", ms[0].FSType)
		}
		if !strings.Contains(","+ms[0].Options+",", ",ro,") {
			t.Errorf("secret tmpfs mount options %q, want ro", ms[0].Options)
		}
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o755 {
			t.Errorf("secret dir mode %v, want 0755", fi.Mode().Perm())
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != len(want) {
			t.Errorf("got %d files, want %d", len(entries), len(want))
		}
		for name, content := range want {
			p := filepath.Join(dir, name)
			if got := readFile(t, p); got != content {
				t.Errorf("%s holds %q, want %q", name, got, content)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o444 {
				t.Errorf("%s has mode %v, want 0444", name, fi.Mode().Perm())
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "new"), nil, 0o644); err == nil {
			t.Errorf("writing into the secret volume succeeded, want a read-only file system")
		}
	}
	check(t, map[string]string{"token": "s3cr3t", "config.json": `{"a":1}`})

	t.Run("a second pass mounts nothing more", func(t *testing.T) {
		if err := a.prepareVolumes(ctx, g); err != nil {
			t.Fatal(err)
		}
		check(t, map[string]string{"token": "s3cr3t", "config.json": `{"a":1}`})
	})

	t.Run("a changed secret is refilled in place", func(t *testing.T) {
		g.Spec.Volumes[0].Secret = map[string][]byte{"token": []byte("rotated")}
		if err := a.prepareVolumes(ctx, g); err != nil {
			t.Fatal(err)
		}
		check(t, map[string]string{"token": "rotated"})
	})

	t.Run("a volume dropped from the spec is unmounted and removed", func(t *testing.T) {
		g.Spec.Volumes = []types.Volume{{Name: "other", EmptyDir: true}}
		if err := a.prepareVolumes(ctx, g); err != nil {
			t.Fatal(err)
		}
		if ms := mountsAt(t, dir); len(ms) != 0 {
			t.Errorf("secret still mounted: %+v", ms[0])
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("secret dir still there: %v", err)
		}
	})

	t.Run("removeGroupDir unmounts the secret", func(t *testing.T) {
		g.Spec.Volumes = []types.Volume{{Name: "creds", Secret: map[string][]byte{"k": []byte("v")}}}
		if err := a.prepareVolumes(ctx, g); err != nil {
			t.Fatal(err)
		}
		if ms := mountsAt(t, dir); len(ms) != 1 {
			t.Fatalf("got %d mounts, want the secret's", len(ms))
		}
		if err := a.removeGroupDir(g.UID); err != nil {
			t.Fatal(err)
		}
		ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(a.groupDir(g.UID)))
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != 0 {
			t.Errorf("mounts left under the group dir: %d", len(ms))
		}
		if _, err := os.Stat(a.groupDir(g.UID)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("group dir still there: %v", err)
		}
	})
}

func TestPrepareVolumes_GitRepo(t *testing.T) {
	testenv.RequireRoot(t)
	repo := testenv.ServeGitRepo(t, "site", []testenv.GitCommit{
		{Message: "first", Files: map[string]string{"index.html": "version one\n"}},
		{Message: "second", Files: map[string]string{"index.html": "version two\n", "extra.txt": "x"}},
	})
	tests := []struct {
		name      string
		directory string
		revision  string
		file      string // where index.html ends up, relative to the volume
		want      string
	}{
		{"default directory is the repository name", "", "", "site/index.html", "version two\n"},
		{"dot is the volume root", ".", "", "index.html", "version two\n"},
		{"a subdirectory", "deep/dir", "", "deep/dir/index.html", "version two\n"},
		{"a revision at the root", ".", repo.Commits[0], "index.html", "version one\n"},
		{"a revision in the default directory", "", repo.Commits[0], "site/index.html", "version one\n"},
		{"a branch name", "", "main", "site/index.html", "version two\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := volumeAgent(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			g := volumeGroup(types.Volume{Name: "src", GitRepo: &types.GitRepoVolume{Repository: repo.URL, Directory: tt.directory, Revision: tt.revision}})
			if err := a.prepareVolumes(ctx, g); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(a.volumeDir(g.UID, "src"), tt.file)
			if got := readFile(t, p); got != tt.want {
				t.Errorf("%s holds %q, want %q", tt.file, got, tt.want)
			}
			// The second pass must not clone again: a marker survives.
			marker := filepath.Join(a.volumeDir(g.UID, "src"), "marker")
			if err := os.WriteFile(marker, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := a.prepareVolumes(ctx, g); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(marker); err != nil {
				t.Errorf("second pass replaced the clone: %v", err)
			}
		})
	}

	t.Run("a changed revision clones again", func(t *testing.T) {
		a := volumeAgent(t)
		ctx := context.Background()
		g := volumeGroup(types.Volume{Name: "src", GitRepo: &types.GitRepoVolume{Repository: repo.URL, Directory: ".", Revision: repo.Commits[1]}})
		if err := a.prepareVolumes(ctx, g); err != nil {
			t.Fatal(err)
		}
		g.Spec.Volumes[0].GitRepo.Revision = repo.Commits[0]
		if err := a.prepareVolumes(ctx, g); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, filepath.Join(a.volumeDir(g.UID, "src"), "index.html")); got != "version one\n" {
			t.Errorf("got %q after changing the revision, want version one", got)
		}
		if _, err := os.Stat(filepath.Join(a.volumeDir(g.UID, "src"), "extra.txt")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("extra.txt of the second commit is still there: %v", err)
		}
	})

	failures := []struct {
		name string
		repo types.GitRepoVolume
	}{
		{"a repository the server does not have", types.GitRepoVolume{Repository: strings.TrimSuffix(repo.URL, "site.git") + "nope.git"}},
		{"a revision the repository does not have", types.GitRepoVolume{Repository: repo.URL, Revision: "0123456789012345678901234567890123456789"}},
		{"a file URL, refused by git", types.GitRepoVolume{Repository: "file:///etc"}},
	}
	for _, tt := range failures {
		t.Run(tt.name+" fails the group", func(t *testing.T) {
			a := volumeAgent(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			g := volumeGroup(types.Volume{Name: "src", GitRepo: &tt.repo})
			err := a.prepareVolumes(ctx, g)
			var fe *failure
			if !errors.As(err, &fe) || fe.code != "GitRepoVolumeFailed" {
				t.Fatalf("got %v, want a GitRepoVolumeFailed failure", err)
			}
			if !strings.Contains(fe.msg, "'src'") || !strings.Contains(fe.msg, tt.repo.Repository) {
				t.Errorf("message %q does not name the volume and repository", fe.msg)
			}
			if _, err := os.Stat(a.volumeDir(g.UID, "src")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed clone left the volume dir: %v", err)
			}
		})
	}
}

func TestVolumeMounts(t *testing.T) {
	a := New(Options{Dir: "/data"})
	g := volumeGroup()
	c := &types.Container{VolumeMounts: []types.VolumeMount{
		{Name: "inner", MountPath: "/srv/www/static/"},
		{Name: "outer", MountPath: "/srv/www", ReadOnly: true},
		{Name: "other", MountPath: "/cache"},
	}}
	vol := "/data/groups/" + g.UID + "/volumes/"
	want := []runtime.Mount{
		{Source: vol + "other", Destination: "/cache"},
		{Source: vol + "outer", Destination: "/srv/www", ReadOnly: true},
		{Source: vol + "inner", Destination: "/srv/www/static"},
	}
	if got := volumeMounts(a.volumesDir(g.UID), c); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got := volumeMounts(a.volumesDir(g.UID), &types.Container{}); len(got) != 0 {
		t.Errorf("a container without volume mounts got %+v", got)
	}
}
