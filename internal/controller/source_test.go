package controller_test

import (
	"context"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/embedetcd/etcdtest"
	"github.com/berth-dev/berth/internal/store"
)

type thing struct {
	Node string `json:"node"`
}

// TestStoreSource runs an informer on a filtered view of a real etcd: the
// view of one node's things, the way an agent sees the groups bound to it.
func TestStoreSource(t *testing.T) {
	t.Parallel()
	s := store.New(etcdtest.NewClient(t), "/test/")
	things := store.NewTyped[thing](s, "things/")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if _, err := things.Create(ctx, "a", thing{Node: "n1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := things.Create(ctx, "b", thing{Node: "n2"}); err != nil {
		t.Fatal(err)
	}
	src := controller.Filter(controller.StoreSource(things), func(v *thing) bool { return v.Node == "n1" })
	inf := controller.NewInformer(src, controller.InformerOptions{Name: "things"})
	go inf.Run(ctx)
	if err := inf.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if inf.Len() != 1 {
		t.Fatalf("cache after list = %v, want only a", inf.List())
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s; cache %v", what, inf.List())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if _, err := s.Put(ctx, "things/b", thing{Node: "n1"}); err != nil {
		t.Fatal(err)
	}
	waitFor("b moved to n1 is in the view", func() bool { _, ok := inf.Get("b"); return ok })
	if _, err := s.Put(ctx, "things/a", thing{Node: "n3"}); err != nil {
		t.Fatal(err)
	}
	waitFor("a moved away is gone from the view", func() bool { _, ok := inf.Get("a"); return !ok })
	if err := things.Delete(ctx, "b", 0); err != nil {
		t.Fatal(err)
	}
	waitFor("b deleted is gone", func() bool { return inf.Len() == 0 })
}
