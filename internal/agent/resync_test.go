package agent

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/types"
)

// race makes a new group come into being right after the first listing
// that resync makes, of either the store or the node: created in the
// store, with its namespace and files already set up by its worker (what
// concurrent creates do).
type race struct {
	once   sync.Once
	create func()
}

func (r *race) tick() { r.once.Do(r.create) }

// racingPlane is the desired groups, which a listing may race with.
type racingPlane struct {
	mu     sync.Mutex
	groups []types.ContainerGroup
	race   *race
}

func (p *racingPlane) Get(key string) (types.ContainerGroup, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fixedGroups(p.groups).Get(key)
}

func (p *racingPlane) List() []controller.Item[types.ContainerGroup] {
	p.mu.Lock()
	groups := slices.Clone(p.groups)
	p.mu.Unlock()
	p.race.tick()
	return fixedGroups(groups).List()
}

// idleRuntime runs nothing.
type idleRuntime struct{ containerRuntime }

func (idleRuntime) List(context.Context) ([]runtime.Info, error) { return nil, nil }
func (idleRuntime) Sandboxes(context.Context) ([]string, error)  { return nil, nil }

// netnsSet is a groupNetwork of namespaces by group UID.
type netnsSet struct {
	groupNetwork
	mu       sync.Mutex
	ids      []string
	tornDown []string
	race     *race
}

func (n *netnsSet) List() ([]string, error) {
	n.mu.Lock()
	ids := slices.Clone(n.ids)
	n.mu.Unlock()
	n.race.tick()
	return ids, nil
}

func (n *netnsSet) Teardown(_ context.Context, id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.tornDown = append(n.tornDown, id)
	n.ids = slices.DeleteFunc(n.ids, func(s string) bool { return s == id })
	return nil
}

func TestResync_CollectsOnlyWhatHasNoGroup(t *testing.T) {
	dir := t.TempDir()
	mkdirs := func(uid string) {
		for _, d := range []string{"groups", "logs"} {
			if err := os.MkdirAll(filepath.Join(dir, d, uid), 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	exists := func(uid string) bool {
		_, err := os.Stat(filepath.Join(dir, "groups", uid))
		_, err2 := os.Stat(filepath.Join(dir, "logs", uid))
		return err == nil && err2 == nil
	}
	r := &race{}
	nets := &netnsSet{ids: []string{"old", "orphan"}, race: r}
	mkdirs("old")
	mkdirs("orphan")
	plane := &racingPlane{groups: []types.ContainerGroup{{Subscription: "s", ResourceGroup: "rg", Name: "old", UID: "old"}}, race: r}
	r.create = func() {
		plane.mu.Lock()
		plane.groups = append(plane.groups, types.ContainerGroup{Subscription: "s", ResourceGroup: "rg", Name: "new", UID: "new"})
		plane.mu.Unlock()
		nets.mu.Lock()
		nets.ids = append(nets.ids, "new")
		nets.mu.Unlock()
		mkdirs("new")
	}
	a := New(Options{Runtime: idleRuntime{}, Network: nets, Dir: dir})
	a.groups = plane
	a.resync(context.Background())

	if !slices.Equal(nets.tornDown, []string{"orphan"}) {
		t.Errorf("torn down %v, want only the orphan's namespace", nets.tornDown)
	}
	if !exists("old") || !exists("new") {
		t.Errorf("files of a live group were collected: old %v, new %v", exists("old"), exists("new"))
	}
	if exists("orphan") {
		t.Error("the orphan's files were not collected")
	}
}
