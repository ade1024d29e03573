package store_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/embedetcd/etcdtest"
	"github.com/berth-dev/berth/internal/store"
)

type record struct {
	Name string `json:"name"`
	N    int    `json:"n"`
}

// TestStore runs every method against a real etcd, one fresh prefix per
// case so the cases cannot see each other's keys.
func TestStore(t *testing.T) {
	t.Parallel()
	c := etcdtest.NewClient(t)
	tests := []struct {
		name string
		// run sets up and makes the call under test; its error is checked
		// against want, the rest it checks itself.
		run  func(ctx context.Context, t *testing.T, s *store.Store) error
		want error // an errdefs class, or nil
	}{
		{
			name: "get of a missing key is not found",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				_, err := s.Get(ctx, "nope", &record{})
				return err
			},
			want: errdefs.ErrNotFound,
		},
		{
			name: "create then get returns the value at the created revision",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				rev := mustCreate(ctx, t, s, "a", record{Name: "a", N: 1})
				var got record
				gotRev, err := s.Get(ctx, "a", &got)
				if err != nil {
					return err
				}
				if got != (record{Name: "a", N: 1}) || gotRev != rev {
					t.Errorf("get = %+v at %d, want {a 1} at %d", got, gotRev, rev)
				}
				return nil
			},
		},
		{
			name: "create of an existing key is already exists",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				mustCreate(ctx, t, s, "a", record{N: 1})
				_, err := s.Create(ctx, "a", record{N: 2})
				assertValue(ctx, t, s, "a", record{N: 1})
				return err
			},
			want: errdefs.ErrAlreadyExists,
		},
		{
			name: "update at the current revision stores the value at a newer revision",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				rev := mustCreate(ctx, t, s, "a", record{N: 1})
				newRev, err := s.Update(ctx, "a", record{N: 2}, rev)
				if err != nil {
					return err
				}
				if newRev <= rev {
					t.Errorf("update returned revision %d, want more than %d", newRev, rev)
				}
				if got := assertValue(ctx, t, s, "a", record{N: 2}); got != newRev {
					t.Errorf("stored at %d, update returned %d", got, newRev)
				}
				return nil
			},
		},
		{
			name: "update at a stale revision is a conflict and changes nothing",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				rev := mustCreate(ctx, t, s, "a", record{N: 1})
				if _, err := s.Update(ctx, "a", record{N: 2}, rev); err != nil {
					t.Fatal(err)
				}
				_, err := s.Update(ctx, "a", record{N: 3}, rev)
				assertValue(ctx, t, s, "a", record{N: 2})
				return err
			},
			want: errdefs.ErrConflict,
		},
		{
			name: "update of a missing key is not found",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				_, err := s.Update(ctx, "a", record{N: 1}, 5)
				return err
			},
			want: errdefs.ErrNotFound,
		},
		{
			name: "update of a deleted key is not found and does not recreate it",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				rev := mustCreate(ctx, t, s, "a", record{N: 1})
				if err := s.Delete(ctx, "a", rev); err != nil {
					t.Fatal(err)
				}
				_, err := s.Update(ctx, "a", record{N: 2}, rev)
				if _, gerr := s.Get(ctx, "a", &record{}); !errdefs.IsNotFound(gerr) {
					t.Errorf("get after failed update: %v, want not found", gerr)
				}
				return err
			},
			want: errdefs.ErrNotFound,
		},
		{
			name: "update at revision 0 is an invalid argument",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				_, err := s.Update(ctx, "a", record{N: 1}, 0)
				return err
			},
			want: errdefs.ErrInvalidArgument,
		},
		{
			name: "put creates and overwrites whatever is there",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				if _, err := s.Put(ctx, "a", record{N: 1}); err != nil {
					return err
				}
				rev, err := s.Put(ctx, "a", record{N: 2})
				if err != nil {
					return err
				}
				if got := assertValue(ctx, t, s, "a", record{N: 2}); got != rev {
					t.Errorf("stored at %d, put returned %d", got, rev)
				}
				return nil
			},
		},
		{
			name: "delete at the current revision removes the key",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				rev := mustCreate(ctx, t, s, "a", record{N: 1})
				if err := s.Delete(ctx, "a", rev); err != nil {
					return err
				}
				_, err := s.Get(ctx, "a", &record{})
				return err
			},
			want: errdefs.ErrNotFound,
		},
		{
			name: "delete at revision 0 removes the key whatever its revision",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				mustCreate(ctx, t, s, "a", record{N: 1})
				if err := s.Delete(ctx, "a", 0); err != nil {
					return err
				}
				_, err := s.Get(ctx, "a", &record{})
				return err
			},
			want: errdefs.ErrNotFound,
		},
		{
			name: "delete of a missing key is not found",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				return s.Delete(ctx, "a", 0)
			},
			want: errdefs.ErrNotFound,
		},
		{
			name: "delete of a missing key at a revision is not found",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				return s.Delete(ctx, "a", 5)
			},
			want: errdefs.ErrNotFound,
		},
		{
			name: "delete at a stale revision is a conflict and keeps the key",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				rev := mustCreate(ctx, t, s, "a", record{N: 1})
				if _, err := s.Put(ctx, "a", record{N: 2}); err != nil {
					t.Fatal(err)
				}
				err := s.Delete(ctx, "a", rev)
				assertValue(ctx, t, s, "a", record{N: 2})
				return err
			},
			want: errdefs.ErrConflict,
		},
		{
			name: "a value JSON cannot encode is an invalid argument",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				_, err := s.Create(ctx, "a", func() {})
				return err
			},
			want: errdefs.ErrInvalidArgument,
		},
		{
			name: "a value that does not decode into the target is data loss",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				mustCreate(ctx, t, s, "a", "just a string")
				_, err := s.Get(ctx, "a", &record{})
				return err
			},
			want: errdefs.ErrDataLoss,
		},
		{
			name: "a value over etcd's request limit is an invalid argument",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				_, err := s.Put(ctx, "a", strings.Repeat("x", 1700*1024))
				return err
			},
			want: errdefs.ErrInvalidArgument,
		},
		{
			name: "list returns only the keys under the prefix, sorted, with their revisions",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				revs := map[string]int64{}
				for _, k := range []string{"g/b", "g/a", "g/c/x", "gx", "h/a"} {
					revs[k] = mustCreate(ctx, t, s, k, record{Name: k})
				}
				kvs, rev, err := s.List(ctx, "g/")
				if err != nil {
					return err
				}
				var keys []string
				for _, kv := range kvs {
					keys = append(keys, kv.Key)
					var r record
					if err := kv.Decode(&r); err != nil || r.Name != kv.Key {
						t.Errorf("%s decodes to %+v (%v)", kv.Key, r, err)
					}
					if kv.Revision != revs[kv.Key] {
						t.Errorf("%s at revision %d, want %d", kv.Key, kv.Revision, revs[kv.Key])
					}
				}
				if want := []string{"g/a", "g/b", "g/c/x"}; !slices.Equal(keys, want) {
					t.Errorf("keys = %v, want %v", keys, want)
				}
				if rev < revs["h/a"] {
					t.Errorf("list revision %d is older than the last write %d", rev, revs["h/a"])
				}
				return nil
			},
		},
		{
			name: "list of an empty prefix is empty, not an error",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				kvs, rev, err := s.List(ctx, "none/")
				if len(kvs) != 0 || rev == 0 {
					t.Errorf("list = %v at %d, want nothing at a real revision", kvs, rev)
				}
				return err
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := store.New(c, "/test/"+t.Name()+"/")
			err := tt.run(t.Context(), t, s)
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("error = %v, want none", err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("error = %v, want %v", err, tt.want)
			case err != nil && !strings.HasPrefix(err.Error(), "store: "):
				t.Errorf("error %q lacks the store: prefix", err)
			}
		})
	}
}

