// Package store keeps Berth's state as JSON values in etcd. Every write that
// changes user-owned state carries the revision it was based on, so two
// writers never silently overwrite each other (optimistic concurrency).
package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/berth-dev/berth/internal/sealing"
)

// Store is a JSON key-value store over etcd. Keys are relative to the
// store's prefix, which keeps Berth's keys apart from anything else in a
// shared etcd.
type Store struct {
	c *clientv3.Client
	// watcher is c's, except in tests that break watches on purpose.
	watcher clientv3.Watcher
	prefix  string
	// key seals and opens secrets (see WithKey); nil without one.
	key *sealing.Key
}

// New returns a Store for the keys under prefix (e.g. "/berth/").
func New(c *clientv3.Client, prefix string, opts ...Option) *Store {
	s := &Store{c: c, watcher: c.Watcher, prefix: prefix}
	for _, o := range opts {
		o(s)
	}
	return s
}

// KV is one stored value, as List returns it.
type KV struct {
	// Key is relative to the store prefix.
	Key   string
	Value []byte
	// Revision is the key's mod revision: pass it to Update or Delete.
	Revision int64
	// sealKey opens the value's secrets.
	sealKey *sealing.Key
}

// Decode decodes the JSON value into out, with its secrets opened.
func (kv KV) Decode(out any) error {
	return decode(kv.sealKey, kv.Key, kv.Value, out)
}

// Get decodes the value at key into out and returns its mod revision.
// A missing key is errdefs.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string, out any) (int64, error) {
	resp, err := s.c.Get(ctx, s.prefix+key)
	if err != nil {
		return 0, fmt.Errorf("store: get %q: %w", key, classify(err))
	}
	if len(resp.Kvs) == 0 {
		return 0, fmt.Errorf("store: get %q: %w", key, errdefs.ErrNotFound)
	}
	kv := resp.Kvs[0]
	if err := decode(s.key, key, kv.Value, out); err != nil {
		return 0, err
	}
	return kv.ModRevision, nil
}

// Create stores v only if key is absent; else errdefs.ErrAlreadyExists.
// It returns the new mod revision.
func (s *Store) Create(ctx context.Context, key string, v any) (int64, error) {
	b, err := s.encode(key, v)
	if err != nil {
		return 0, err
	}
	k := s.prefix + key
	resp, err := s.c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(b))).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("store: create %q: %w", key, classify(err))
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("store: create %q: %w", key, errdefs.ErrAlreadyExists)
	}
	return resp.Header.Revision, nil
}

// Update stores v only if the key's mod revision still equals rev: a
// mismatch is errdefs.ErrConflict (re-read and retry), a key that is gone
// errdefs.ErrNotFound. rev must be positive; use Create for new keys.
func (s *Store) Update(ctx context.Context, key string, v any, rev int64) (int64, error) {
	if rev <= 0 {
		return 0, fmt.Errorf("store: update %q: revision %d: %w", key, rev, errdefs.ErrInvalidArgument)
	}
	b, err := s.encode(key, v)
	if err != nil {
		return 0, err
	}
	k := s.prefix + key
	resp, err := s.c.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
		Then(clientv3.OpPut(k, string(b))).
		Else(clientv3.OpGet(k, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("store: update %q: %w", key, classify(err))
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("store: update %q at revision %d: %w", key, rev, mismatch(resp))
	}
	return resp.Header.Revision, nil
}

// Put stores v whatever is there. It is for records with a single writer,
// such as the status an agent reports.
func (s *Store) Put(ctx context.Context, key string, v any) (int64, error) {
	b, err := s.encode(key, v)
	if err != nil {
		return 0, err
	}
	resp, err := s.c.Put(ctx, s.prefix+key, string(b))
	if err != nil {
		return 0, fmt.Errorf("store: put %q: %w", key, classify(err))
	}
	return resp.Header.Revision, nil
}

// Delete removes key if its mod revision equals rev, or whatever its
// revision when rev is 0. A missing key is errdefs.ErrNotFound, a changed
// one errdefs.ErrConflict.
func (s *Store) Delete(ctx context.Context, key string, rev int64) error {
	k := s.prefix + key
	if rev == 0 {
		resp, err := s.c.Delete(ctx, k)
		if err != nil {
			return fmt.Errorf("store: delete %q: %w", key, classify(err))
		}
		if resp.Deleted == 0 {
			return fmt.Errorf("store: delete %q: %w", key, errdefs.ErrNotFound)
		}
		return nil
	}
	resp, err := s.c.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
		Then(clientv3.OpDelete(k)).
		Else(clientv3.OpGet(k, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return fmt.Errorf("store: delete %q: %w", key, classify(err))
	}
	if !resp.Succeeded {
		return fmt.Errorf("store: delete %q at revision %d: %w", key, rev, mismatch(resp))
	}
	return nil
}

// List returns every key under prefix (relative to the store prefix),
// sorted by key, and the store revision the list was read at: a Watch from
// that revision misses nothing.
func (s *Store) List(ctx context.Context, prefix string) ([]KV, int64, error) {
	resp, err := s.c.Get(ctx, s.prefix+prefix,
		clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, fmt.Errorf("store: list %q: %w", prefix, classify(err))
	}
	return s.kvs(resp.Kvs), resp.Header.Revision, nil
}

// ListRange returns the keys from from (inclusive) to to (exclusive, "" for
// every key after from), relative to the store prefix and sorted, at most
// limit of them (0: all), and whether more are left in the range. Lists
// read one page at a time with it.
func (s *Store) ListRange(ctx context.Context, from, to string, limit int64) ([]KV, bool, error) {
	end := clientv3.GetPrefixRangeEnd(s.prefix)
	if to != "" {
		end = s.prefix + to
	}
	resp, err := s.c.Get(ctx, s.prefix+from, clientv3.WithRange(end),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend), clientv3.WithLimit(limit))
	if err != nil {
		return nil, false, fmt.Errorf("store: list %q to %q: %w", from, to, classify(err))
	}
	return s.kvs(resp.Kvs), resp.More, nil
}

// kvs turns etcd's key-values into KVs relative to the store prefix.
func (s *Store) kvs(in []*mvccpb.KeyValue) []KV {
	out := make([]KV, 0, len(in))
	for _, kv := range in {
		out = append(out, KV{
			Key:      strings.TrimPrefix(string(kv.Key), s.prefix),
			Value:    kv.Value,
			Revision: kv.ModRevision,
			sealKey:  s.key,
		})
	}
	return out
}

// mismatch tells why a compare on the mod revision failed: the Else branch
// read the key, so an empty read means it is gone.
func mismatch(resp *clientv3.TxnResponse) error {
	if len(resp.Responses) > 0 {
		if r := resp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
			return errdefs.ErrConflict
		}
	}
	return errdefs.ErrNotFound
}

// encode returns the JSON of v, with its secrets sealed.
func (s *Store) encode(key string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("store: encode %q: %w: %w", key, errdefs.ErrInvalidArgument, err)
	}
	return sealSecrets(s.key, key, v, b)
}

// decode fails with errdefs.ErrDataLoss: a value the store wrote itself
// that no longer decodes is damaged, not a bad request. Secrets that k
// cannot open fail it too (see sealing.Key.Open).
func decode(k *sealing.Key, key string, b []byte, out any) error {
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("store: decode %q: %w: %w", key, errdefs.ErrDataLoss, err)
	}
	return openSecrets(k, key, out)
}
