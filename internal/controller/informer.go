package controller

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Change is one change of an informer's cache, as its handlers see it:
// Old is nil for a new key, New is nil for a removed one.
type Change[T any] struct {
	Key      string
	Old, New *T
	Revision int64
}

// InformerOptions configure an Informer.
type InformerOptions struct {
	// Name appears in its log lines.
	Name   string
	Logger *slog.Logger
	// History is how many recent changes Subscribe can replay; 0 means
	// Subscribe always asks its caller to list first.
	History int
	// RetryDelay is the wait after a failed list (default 1 s, doubling
	// to 30 s).
	RetryDelay time.Duration
}

// Informer keeps a cache of a Source: it lists, then watches from the
// revision of the list, and lists again when the watch lost events, so the
// cache converges on the source whatever happens to the stream. Handlers
// see every change; on a relist they see the difference between the old
// cache and the new list, so a delete missed while the watch was down is
// still seen.
//
// It is also a watch cache, as kube-apiserver keeps one: Subscribe serves
// many consumers (remote agents) from one stream of the source.
type Informer[T any] struct {
	src  Source[T]
	opts InformerOptions
	log  *slog.Logger

	mu       sync.RWMutex
	items    map[string]Item[T]
	rev      int64
	synced   chan struct{}
	indexers map[string]func(*T) []string
	indexes  map[string]map[string]map[string]bool // index -> value -> keys
	handlers []func(Change[T])

	// The history for Subscribe: the changes after histFrom, numbered
	// from histSeq (the number of hist[0]). A relist restarts it.
	hist      []Change[T]
	histFrom  int64
	histSeq   int64
	histEpoch int64
	notify    chan struct{} // closed and replaced on every change
}

// NewInformer returns an informer of src; Run fills it.
func NewInformer[T any](src Source[T], opts InformerOptions) *Informer[T] {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = time.Second
	}
	return &Informer[T]{
		src:      src,
		opts:     opts,
		log:      opts.Logger.With("informer", opts.Name),
		items:    map[string]Item[T]{},
		synced:   make(chan struct{}),
		indexers: map[string]func(*T) []string{},
		indexes:  map[string]map[string]map[string]bool{},
		notify:   make(chan struct{}),
	}
}

// AddIndex indexes the cache by the values fn returns for an item (for
// example the node a group is bound to). Call it before Run.
func (i *Informer[T]) AddIndex(name string, fn func(*T) []string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.indexers[name] = fn
	i.indexes[name] = map[string]map[string]bool{}
}

// OnChange registers a handler, called in order of changes from Run's
// goroutine after the cache has the change. Handlers must be quick (queue
// a key); call OnChange before Run.
func (i *Informer[T]) OnChange(fn func(Change[T])) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.handlers = append(i.handlers, fn)
}

// Synced is closed once the first list is in the cache.
func (i *Informer[T]) Synced() <-chan struct{} { return i.synced }