func TestStore_PrefixIsolation(t *testing.T) {
	t.Parallel()
	c := etcdtest.NewClient(t)
	ctx := t.Context()
	a, b := store.New(c, "/a/"), store.New(c, "/b/")
	mustCreate(ctx, t, a, "k", record{N: 1})
	if _, err := b.Get(ctx, "k", &record{}); !errdefs.IsNotFound(err) {
		t.Errorf("other prefix sees the key: %v", err)
	}
	if _, err := b.Create(ctx, "k", record{N: 2}); err != nil {
		t.Errorf("create under the other prefix: %v", err)
	}
	kvs, _, err := a.List(ctx, "")
	if err != nil || len(kvs) != 1 || kvs[0].Key != "k" {
		t.Errorf("list = %v (%v), want only k", kvs, err)
	}
}

func mustCreate(ctx context.Context, t *testing.T, s *store.Store, key string, v any) int64 {
	t.Helper()
	rev, err := s.Create(ctx, key, v)
	if err != nil {
		t.Fatalf("create %s: %v", key, err)
	}
	return rev
}

// assertValue checks the stored value and returns its revision.
func assertValue(ctx context.Context, t *testing.T, s *store.Store, key string, want record) int64 {
	t.Helper()
	var got record
	rev, err := s.Get(ctx, key, &got)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if got != want {
		t.Errorf("%s = %+v, want %+v", key, got, want)
	}
	return rev
}
