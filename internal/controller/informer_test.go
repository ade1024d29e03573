package controller

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeSource is a Source the test drives: List returns its items, and each
// Watch hands its channel to the test.
type fakeSource struct {
	mu      sync.Mutex
	items   []Item[string]
	rev     int64
	lists   int
	watches chan chan Event[string]
	afters  chan int64
}

func newFakeSource(items ...Item[string]) *fakeSource {
	s := &fakeSource{items: items, watches: make(chan chan Event[string], 10), afters: make(chan int64, 10)}
	for _, it := range items {
		s.rev = max(s.rev, it.Revision)
	}
	return s
}

func (s *fakeSource) List(context.Context) ([]Item[string], int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lists++
	return slices.Clone(s.items), s.rev, nil
}

// Watch hands the test a channel to send on; like a real source, the
// returned stream closes when ctx ends or the test closes its channel.
func (s *fakeSource) Watch(ctx context.Context, after int64) <-chan Event[string] {
	in, out := make(chan Event[string]), make(chan Event[string])
	s.afters <- after
	s.watches <- in
	go func() {
		defer close(out)
		for {
			select {
			case ev, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func (s *fakeSource) set(rev int64, items ...Item[string]) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.items, s.rev = items, rev
}

// changes records what an informer's handler saw, as "key:old>new".
type changes struct {
	mu  sync.Mutex
	got []string
}

func (c *changes) handle(ch Change[string]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, fmt.Sprintf("%s:%s>%s", ch.Key, deref(ch.Old), deref(ch.New)))
}

func (c *changes) wait(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		got := slices.Clone(c.got)
		c.mu.Unlock()
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(time.Millisecond)
	}
}

func deref(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}

func startInformer(t *testing.T, src Source[string], opts InformerOptions) (*Informer[string], *changes) {
	t.Helper()
	inf := NewInformer(src, opts)
	inf.AddIndex("first", func(v *string) []string { return []string{(*v)[:1]} })
	c := &changes{}
	inf.OnChange(c.handle)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); inf.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := inf.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	return inf, c
}

func TestInformer(t *testing.T) {
	t.Run("the cache follows a list then the watch from its revision", func(t *testing.T) {
		src := newFakeSource(Item[string]{"a", "apple", 3}, Item[string]{"b", "bean", 5})
		inf, c := startInformer(t, src, InformerOptions{})
		if after := <-src.afters; after != 5 {
			t.Fatalf("watch after %d, want 5 (the list's revision)", after)
		}
		w := <-src.watches
		w <- Event[string]{Type: EventPut, Key: "a", Value: "avocado", Revision: 6}
		w <- Event[string]{Type: EventDelete, Key: "b", Revision: 7}
		w <- Event[string]{Type: EventPut, Key: "c", Value: "cherry", Revision: 8}
		got := c.wait(t, 5)
		want := []string{"a:->apple", "b:->bean", "a:apple>avocado", "b:bean>-", "c:->cherry"}
		if !slices.Equal(got, want) {
			t.Fatalf("changes = %v, want %v", got, want)
		}
		if v, _ := inf.Get("a"); v != "avocado" || inf.Revision() != 8 || inf.Len() != 2 {
			t.Fatalf("cache a=%q rev=%d len=%d", v, inf.Revision(), inf.Len())
		}
		if items := inf.ByIndex("first", "a"); len(items) != 1 || items[0].Value != "avocado" {
			t.Fatalf("index a = %v, want only avocado (apple re-indexed away)", items)
		}
	})
	t.Run("a reset relists and the handlers see what changed while the history was lost", func(t *testing.T) {
		src := newFakeSource(Item[string]{"a", "apple", 3}, Item[string]{"b", "bean", 4})
		_, c := startInformer(t, src, InformerOptions{})
		<-src.afters
		w := <-src.watches
		src.set(9, Item[string]{"a", "apple", 3}, Item[string]{"c", "cherry", 9})
		w <- Event[string]{Type: EventReset, Revision: 9}
		close(w)
		got := c.wait(t, 4)
		want := []string{"a:->apple", "b:->bean", "b:bean>-", "c:->cherry"}
		if !slices.Equal(got, want) {
			t.Fatalf("changes = %v, want %v (a unchanged is not reported again)", got, want)
		}
		if after := <-src.afters; after != 9 {
			t.Fatalf("watch after relist from %d, want 9", after)
		}
	})
	t.Run("a broken stream is watched again from the last revision without a list", func(t *testing.T) {
		src := newFakeSource(Item[string]{"a", "apple", 3})
		_, c := startInformer(t, src, InformerOptions{RetryDelay: time.Millisecond})
		<-src.afters
		w := <-src.watches
		w <- Event[string]{Type: EventPut, Key: "a", Value: "apricot", Revision: 4}
		close(w)
		if after := <-src.afters; after != 4 {
			t.Fatalf("rewatch after %d, want 4", after)
		}
		c.wait(t, 2)
		src.mu.Lock()
		lists := src.lists
		src.mu.Unlock()
		if lists != 1 {
			t.Fatalf("%d lists, want 1", lists)
		}
	})
}