// WaitSynced waits for the first list, or for ctx.
func (i *Informer[T]) WaitSynced(ctx context.Context) error {
	select {
	case <-i.synced:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Get returns the cached value of key.
func (i *Informer[T]) Get(key string) (T, bool) {
	i.mu.RLock()
	defer i.mu.RUnlock()
	it, ok := i.items[key]
	return it.Value, ok
}

// GetItem returns the cached item of key, with its revision.
func (i *Informer[T]) GetItem(key string) (Item[T], bool) {
	i.mu.RLock()
	defer i.mu.RUnlock()
	it, ok := i.items[key]
	return it, ok
}

// List returns every cached item, sorted by key.
func (i *Informer[T]) List() []Item[T] {
	items, _ := i.Snapshot(nil)
	return items
}

// Len is the number of cached items.
func (i *Informer[T]) Len() int {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return len(i.items)
}

// Snapshot returns the cached items keep accepts (all for nil), sorted by
// key, and the revision the cache is at: Subscribe from it misses nothing.
func (i *Informer[T]) Snapshot(keep func(*T) bool) ([]Item[T], int64) {
	i.mu.RLock()
	defer i.mu.RUnlock()
	out := make([]Item[T], 0, len(i.items))
	for _, it := range i.items {
		if keep == nil || keep(&it.Value) {
			out = append(out, it)
		}
	}
	slices.SortFunc(out, func(a, b Item[T]) int { return cmpString(a.Key, b.Key) })
	return out, i.rev
}

// ByIndex returns the cached items whose index name has value, sorted.
func (i *Informer[T]) ByIndex(name, value string) []Item[T] {
	i.mu.RLock()
	defer i.mu.RUnlock()
	keys := i.indexes[name][value]
	out := make([]Item[T], 0, len(keys))
	for k := range keys {
		out = append(out, i.items[k])
	}
	slices.SortFunc(out, func(a, b Item[T]) int { return cmpString(a.Key, b.Key) })
	return out
}

// Revision is the revision the cache is at.
func (i *Informer[T]) Revision() int64 {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.rev
}

// Run fills and maintains the cache until ctx ends.
func (i *Informer[T]) Run(ctx context.Context) error {
	delay := i.opts.RetryDelay
	for ctx.Err() == nil {
		items, rev, err := i.src.List(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			i.log.Warn("list failed; retrying", "error", err, "in", delay)
			if !sleepCtx(ctx, delay) {
				break
			}
			delay = min(2*delay, 30*time.Second)
			continue
		}
		delay = i.opts.RetryDelay
		i.replace(items, rev)
		i.watch(ctx)
	}
	return nil
}

// watch follows the source from the cache's revision until the history is
// lost (the caller lists again) or ctx ends. A stream that breaks is
// watched again from where it stopped.
func (i *Informer[T]) watch(ctx context.Context) {
	delay := i.opts.RetryDelay
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(ctx)
		ch := i.src.Watch(wctx, i.Revision())
		got := false
		for ev := range ch {
			if ev.Type == EventBookmark {
				continue
			}
			if ev.Type == EventReset {
				cancel()
				for range ch { // let the source's goroutine end
				}
				return
			}
			got = true
			i.apply(ev)
		}
		cancel()
		if got {
			delay = i.opts.RetryDelay
		}
		if !sleepCtx(ctx, delay) {
			return
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// replace makes the cache equal to a fresh list and tells the handlers
// what changed.
func (i *Informer[T]) replace(items []Item[T], rev int64) {
	var changes []Change[T]
	i.mu.Lock()
	seen := make(map[string]bool, len(items))
	for _, it := range items {
		seen[it.Key] = true
		old, ok := i.items[it.Key]
		if ok && old.Revision == it.Revision {
			continue
		}
		c := Change[T]{Key: it.Key, New: ptr(it.Value), Revision: it.Revision}
		if ok {
			c.Old = ptr(old.Value)
		}
		i.setLocked(it)
		changes = append(changes, c)
	}
	for k, old := range i.items {
		if !seen[k] {
			i.deleteLocked(k)
			changes = append(changes, Change[T]{Key: k, Old: ptr(old.Value), Revision: rev})
		}
	}
	i.rev = rev
	// The history restarts: a subscriber from before must list again.
	i.hist, i.histFrom, i.histEpoch = nil, rev, i.histEpoch+1
	i.histSeq = 0
	handlers := i.handlers
	i.signalLocked()
	first := false
	select {
	case <-i.synced:
	default:
		first = true
	}
	i.mu.Unlock()
	slices.SortFunc(changes, func(a, b Change[T]) int { return cmpString(a.Key, b.Key) })
	for _, c := range changes {
		for _, h := range handlers {
			h(c)
		}
	}
	if first {
		close(i.synced)
	}
}

// apply puts one watch event in the cache.
func (i *Informer[T]) apply(ev Event[T]) {
	i.mu.Lock()
	old, had := i.items[ev.Key]
	c := Change[T]{Key: ev.Key, Revision: ev.Revision}
	if had {
		c.Old = ptr(old.Value)
	}
	switch ev.Type {
	case EventPut:
		i.setLocked(Item[T]{Key: ev.Key, Value: ev.Value, Revision: ev.Revision})
		c.New = ptr(ev.Value)
	case EventDelete:
		if !had {
			i.rev = max(i.rev, ev.Revision)
			i.mu.Unlock()
			return
		}
		i.deleteLocked(ev.Key)
	}
	i.rev = max(i.rev, ev.Revision)
	i.record(c)
	handlers := i.handlers
	i.mu.Unlock()
	for _, h := range handlers {
		h(c)
	}
}

// record appends c to the history, dropping the oldest change when full.
func (i *Informer[T]) record(c Change[T]) {
	if i.opts.History > 0 {
		if len(i.hist) >= i.opts.History {
			i.histFrom = i.hist[0].Revision
			i.hist = i.hist[1:]
			i.histSeq++
		}
		i.hist = append(i.hist, c)
	}
	i.signalLocked()
}

func (i *Informer[T]) signalLocked() {
	close(i.notify)
	i.notify = make(chan struct{})
}

func (i *Informer[T]) setLocked(it Item[T]) {
	if old, ok := i.items[it.Key]; ok {
		i.unindexLocked(it.Key, &old.Value)
	}
	i.items[it.Key] = it
	for name, fn := range i.indexers {
		for _, v := range fn(&it.Value) {
			m := i.indexes[name][v]
			if m == nil {
				m = map[string]bool{}
				i.indexes[name][v] = m
			}
			m[it.Key] = true
		}
	}
}

func (i *Informer[T]) deleteLocked(key string) {
	if old, ok := i.items[key]; ok {
		i.unindexLocked(key, &old.Value)
	}
	delete(i.items, key)
}

func (i *Informer[T]) unindexLocked(key string, v *T) {
	for name, fn := range i.indexers {
		for _, val := range fn(v) {
			if m := i.indexes[name][val]; m != nil {
				delete(m, key)
				if len(m) == 0 {
					delete(i.indexes[name], val)
				}
			}
		}
	}
}

// Subscribe streams the changes after afterRev that concern the items
// keep accepts (all for nil), as events: a change that makes an item
// acceptable or changes it is a put, one that removes it or makes it
// unacceptable a delete. When the history does not reach back to afterRev
// (too old, or the informer listed again since), or the subscriber falls
// too far behind, it sends EventReset and closes: list (Snapshot) and
// subscribe again. It also closes when ctx ends.
func (i *Informer[T]) Subscribe(ctx context.Context, afterRev int64, keep func(*T) bool) <-chan Event[T] {
	out := make(chan Event[T], 16)
	go i.serve(ctx, afterRev, keep, out)
	return out
}

func (i *Informer[T]) serve(ctx context.Context, afterRev int64, keep func(*T) bool, out chan<- Event[T]) {
	defer close(out)
	reset := func() {
		select {
		case out <- Event[T]{Type: EventReset, Revision: i.Revision()}:
		case <-ctx.Done():
		}
	}
	accept := func(v *T) bool { return v != nil && (keep == nil || keep(v)) }
	i.mu.RLock()
	epoch := i.histEpoch
	if i.opts.History == 0 || afterRev < i.histFrom || afterRev > i.rev {
		i.mu.RUnlock()
		reset()
		return
	}
	// The first change after afterRev.
	next := i.histSeq + int64(len(i.hist))
	for n, c := range i.hist {
		if c.Revision > afterRev {
			next = i.histSeq + int64(n)
			break
		}
	}
	i.mu.RUnlock()
	for {
		i.mu.RLock()
		if i.histEpoch != epoch || next < i.histSeq {
			i.mu.RUnlock()
			reset()
			return
		}
		pending := slices.Clone(i.hist[next-i.histSeq:])
		wait := i.notify
		i.mu.RUnlock()
		for _, c := range pending {
			next++
			var ev Event[T]
			switch {
			case accept(c.New):
				ev = Event[T]{Type: EventPut, Key: c.Key, Value: *c.New, Revision: c.Revision}
			case accept(c.Old):
				ev = Event[T]{Type: EventDelete, Key: c.Key, Revision: c.Revision}
			default:
				continue
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return
		}
	}
}

func ptr[T any](v T) *T { return &v }

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Source is a Source served from the cache, for the items keep accepts
// (all for nil): List is a Snapshot, Watch a Subscribe. Many consumers
// share the informer's one stream of the store.
func (i *Informer[T]) Source(keep func(*T) bool) Source[T] { return informerSource[T]{i, keep} }

type informerSource[T any] struct {
	i    *Informer[T]
	keep func(*T) bool
}

func (s informerSource[T]) List(ctx context.Context) ([]Item[T], int64, error) {
	if err := s.i.WaitSynced(ctx); err != nil {
		return nil, 0, err
	}
	items, rev := s.i.Snapshot(s.keep)
	return items, rev, nil
}

func (s informerSource[T]) Watch(ctx context.Context, afterRev int64) <-chan Event[T] {
	return s.i.Subscribe(ctx, afterRev, s.keep)
}
