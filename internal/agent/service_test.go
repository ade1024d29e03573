package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/agent/fake"
	"github.com/berth-dev/berth/internal/agent/runtime"
	"github.com/berth-dev/berth/internal/nodeapi"
	"github.com/berth-dev/berth/internal/types"
)

// serviceNode is an agent with group g1, incarnation "u2", bound to its
// node, whose container web runs and has printed "hello".
func serviceNode(t *testing.T) (*Agent, *fake.Runtime, nodeapi.GroupRef) {
	t.Helper()
	ctx := context.Background()
	rt := fake.NewRuntime(nil)
	g := types.ContainerGroup{Subscription: "s", ResourceGroup: "rg", Name: "g1", UID: "u2", NodeName: "n1"}
	a := New(Options{Runtime: rt, Dir: t.TempDir()})
	a.groups = fixedGroups{g}
	if err := rt.Pull(ctx, "img", nil); err != nil {
		t.Fatal(err)
	}
	spec := runtime.ContainerSpec{ID: "u2-web", Image: "img", Labels: map[string]string{
		runtime.LabelGroup: g.Key(), runtime.LabelGroupUID: "u2", runtime.LabelContainer: "web"}}
	if err := rt.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx, "u2-web"); err != nil {
		t.Fatal(err)
	}
	rt.SetExec("u2-web", 5, "ran\n")
	path := a.LogPath("u2", "web")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return a, rt, nodeapi.GroupRef{Key: g.Key(), UID: "u2", Name: "g1"}
}

func TestService_ServesTheIncarnationBoundHere(t *testing.T) {
	ctx := context.Background()
	a, rt, ref := serviceNode(t)
	svc := a.Service()

	got, err := svc.ReadLog(ctx, nodeapi.LogRequest{Group: ref, Container: "web"})
	if err != nil || got != "hello\n" {
		t.Errorf("ReadLog: got %q, %v; want the container's output", got, err)
	}
	var out strings.Builder
	code, err := svc.Exec(ctx, nodeapi.ExecRequest{Group: ref, Container: "web", ID: "e1", Args: []string{"true"}, Output: &out})
	if err != nil || code != 5 || out.String() != "ran\n" {
		t.Errorf("Exec: got %d %q %v; want exit 5 and its output", code, out.String(), err)
	}
	if calls := rt.Execs(); len(calls) != 1 || calls[0].Container != "u2-web" {
		t.Errorf("runtime execs = %v, want one in u2-web", calls)
	}
}

func TestService_RefusesOtherIncarnations(t *testing.T) {
	ctx := context.Background()
	a, rt, ref := serviceNode(t)
	svc := a.Service()

	older := ref
	older.UID = "u1"
	// A group bound to another node is not among the node's groups.
	elsewhere := nodeapi.GroupRef{Key: types.GroupKey("s", "rg", "g2"), UID: "u3", Name: "g2"}

	for _, tc := range []struct {
		name string
		ref  nodeapi.GroupRef
	}{
		{"an older incarnation of a group here", older},
		{"a group not bound to this node", elsewhere},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := svc.ReadLog(ctx, nodeapi.LogRequest{Group: tc.ref, Container: "web"}); !errdefs.IsNotFound(err) {
				t.Errorf("ReadLog: got %v, want not found", err)
			}
			if _, err := svc.Exec(ctx, nodeapi.ExecRequest{Group: tc.ref, Container: "web", ID: "e", Args: []string{"sh"}}); !errdefs.IsNotFound(err) {
				t.Errorf("Exec: got %v, want not found", err)
			}
			if err := svc.Attach(ctx, nodeapi.AttachRequest{Group: tc.ref, Container: "web", Output: &strings.Builder{}}); !errdefs.IsNotFound(err) {
				t.Errorf("Attach: got %v, want not found", err)
			}
		})
	}
	if calls := rt.Execs(); len(calls) != 0 {
		t.Errorf("refused execs reached the runtime: %v", calls)
	}
}