func TestInformerSubscribe(t *testing.T) {
	collect := func(t *testing.T, ch <-chan Event[string], n int) []string {
		t.Helper()
		var out []string
		timeout := time.After(5 * time.Second)
		for len(out) < n {
			select {
			case ev, ok := <-ch:
				if !ok {
					return append(out, "closed")
				}
				out = append(out, fmt.Sprintf("%s %s=%s@%d", ev.Type, ev.Key, ev.Value, ev.Revision))
			case <-timeout:
				t.Fatalf("got %v, waiting for %d", out, n)
			}
		}
		return out
	}
	onlyA := func(v *string) bool { return (*v)[0] == 'a' }

	t.Run("a subscriber from a snapshot's revision sees the later changes through its filter", func(t *testing.T) {
		src := newFakeSource(Item[string]{"k1", "apple", 3})
		inf, _ := startInformer(t, src, InformerOptions{History: 100})
		<-src.afters
		w := <-src.watches
		items, rev := inf.Snapshot(onlyA)
		if len(items) != 1 || rev != 3 {
			t.Fatalf("snapshot = %v at %d", items, rev)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		sub := inf.Subscribe(ctx, rev, onlyA)
		w <- Event[string]{Type: EventPut, Key: "k1", Value: "banana", Revision: 4} // leaves the filter
		w <- Event[string]{Type: EventPut, Key: "k2", Value: "bean", Revision: 5}   // never in it
		w <- Event[string]{Type: EventPut, Key: "k2", Value: "acorn", Revision: 6}  // enters it
		got := collect(t, sub, 2)
		want := []string{"delete k1=@4", "put k2=acorn@6"}
		if !slices.Equal(got, want) {
			t.Fatalf("events = %v, want %v", got, want)
		}
	})
	t.Run("a subscriber from before the history is told to list again", func(t *testing.T) {
		src := newFakeSource(Item[string]{"k1", "apple", 3})
		inf, c := startInformer(t, src, InformerOptions{History: 2})
		<-src.afters
		w := <-src.watches
		for rev := int64(4); rev <= 7; rev++ {
			w <- Event[string]{Type: EventPut, Key: "k1", Value: fmt.Sprint("a", rev), Revision: rev}
		}
		c.wait(t, 5)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if got := collect(t, inf.Subscribe(ctx, 3, nil), 2); got[0] != "reset =@7" || got[1] != "closed" {
			t.Fatalf("subscribe from 3 = %v, want a reset then close", got)
		}
		if got := collect(t, inf.Subscribe(ctx, 5, nil), 2); !slices.Equal(got, []string{"put k1=a6@6", "put k1=a7@7"}) {
			t.Fatalf("subscribe from 5 = %v", got)
		}
	})
	t.Run("a relist ends every subscription with a reset", func(t *testing.T) {
		src := newFakeSource(Item[string]{"k1", "apple", 3})
		inf, _ := startInformer(t, src, InformerOptions{History: 10})
		<-src.afters
		w := <-src.watches
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		sub := inf.Subscribe(ctx, 3, nil)
		src.set(10, Item[string]{"k1", "apple", 3})
		w <- Event[string]{Type: EventReset, Revision: 10}
		close(w)
		if got := collect(t, sub, 2); got[0] != "reset =@10" || got[1] != "closed" {
			t.Fatalf("events = %v, want a reset then close", got)
		}
	})
}

func TestInformerSource(t *testing.T) {
	src := newFakeSource(Item[string]{"k1", "apple", 3}, Item[string]{"k2", "bean", 4})
	inf, _ := startInformer(t, src, InformerOptions{History: 10})
	<-src.afters
	w := <-src.watches
	// A second informer fed from the first one's cache, through a filter.
	view := NewInformer(inf.Source(func(v *string) bool { return (*v)[0] == 'a' }), InformerOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); view.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := view.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if view.Len() != 1 {
		t.Fatalf("view = %v, want k1 only", view.List())
	}
	w <- Event[string]{Type: EventPut, Key: "k2", Value: "almond", Revision: 5}
	w <- Event[string]{Type: EventPut, Key: "k1", Value: "banana", Revision: 6}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, has1 := view.Get("k1")
		v2, _ := view.Get("k2")
		if !has1 && v2 == "almond" && view.Revision() == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("view = %v at %d, want only k2=almond at 6", view.List(), view.Revision())
		}
		time.Sleep(time.Millisecond)
	}
}
