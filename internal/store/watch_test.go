package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/embedetcd"
	"github.com/berth-dev/berth/internal/embedetcd/etcdtest"
	"github.com/berth-dev/berth/internal/store"
)

func TestStore_Watch(t *testing.T) {
	t.Parallel()
	c := etcdtest.NewClient(t)
	tests := []struct {
		name string
		run  func(ctx context.Context, t *testing.T, s *store.Store)
	}{
		{
			name: "a watch from the list revision sees puts and deletes in order, and only under its prefix",
			run: func(ctx context.Context, t *testing.T, s *store.Store) {
				mustCreate(ctx, t, s, "w/old", record{N: 0})
				_, from, err := s.List(ctx, "w/")
				if err != nil {
					t.Fatal(err)
				}
				ch := s.Watch(ctx, "w/", from)
				r1 := mustCreate(ctx, t, s, "w/a", record{N: 1})
				mustCreate(ctx, t, s, "other/a", record{N: 9})
				r2, err := s.Update(ctx, "w/a", record{N: 2}, r1)
				if err != nil {
					t.Fatal(err)
				}
				r3, err := s.Put(ctx, "w/b", record{N: 3})
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Delete(ctx, "w/a", r2); err != nil {
					t.Fatal(err)
				}
				expectEvents(t, ch,
					store.Event{Type: store.EventPut, Key: "w/a", Value: []byte(`{"name":"","n":1}`), Revision: r1},
					store.Event{Type: store.EventPut, Key: "w/a", Value: []byte(`{"name":"","n":2}`), Revision: r2},
					store.Event{Type: store.EventPut, Key: "w/b", Value: []byte(`{"name":"","n":3}`), Revision: r3},
					store.Event{Type: store.EventDelete, Key: "w/a"}, // revision: any after r3
				)
			},
		},
		{
			name: "a watch from revision 0 sees the writes made after it returned",
			run: func(ctx context.Context, t *testing.T, s *store.Store) {
				mustCreate(ctx, t, s, "w/before", record{})
				ch := s.Watch(ctx, "w/", 0)
				r := mustCreate(ctx, t, s, "w/after", record{})
				expectEvents(t, ch, store.Event{Type: store.EventPut, Key: "w/after", Value: []byte(`{"name":"","n":0}`), Revision: r})
			},
		},
		{
			name: "a watch from an old revision replays what came after it",
			run: func(ctx context.Context, t *testing.T, s *store.Store) {
				r1 := mustCreate(ctx, t, s, "w/1", record{N: 1})
				r2 := mustCreate(ctx, t, s, "w/2", record{N: 2})
				expectEvents(t, s.Watch(ctx, "w/", r1),
					store.Event{Type: store.EventPut, Key: "w/2", Value: []byte(`{"name":"","n":2}`), Revision: r2})
			},
		},
		{
			name: "the channel closes when the context ends",
			run: func(ctx context.Context, t *testing.T, s *store.Store) {
				ctx, cancel := context.WithCancel(ctx)
				ch := s.Watch(ctx, "w/", 0)
				cancel()
				expectClosed(t, ch)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t.Context(), t, store.New(c, "/test/"+t.Name()+"/"))
		})
	}
}

func TestStore_WatchAfterCompaction(t *testing.T) {
	t.Parallel()
	c := etcdtest.NewClient(t)
	ctx := t.Context()
	s := store.New(c, "/test/")
	first := mustCreate(ctx, t, s, "k", record{N: 0})
	var last int64
	for i := 1; i <= 3; i++ {
		var err error
		if last, err = s.Put(ctx, "k", record{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Compact(ctx, last); err != nil {
		t.Fatalf("compact: %v", err)
	}

	ch := s.Watch(ctx, "", first)
	got := next(t, ch)
	if got.Type != store.EventReset || got.Revision < last {
		t.Fatalf("first event = %+v, want a reset at revision %d or later", got, last)
	}
	// The consumer relists and goes on receiving what follows.
	kvs, _, err := s.List(ctx, "")
	if err != nil || len(kvs) != 1 {
		t.Fatalf("relist = %v (%v)", kvs, err)
	}
	r, err := s.Put(ctx, "k", record{N: 4})
	if err != nil {
		t.Fatal(err)
	}
	expectEvents(t, ch, store.Event{Type: store.EventPut, Key: "k", Value: []byte(`{"name":"","n":4}`), Revision: r})
}

// TestStore_WatchAcrossRestart stops etcd under a running watch: the watch
// must resume where it stopped, losing and repeating nothing.
func TestStore_WatchAcrossRestart(t *testing.T) {
	t.Parallel()
	cfg := embedetcd.Config{Dir: t.TempDir(), Logger: etcdtest.Logger()}
	e, err := embedetcd.Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	c := etcdtest.Client(t, e)
	ctx := t.Context()
	s := store.New(c, "/test/")
	ch := s.Watch(ctx, "", 0)
	r1 := mustCreate(ctx, t, s, "before", record{})
	expectEvents(t, ch, store.Event{Type: store.EventPut, Key: "before", Value: []byte(`{"name":"","n":0}`), Revision: r1})

	e.Close()
	e2, err := embedetcd.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Cleanup(e2.Close)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r2, err := s.Create(wctx, "after", record{})
	if err != nil {
		t.Fatalf("create after restart: %v", err)
	}
	expectEvents(t, ch, store.Event{Type: store.EventPut, Key: "after", Value: []byte(`{"name":"","n":0}`), Revision: r2})
}

func next(t *testing.T, ch <-chan store.Event) store.Event {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event within 10s")
	}
	return store.Event{}
}

// expectEvents checks that exactly want arrives next, and nothing more
// right after. A wanted Revision of 0 stands for any revision after the
// previous event's.
func expectEvents(t *testing.T, ch <-chan store.Event, want ...store.Event) {
	t.Helper()
	var prev int64
	for i, w := range want {
		got := next(t, ch)
		if w.Revision == 0 && got.Revision > prev {
			w.Revision = got.Revision
		}
		if format(got) != format(w) {
			t.Errorf("event %d = %s, want %s", i, format(got), format(w))
		}
		prev = got.Revision
	}
	select {
	case e, ok := <-ch:
		if ok {
			t.Errorf("unexpected event %s", format(e))
		}
	case <-time.After(100 * time.Millisecond):
	}
}

func expectClosed(t *testing.T, ch <-chan store.Event) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("watch channel not closed")
		}
	}
}

func format(e store.Event) string {
	return fmt.Sprintf("%s %q %s @%d", e.Type, e.Key, e.Value, e.Revision)
}
