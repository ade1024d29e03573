package store_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/embedetcd/etcdtest"
	"github.com/berth-dev/berth/internal/store"
)

func TestTyped_RoundTrip(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := store.New(etcdtest.NewClient(t), "/berth/")
	groups := store.NewTyped[record](s, "groups/")
	if got := groups.Prefix(); got != "groups/" {
		t.Errorf("Prefix() = %q", got)
	}
	watch := groups.Watch(ctx, 0)

	rev, err := groups.Create(ctx, "b", record{Name: "b", N: 1})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := groups.Create(ctx, "b", record{}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second create: %v, want already exists", err)
	}
	got, gotRev, err := groups.Get(ctx, "b")
	if err != nil || got != (record{Name: "b", N: 1}) || gotRev != rev {
		t.Fatalf("get = %+v at %d (%v), want {b 1} at %d", got, gotRev, err, rev)
	}
	rev, err = groups.Update(ctx, "b", record{Name: "b", N: 2}, rev)
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if _, err := groups.Update(ctx, "b", record{}, rev-1); !errdefs.IsConflict(err) {
		t.Errorf("stale update: %v, want conflict", err)
	}
	if _, err := groups.Put(ctx, "a", record{Name: "a"}); err != nil {
		t.Fatalf("put: %v", err)
	}
	// A key of another type beside the prefix stays out of the list.
	if _, err := s.Put(ctx, "groupsx", "not a record"); err != nil {
		t.Fatal(err)
	}

	items, listRev, err := groups.List(ctx)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	want := []store.Item[record]{
		{Key: "a", Value: record{Name: "a"}},
		{Key: "b", Value: record{Name: "b", N: 2}, Revision: rev},
	}
	want[0].Revision = items[0].Revision
	if !slices.Equal(items, want) || listRev < rev {
		t.Errorf("list = %+v at %d, want %+v", items, listRev, want)
	}

	if err := groups.Delete(ctx, "b", rev); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, _, err := groups.Get(ctx, "b"); !errdefs.IsNotFound(err) {
		t.Errorf("get after delete: %v, want not found", err)
	}
	if err := groups.Delete(ctx, "b", 0); !errdefs.IsNotFound(err) {
		t.Errorf("second delete: %v, want not found", err)
	}

	// The typed watch reports keys relative to its prefix.
	var keys []string
	for range 4 {
		e := next(t, watch)
		keys = append(keys, e.Type.String()+" "+e.Key)
	}
	if want := []string{"put b", "put b", "put a", "delete b"}; !slices.Equal(keys, want) {
		t.Errorf("watched %v, want %v", keys, want)
	}
}

func TestTyped_ListOfDamagedValueIsDataLoss(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := store.New(etcdtest.NewClient(t), "/berth/")
	if _, err := s.Put(ctx, "groups/a", []int{1}); err != nil {
		t.Fatal(err)
	}
	_, _, err := store.NewTyped[record](s, "groups/").List(ctx)
	if !errors.Is(err, errdefs.ErrDataLoss) {
		t.Errorf("list error = %v, want data loss", err)
	}
}
