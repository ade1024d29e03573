package fake

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/types"
)

func group(name, uid string) types.ContainerGroup {
	return types.ContainerGroup{Subscription: "s", ResourceGroup: "rg", Name: name, UID: uid}
}

// next reads one event, failing the test after a second.
func next(t *testing.T, ch <-chan controller.Event[types.ContainerGroup]) controller.Event[types.ContainerGroup] {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch closed")
		}
		return ev
	case <-time.After(time.Second):
		t.Fatal("no event within a second")
	}
	return controller.Event[types.ContainerGroup]{}
}

func TestPlane_AssignedListsAndWatchesTheNodesGroups(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := NewPlane("n1")
	a, b := group("a", "ua"), group("b", "ub")
	p.Put(a)
	p.PutOn("n2", b)

	items, rev, err := p.Assigned().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].Key != a.Key() || items[0].Value.NodeName != "n1" || items[0].Revision == 0 || rev < items[0].Revision {
		t.Fatalf("List = %+v at %d; want only a, bound to n1, with its revision", items, rev)
	}

	ch := p.Assigned().Watch(ctx, rev)
	p.PutOn("n2", group("c", "uc")) // another node's: not seen
	if err := p.Move(b.Key(), "n1"); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Type != controller.EventPut || ev.Key != b.Key() || ev.Value.UID != "ub" || ev.Revision <= rev {
		t.Errorf("after b moved here: %+v, want a put of b", ev)
	}
	if err := p.Move(a.Key(), "n2"); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Type != controller.EventDelete || ev.Key != a.Key() {
		t.Errorf("after a moved away: %+v, want a delete of a", ev)
	}
	p.Delete(b.Key())
	if ev := next(t, ch); ev.Type != controller.EventDelete || ev.Key != b.Key() {
		t.Errorf("after b was deleted: %+v, want a delete of b", ev)
	}
}

func TestPlane_WatchFromBeforeTheLogResets(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := NewPlane("n1")
	first := p.Put(group("a", "ua"))
	for range DefaultHistory {
		p.Put(group("b", "ub"))
	}
	ch := p.Assigned().Watch(ctx, first-1)
	if ev := next(t, ch); ev.Type != controller.EventReset {
		t.Fatalf("watch from before the log: %+v, want a reset", ev)
	}
	if _, ok := <-ch; ok {
		t.Error("the watch stayed open after the reset")
	}

	// After a compaction, only a watch from the newest revision goes on.
	_, rev, _ := p.Assigned().List(ctx)
	p.Put(group("a", "ua"))
	p.Compact()
	if ev := next(t, p.Assigned().Watch(ctx, rev)); ev.Type != controller.EventReset {
		t.Fatalf("watch from before a compaction: %+v, want a reset", ev)
	}
	ch = p.Assigned().Watch(ctx, rev+1)
	p.Put(group("b", "ub"))
	if ev := next(t, ch); ev.Type != controller.EventPut || ev.Revision != rev+2 {
		t.Fatalf("watch from the compaction: %+v, want the next put", ev)
	}
}

func TestPlane_ReportsAreFenced(t *testing.T) {
	ctx := context.Background()
	p := NewPlane("n1")
	g := group("a", "u1")
	p.Put(g)
	key := g.Key()

	tests := []struct {
		name   string
		setup  func()
		uid    string
		stored bool
	}{
		{"the bound incarnation's status is stored", func() {}, "u1", true},
		{"another incarnation's is refused", func() {}, "u0", false},
		{"a moved group's is refused", func() { _ = p.Move(key, "n2") }, "u1", false},
		{"a deleted group's is refused", func() { p.Delete(key) }, "u1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup()
			p.SetStatus(key, types.GroupStatus{UID: "before"})
			err := p.ReportStatus(ctx, key, &types.GroupStatus{UID: tt.uid, State: types.GroupRunning})
			got := p.Status(key)
			if tt.stored {
				if err != nil || got == nil || got.UID != tt.uid || got.NodeName != "n1" {
					t.Errorf("ReportStatus: %v, stored %+v; want it stored, by n1", err, got)
				}
				return
			}
			if !errdefs.IsFailedPrecondition(err) {
				t.Errorf("ReportStatus: %v, want FailedPrecondition", err)
			}
			if got != nil && got.UID != "before" {
				t.Errorf("a refused report was stored: %+v", got)
			}
		})
	}
	if p.StatusWrites() != 1 || p.ReportCalls() != 4 {
		t.Errorf("writes %d, calls %d; want 1 and 4", p.StatusWrites(), p.ReportCalls())
	}
}

