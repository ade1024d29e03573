package controller

import (
	"context"
	"log/slog"

	"github.com/berth-dev/berth/internal/store"
)

// EventType says what happened to a key.
type EventType int

const (
	// EventPut: the key was created or changed; Value is its new value.
	EventPut EventType = iota + 1
	// EventDelete: the key is gone (or no longer passes a filter).
	EventDelete
	// EventReset: events were lost; the consumer must list again.
	EventReset
	// EventBookmark: nothing changed; a remote stream is alive. Sources
	// over a network send it now and then; informers ignore it.
	EventBookmark
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	case EventReset:
		return "reset"
	case EventBookmark:
		return "bookmark"
	}
	return "unknown"
}

// Event is one change of a Source.
type Event[T any] struct {
	Type  EventType `json:"type"`
	Key   string    `json:"key,omitempty"`
	Value T         `json:"value,omitzero"`
	// Revision orders events; a Watch from it misses nothing after it.
	Revision int64 `json:"revision"`
}

// Item is one value of a list, with the revision it was last changed at.
type Item[T any] struct {
	Key      string `json:"key"`
	Value    T      `json:"value"`
	Revision int64  `json:"revision"`
}

// Source is what an informer lists and watches: a prefix of the store, or
// a remote view of one over the API.
type Source[T any] interface {
	// List returns every item and the revision it was read at.
	List(ctx context.Context) ([]Item[T], int64, error)
	// Watch streams the changes after afterRev, in order. EventReset means
	// the history was lost: list again. The channel closes when ctx ends
	// or the stream broke; watch again from the last revision seen.
	Watch(ctx context.Context, afterRev int64) <-chan Event[T]
}

// StoreSource is the Source of a typed store view.
func StoreSource[T any](t store.Typed[T]) Source[T] { return storeSource[T]{t} }

type storeSource[T any] struct{ t store.Typed[T] }

func (s storeSource[T]) List(ctx context.Context) ([]Item[T], int64, error) {
	items, rev, err := s.t.List(ctx)
	if err != nil {
		return nil, 0, err
	}
	out := make([]Item[T], len(items))
	for i, it := range items {
		out[i] = Item[T]{Key: it.Key, Value: it.Value, Revision: it.Revision}
	}
	return out, rev, nil
}

func (s storeSource[T]) Watch(ctx context.Context, afterRev int64) <-chan Event[T] {
	in := s.t.Watch(ctx, afterRev)
	out := make(chan Event[T])
	go func() {
		defer close(out)
		for ev := range in {
			e := Event[T]{Key: ev.Key, Revision: ev.Revision}
			switch ev.Type {
			case store.EventPut:
				if err := ev.Decode(&e.Value); err != nil {
					// A damaged value: the key is unusable, so it counts as
					// gone until a good value replaces it.
					slog.Warn("controller: decode watched value", "key", ev.Key, "error", err)
					e.Type = EventDelete
				} else {
					e.Type = EventPut
				}
			case store.EventDelete:
				e.Type = EventDelete
			case store.EventReset:
				e.Type = EventReset
			}
			select {
			case out <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// Map is the Source of src's values turned by fn; a value for which fn
// reports false is absent (a put of it is a delete for the consumer).
func Map[T, U any](src Source[T], fn func(key string, v *T) (U, bool)) Source[U] {
	return mapSource[T, U]{src, fn}
}

// Filter is the Source of src's values that keep accepts.
func Filter[T any](src Source[T], keep func(v *T) bool) Source[T] {
	return Map(src, func(_ string, v *T) (T, bool) { return *v, keep(v) })
}

type mapSource[T, U any] struct {
	src Source[T]
	fn  func(string, *T) (U, bool)
}

func (m mapSource[T, U]) List(ctx context.Context) ([]Item[U], int64, error) {
	items, rev, err := m.src.List(ctx)
	if err != nil {
		return nil, 0, err
	}
	out := make([]Item[U], 0, len(items))
	for _, it := range items {
		if u, ok := m.fn(it.Key, &it.Value); ok {
			out = append(out, Item[U]{Key: it.Key, Value: u, Revision: it.Revision})
		}
	}
	return out, rev, nil
}

func (m mapSource[T, U]) Watch(ctx context.Context, afterRev int64) <-chan Event[U] {
	in := m.src.Watch(ctx, afterRev)
	out := make(chan Event[U])
	go func() {
		defer close(out)
		for ev := range in {
			e := Event[U]{Type: ev.Type, Key: ev.Key, Revision: ev.Revision}
			if ev.Type == EventPut {
				if u, ok := m.fn(ev.Key, &ev.Value); ok {
					e.Value = u
				} else {
					e.Type = EventDelete
				}
			}
			select {
			case out <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
