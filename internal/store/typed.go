package store

import (
	"context"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Typed is a view of the keys under one prefix that all hold a T, so
// callers deal in values instead of JSON. Keys are relative to the prefix.
type Typed[T any] struct {
	s      *Store
	prefix string
}

// Item is one value of a Typed list.
type Item[T any] struct {
	// Key is relative to the Typed prefix.
	Key      string
	Value    T
	Revision int64
}

// NewTyped returns the view of the keys under prefix (relative to the
// store prefix, e.g. "groups/").
func NewTyped[T any](s *Store, prefix string) Typed[T] {
	return Typed[T]{s: s, prefix: prefix}
}

// Prefix is the view's prefix relative to the store prefix.
func (t Typed[T]) Prefix() string { return t.prefix }

// Get returns the value at key and its mod revision; see Store.Get.
func (t Typed[T]) Get(ctx context.Context, key string) (T, int64, error) {
	var v T
	rev, err := t.s.Get(ctx, t.prefix+key, &v)
	if err != nil {
		var zero T
		return zero, 0, err
	}
	return v, rev, nil
}

// Create stores v if key is absent; see Store.Create.
func (t Typed[T]) Create(ctx context.Context, key string, v T) (int64, error) {
	return t.s.Create(ctx, t.prefix+key, v)
}

// Update stores v if key is still at rev; see Store.Update.
func (t Typed[T]) Update(ctx context.Context, key string, v T, rev int64) (int64, error) {
	return t.s.Update(ctx, t.prefix+key, v, rev)
}

// Put stores v unconditionally; see Store.Put.
func (t Typed[T]) Put(ctx context.Context, key string, v T) (int64, error) {
	return t.s.Put(ctx, t.prefix+key, v)
}

// Delete removes key if it is still at rev (0: unconditionally); see
// Store.Delete.
func (t Typed[T]) Delete(ctx context.Context, key string, rev int64) error {
	return t.s.Delete(ctx, t.prefix+key, rev)
}

// List returns every value under the prefix, sorted by key, and the store
// revision it was read at. A value that does not decode fails the whole
// list with errdefs.ErrDataLoss.
func (t Typed[T]) List(ctx context.Context) ([]Item[T], int64, error) {
	return t.ListUnder(ctx, "")
}

// ListUnder is List of the keys that start with under (relative to the
// prefix), in one read.
func (t Typed[T]) ListUnder(ctx context.Context, under string) ([]Item[T], int64, error) {
	kvs, rev, err := t.s.List(ctx, t.prefix+under)
	if err != nil {
		return nil, 0, err
	}
	out := make([]Item[T], 0, len(kvs))
	for _, kv := range kvs {
		var v T
		if err := kv.Decode(&v); err != nil {
			return nil, 0, err
		}
		out = append(out, Item[T]{Key: strings.TrimPrefix(kv.Key, t.prefix), Value: v, Revision: kv.Revision})
	}
	return out, rev, nil
}

// ListRange is Store.ListRange with keys relative to the view's prefix;
// to "" means the end of the view.
func (t Typed[T]) ListRange(ctx context.Context, from, to string, limit int64) ([]Item[T], bool, error) {
	end := "" // the store's end, for a view of the whole store
	switch {
	case to != "":
		end = t.prefix + to
	case t.prefix != "":
		end = clientv3.GetPrefixRangeEnd(t.prefix)
	}
	kvs, more, err := t.s.ListRange(ctx, t.prefix+from, end, limit)
	if err != nil {
		return nil, false, err
	}
	out := make([]Item[T], 0, len(kvs))
	for _, kv := range kvs {
		var v T
		if err := kv.Decode(&v); err != nil {
			return nil, false, err
		}
		out = append(out, Item[T]{Key: strings.TrimPrefix(kv.Key, t.prefix), Value: v, Revision: kv.Revision})
	}
	return out, more, nil
}

// ListPage lists at most limit of the keys that start with under and sort
// after after ("" for the first page), and tells whether more are left.
func (t Typed[T]) ListPage(ctx context.Context, under, after string, limit int64) ([]Item[T], bool, error) {
	from, to := under, ""
	if under != "" {
		to = clientv3.GetPrefixRangeEnd(under)
	}
	if after != "" {
		from = after + "\x00" // the first key after it
	}
	return t.ListRange(ctx, from, to, limit)
}

// Watch is Store.Watch on the view's prefix, with event keys relative to
// that prefix.
func (t Typed[T]) Watch(ctx context.Context, fromRev int64) <-chan Event {
	in := t.s.Watch(ctx, t.prefix, fromRev)
	out := make(chan Event, eventBuffer)
	go func() {
		defer close(out)
		for e := range in {
			e.Key = strings.TrimPrefix(e.Key, t.prefix)
			if !send(ctx, out, e) {
				return
			}
		}
	}()
	return out
}