func TestPlane_FailReportStatus(t *testing.T) {
	ctx := context.Background()
	p := NewPlane("n1")
	g := group("a", "u1")
	p.Put(g)
	boom := errors.New("boom")
	p.FailReportStatus(boom)
	if err := p.ReportStatus(ctx, g.Key(), &types.GroupStatus{UID: "u1"}); !errors.Is(err, boom) || p.Status(g.Key()) != nil {
		t.Errorf("ReportStatus: %v; want the injected error and nothing stored", err)
	}
	p.FailReportStatus(nil)
	if err := p.ReportStatus(ctx, g.Key(), &types.GroupStatus{UID: "u1"}); err != nil || p.Status(g.Key()) == nil {
		t.Errorf("ReportStatus after the failure ended: %v", err)
	}
}

func TestPlane_TornDownFinishesTheDeleteOfTheBoundIncarnation(t *testing.T) {
	ctx := context.Background()
	p := NewPlane("n1")
	g := group("a", "u1")
	g.Deleting = true
	p.Put(g)

	// Reports about other incarnations or nodes change nothing.
	if err := p.ReportTornDown(ctx, g.Key(), "u0"); err != nil {
		t.Fatal(err)
	}
	if p.Group(g.Key()) == nil || len(p.TornDown()) != 0 {
		t.Fatal("a report about another incarnation finished the delete")
	}
	if err := p.ReportTornDown(ctx, g.Key(), "u1"); err != nil {
		t.Fatal(err)
	}
	if p.Group(g.Key()) != nil {
		t.Error("the group is still there")
	}
	if got := p.TornDown(); len(got) != 1 || got[0] != (TornDown{Key: g.Key(), UID: "u1"}) {
		t.Errorf("TornDown = %v", got)
	}
	if p.TornDownCalls() != 2 {
		t.Errorf("TornDownCalls = %d, want 2", p.TornDownCalls())
	}
}

func TestPlane_ValuesAreCopies(t *testing.T) {
	ctx := context.Background()
	p := NewPlane("n1")
	g := group("a", "u1")
	g.Tags = map[string]string{"k": "v"}
	p.Put(g)
	g.Tags["k"] = "changed"
	items, _, _ := p.Assigned().List(ctx)
	items[0].Value.Tags["k"] = "changed too"
	if got := p.Group(g.Key()).Tags["k"]; got != "v" {
		t.Errorf("stored tag = %q; the plane shares memory with its callers", got)
	}
}

func TestPlane_RegisterAndRenew(t *testing.T) {
	ctx := context.Background()
	p := NewPlane("n1")
	p.FailRegister(errdefs.ErrUnavailable)
	if _, err := p.Register(ctx, types.Node{Name: "other"}); !errdefs.IsUnavailable(err) {
		t.Fatalf("Register: %v, want the injected failure", err)
	}
	p.FailRegister(nil)
	info, err := p.Register(ctx, types.Node{Name: "other", Zone: "z"})
	if err != nil || info.LeaseRenewSeconds != 1 {
		t.Fatalf("Register: %+v, %v", info, err)
	}
	if err := p.RenewLease(ctx); err != nil {
		t.Fatal(err)
	}
	if got := p.Registered(); len(got) != 1 || got[0].Name != "n1" || got[0].Zone != "z" {
		t.Errorf("Registered = %+v; want the node, named as the plane's", got)
	}
	if p.Renewals() != 1 {
		t.Errorf("Renewals = %d; want 1", p.Renewals())
	}
}
